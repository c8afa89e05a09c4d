"""The package's layout (docs/architecture.md): small modules, a short top level, no import cycle, and a
reason beside every import made inside a function. Read from the source files; no database."""

from __future__ import annotations

import ast
import io
import tokenize
from collections.abc import Iterator
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "django_scheduled_actions"
ROOT = PACKAGE.name
MAX_LINES = 400
MAX_TOP_LEVEL_MODULES = 12
PRAGMAS = ("noqa", "type:", "pragma")


def sources() -> Iterator[tuple[str, Path]]:
    """(dotted module name, path) of every module of the package but its migrations."""
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] == "migrations":
            continue
        parts = [ROOT, *relative.with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        yield ".".join(parts), path


def line_count(path: Path) -> int:
    return len(path.read_text().splitlines())


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, in_function: bool = False) -> Iterator[tuple[ast.Import | ast.ImportFrom, bool]]:
    """Every import statement that runs (not those under ``if TYPE_CHECKING:``), and whether it is
    inside a function."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.orelse:
                yield from _imports(child, in_function)
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node, in_function
        yield from _imports(node, in_function or isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef))


def _targets(module: str, path: Path, node: ast.Import | ast.ImportFrom, known: set[str]) -> list[str]:
    """The package's modules an import statement imports (the modules named, not their parent packages)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name in known]
    if node.level:
        package = (module if path.name == "__init__.py" else module.rpartition(".")[0]).split(".")
        base = ".".join(package[: len(package) - node.level + 1] + ([node.module] if node.module else []))
    else:
        base = node.module or ""
    found = []
    for alias in node.names:
        if f"{base}.{alias.name}" in known:  # from . import signals: the module itself
            found.append(f"{base}.{alias.name}")
        elif base in known:
            found.append(base)
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported module of the package: line}, counting imports inside functions."""
    modules = dict(sources())
    known = set(modules)
    graph: dict[str, dict[str, int]] = {}
    for module, path in modules.items():
        edges = graph.setdefault(module, {})
        for node, _in_function in _imports(ast.parse(path.read_text())):
            for target in _targets(module, path, node, known):
                edges.setdefault(target, node.lineno)
    return graph


def strongly_connected(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Tarjan's components, iteratively (no recursion limit to meet)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in graph:
        if start in index:
            continue
        work = [(start, iter(graph[start]))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(graph[nxt])))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(component)
    return components


def a_cycle(graph: dict[str, dict[str, int]], component: list[str]) -> str:
    """One cycle through the component's first module, as ``a (line 3) -> b (line 9) -> a``."""
    members, start = set(component), sorted(component)[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                route = [*paths[node], start]
                return (
                    " -> ".join(f"{a} (line {graph[a][b]})" for a, b in zip(route, route[1:], strict=False))
                    + f" -> {start}"
                )
            if nxt in members and nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")


def comment_lines(source: str) -> dict[int, str]:
    return {
        token.start[0]: token.string
        for token in tokenize.generate_tokens(io.StringIO(source).readline)
        if token.type == tokenize.COMMENT
    }


def explains(comment: str | None) -> bool:
    """A comment that says something: not only a linter's or a type checker's pragma."""
    text = (comment or "").lstrip("#").strip()
    return bool(text) and not text.startswith(PRAGMAS)


def unexplained_lazy_imports() -> list[str]:
    """Imports of the package's own modules inside a function with no comment on their first line or a
    comment line right above it."""
    modules = dict(sources())
    known = set(modules)
    found = []
    for module, path in modules.items():
        source = path.read_text()
        comments, lines = comment_lines(source), source.splitlines()
        for node, in_function in _imports(ast.parse(source)):
            if not in_function or not _targets(module, path, node, known):
                continue
            above = node.lineno - 1
            above_is_comment = above >= 1 and lines[above - 1].lstrip().startswith("#")
            if not (explains(comments.get(node.lineno)) or (above_is_comment and explains(comments.get(above)))):
                found.append(f"{path.relative_to(PACKAGE)}:{node.lineno}: {lines[node.lineno - 1].strip()}")
    return found


def test_no_module_is_over_400_lines():
    long = {
        str(path.relative_to(PACKAGE)): line_count(path) for _module, path in sources() if line_count(path) > MAX_LINES
    }
    assert long == {}, f"modules over {MAX_LINES} lines (split them): " + ", ".join(
        f"{name} ({lines} lines)" for name, lines in sorted(long.items())
    )


def test_at_most_12_modules_at_the_top_level():
    top = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL_MODULES, (
        f"{len(top)} modules at the top of {ROOT}/ (at most {MAX_TOP_LEVEL_MODULES}; move some into a "
        f"layer's package): {', '.join(top)}"
    )


def test_no_import_cycle_even_through_imports_inside_functions():
    graph = import_graph()
    cycles = [
        a_cycle(graph, component)
        for component in strongly_connected(graph)
        if len(component) > 1 or component[0] in graph[component[0]]
    ]
    assert cycles == [], "import cycles:\n" + "\n".join(cycles)


def test_every_import_inside_a_function_says_why():
    unexplained = unexplained_lazy_imports()
    assert unexplained == [], (
        "imports of the package inside a function need a comment on their line or the line above saying why "
        "(the app registry, an optional dependency); else import at the top of the module:\n" + "\n".join(unexplained)
    )
