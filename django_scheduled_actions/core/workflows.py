"""Declaring durable workflows: ``@workflow`` and the registry of workflows by name.

A workflow's body orchestrates steps (``step.run_mutation(...)``, ``step.sleep(...)``); it is run, and
replayed, by the workflows layer. Declaring one needs no database.
"""

from __future__ import annotations

import inspect
import threading
from collections.abc import Callable
from typing import Any, overload

from django.core.exceptions import ImproperlyConfigured

from ..exceptions import FunctionNotFound
from . import values
from .validation import Validator

STEP_PREFIX = "workflow-step:"  # the jobs of a workflow's steps: workflow-step:<function>[#retry=...]
RETRY_MARK = "#retry="


def step_function(job_name: str) -> str:
    """The function a job named ``job_name`` runs: the step's function for a workflow step's job (whose
    limits, ``max_concurrency`` among them, are that function's), else the name itself."""
    if not job_name.startswith(STEP_PREFIX):
        return job_name
    return job_name[len(STEP_PREFIX) :].partition(RETRY_MARK)[0]


class Workflow:
    """A registered workflow: ``.name``, ``.queue`` (of the jobs that replay its body) and the
    ``Validator`` of its arguments (every parameter after ``step``) and of its return value."""

    def __init__(self, fn: Callable[..., Any], name: str | None, queue: str):
        if inspect.iscoroutinefunction(fn) or inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn):
            raise TypeError(f"{fn.__qualname__}: a workflow is a plain def; its steps do the waiting")
        params = list(inspect.signature(fn).parameters.values())
        if not params or params[0].kind not in (params[0].POSITIONAL_ONLY, params[0].POSITIONAL_OR_KEYWORD):
            raise TypeError(f"{fn.__qualname__}: a workflow takes the step as its first parameter: def f(step, ...)")
        self.fn = fn
        self.name = name or f"{fn.__module__}:{fn.__qualname__}"
        self.queue = values.queue_name(queue, "queue=")
        self.validator = Validator(self.name, fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(f"{self.name} is a workflow; start it with workflows.start({self.fn.__name__}, {{...}})")

    def __repr__(self) -> str:
        return f"<workflow {self.name}>"


class WorkflowRegistry:
    def __init__(self) -> None:
        self._workflows: dict[str, Workflow] = {}
        self._lock = threading.Lock()

    def register(self, wf: Workflow) -> None:
        with self._lock:
            existing = self._workflows.get(wf.name)
            same = existing is not None and (existing.fn.__module__, existing.fn.__qualname__) == (
                wf.fn.__module__,
                wf.fn.__qualname__,
            )
            if existing is not None and not same:
                raise ImproperlyConfigured(f"Two workflows are registered as {wf.name!r}; give one another name=")
            self._workflows[wf.name] = wf

    def get(self, name: str) -> Workflow:
        try:
            return self._workflows[name]
        except KeyError:
            raise FunctionNotFound(f"no workflow is registered as {name!r}") from None

    def all(self) -> list[Workflow]:
        return list(self._workflows.values())


workflow_registry = WorkflowRegistry()


@overload
def workflow(fn: Callable[..., Any], /) -> Workflow: ...


@overload
def workflow(*, name: str | None = ..., queue: str = ...) -> Callable[[Callable[..., Any]], Workflow]: ...


def workflow(
    fn: Callable[..., Any] | None = None, /, *, name: str | None = None, queue: str = "default"
) -> Workflow | Callable[[Callable[..., Any]], Workflow]:
    """``@workflow`` or ``@workflow(name=..., queue=...)``: register a durable workflow."""

    def wrap(f: Callable[..., Any]) -> Workflow:
        if isinstance(f, Workflow) or not callable(f):
            raise TypeError(f"@workflow decorates a plain function, got {f!r}")
        wf = Workflow(f, name, queue)
        workflow_registry.register(wf)
        return wf

    return wrap(fn) if fn is not None else wrap
