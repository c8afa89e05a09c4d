"""The documentation's code samples and reference tables against the code (docs/, README.md).

Every ``python`` block of every page compiles, and the names it imports from Django and from this package
exist (its imports are executed). A block that is a fragment (a body without its function, names the page
defined earlier) says so in an HTML comment on the line before it: ``<!-- fragment: why -->``; of those,
only the ``from django_scheduled_actions... import`` lines are executed. The README's quick start runs for
real in tests/process/test_quickstart.py. ``mkdocs build --strict`` (scripts/test.sh stage docs) checks the
links and the generated tables.
"""

from __future__ import annotations

import ast
import re
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

from django_scheduled_actions import signals
from django_scheduled_actions.core import check_ids
from tests.unit.test_check_ids import all_ids

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
OURS = ("django_scheduled_actions", "django")
DJANGO_5 = find_spec("django.tasks") is None

sys.path.insert(0, str(DOCS))
import hooks  # noqa: E402  (docs/hooks.py: the generated tables)


def samples() -> list[tuple[str, int, str, bool]]:
    """(page, line, code, is_fragment) of every python block of the docs and the README."""
    found = []
    for page in [*PAGES, ROOT / "README.md"]:
        text = page.read_text()
        for match in re.finditer(r"```python\n(.*?)^```$", text, re.MULTILINE | re.DOTALL):
            line = text.count("\n", 0, match.start()) + 1
            before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
            found.append((str(page.relative_to(ROOT)), line, match[1], before.startswith("<!-- fragment")))
    return found


SAMPLES = samples()


def imports_of(tree: ast.Module) -> list[ast.stmt]:
    """The absolute imports of Django and of this package, at any depth of the block."""
    found: list[ast.stmt] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and (node.module or "").split(".")[0] in OURS:
            found.append(node)
        elif isinstance(node, ast.Import) and all(a.name.split(".")[0] in OURS for a in node.names):
            found.append(node)
    return found


def test_there_are_samples_and_fragments_are_few():
    assert len(SAMPLES) > 30
    fragments = [s for s in SAMPLES if s[3]]
    assert len(fragments) < len(SAMPLES) / 3, [f"{p}:{n}" for p, n, _, _ in fragments]


@pytest.mark.parametrize(("page", "line", "code", "fragment"), SAMPLES, ids=[f"{p}:{n}" for p, n, _, _ in SAMPLES])
def test_each_python_sample_compiles_and_its_imports_exist(page, line, code, fragment):
    if fragment:
        lines = [
            ln.strip() for ln in code.splitlines() if re.match(r"\s*from django_scheduled_actions[\w.]* import", ln)
        ]
        for statement in lines:
            if statement.endswith("("):  # a wrapped import: parse it from the block's text
                statement = code[code.index(statement) : code.index(")", code.index(statement)) + 1]
            exec(compile(statement, f"{page}:{line}", "exec"), {})  # noqa: S102 - the docs' own import lines
        return
    tree = ast.parse(code, f"{page}:{line}")  # a SyntaxError here: fix the sample or mark it a fragment
    compile(tree, f"{page}:{line}", "exec")
    for node in imports_of(tree):
        if DJANGO_5 and "django.tasks" in ast.unparse(node):
            continue  # Django 6's Tasks framework: the page says so; imported on the Django 6 runs
        exec(compile(ast.Module([node], []), f"{page}:{line}", "exec"), {})  # noqa: S102 - the docs' own imports


def test_the_quick_start_of_the_site_is_the_readmes():
    def quick_start(text: str) -> list[str]:
        return re.findall(r"^```\w+\n.*?^```$", text.split("\n## Quick start\n", 1)[1], re.MULTILINE | re.DOTALL)

    readme, index = (ROOT / "README.md").read_text(), (DOCS / "index.md").read_text()
    assert quick_start(index) == quick_start(readme.split("\n## Documentation\n", 1)[0])


def test_the_readme_is_short_and_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    assert len(text.splitlines()) < 300
    first = text.split("```", 2)[1]
    assert [ln.split()[:2] for ln in first.splitlines()[1:] if ln] == [["make", "demo"], ["make", "test"]]
    assert "pip install django-scheduled-actions" in text and "[postgres]" in text and "[mysql]" in text


def test_the_generated_settings_table_gives_each_setting_its_id():
    table = hooks.settings_table()
    rows = dict(re.findall(r"^\| `SCHEDULED_ACTIONS_(\w+)` \|.*\| `(E\d{3})` \|$", table, re.MULTILINE))
    assert rows == {name: i.removeprefix("scheduled_actions.") for name, i in check_ids.SETTINGS.items()}


def test_the_checks_page_names_every_check_id():
    text = (DOCS / "reference" / "checks.md").read_text() + hooks.settings_table()
    missing = [i for i in all_ids() if not re.search(rf"\b{i.removeprefix('scheduled_actions.')}\b", text)]
    assert missing == []


def test_the_signals_page_names_every_signal():
    from django.dispatch import Signal

    names = [name for name, value in vars(signals).items() if isinstance(value, Signal)]
    text = (DOCS / "reference" / "signals.md").read_text()
    assert len(names) == 8
    assert [n for n in names if f"| `{n}` |" not in text] == []


def test_the_runworker_options_are_all_generated():
    flags = [flag.split()[0] for flag, _ in hooks.runworker_options()]
    assert "--concurrency" in flags and "--db-connections" in flags and "--no-crons" in flags
    assert "--verbosity" not in flags and "--settings" not in flags  # Django's own options are Django's docs
    assert all(text for _, text in hooks.runworker_options())


def test_every_page_is_in_the_nav():
    nav = (ROOT / "mkdocs.yml").read_text()
    listed = set(re.findall(r"^\s+- [^:#]+: ([\w/.-]+\.md)$", nav, re.MULTILINE))
    listed |= set(re.findall(r"^  - \w+: ([\w/.-]+\.md)$", nav, re.MULTILINE))
    assert {str(p.relative_to(DOCS)) for p in PAGES} - listed == set()
