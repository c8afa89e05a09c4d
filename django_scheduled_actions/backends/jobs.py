"""How a task is a job: its name, its stored arguments, and the body the worker runs.

A task job is a ``ScheduledFunction`` of kind ``action`` named ``"django.tasks:<module path>"``. Its
``args`` hold ``{"args": [...], "kwargs": {...}, "backend": alias, "run_after": iso | absent}``. The
worker finds its function through ``registry.for_job``, which hands such names to ``results.resolve``:
the task is imported from its module path (as Django's own ``Task`` pickling does) and wrapped in an
internal action whose body calls it (``task_function`` here). Task bodies are ordinary Django code:
unlike action bodies they may use the ORM (they run outside any transaction, in autocommit).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskContext
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from ..core import guards
from ..core.registry import Function, Options
from ..core.retry import NO_RETRY
from ..exceptions import FunctionNotFound, NonRetryableError

PREFIX = "django.tasks:"
MAX_NAME_LENGTH = 255  # ScheduledFunction.name


class TaskAborted(NonRetryableError):
    """A task raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``, ...); its job
    fails at once, with the original exception as the cause in its traceback."""


def job_name(task: Task) -> str:
    return PREFIX + task.module_path


def is_task_job(name: str) -> bool:
    return name.startswith(PREFIX)


def load_task(module_path: str) -> Task:
    """The ``Task`` defined at ``module_path``; ``FunctionNotFound`` when there is none."""
    try:
        task = import_string(module_path)
    except Exception as exc:  # a job must fail, not crash its worker, whatever the import raises
        raise FunctionNotFound(f"the task {module_path!r} cannot be imported: {exc!r}") from exc
    if not isinstance(task, Task):
        raise FunctionNotFound(f"{module_path!r} is {task!r}, not a task defined with @task")
    return task


CurrentResult = Callable[[Any], Any]  # ctx -> the TaskResult of the job ctx runs as


def task_function(task: Task, current_result: CurrentResult | None = None) -> Function:
    """An unregistered internal action that runs ``task`` with a job's stored arguments. A task that takes a
    context gets its ``TaskResult`` from ``current_result`` (the worker's resolver, ``results.resolve``,
    passes it; a function built only to schedule or to read arguments never runs)."""
    options = Options(timeout=getattr(task, "timeout", None), retry=getattr(task, "retry", None) or NO_RETRY)
    return Function(_body(task, current_result), "action", "internal", job_name(task), options)


def _body(task: Task, current_result: CurrentResult | None) -> Callable[..., Any]:
    def run_task(ctx: Any, args: list, kwargs: dict, backend: str = DEFAULT_TASK_BACKEND_ALIAS,
                 run_after: datetime | None = None) -> Any:
        with guards.policy("allow"):  # a task body may use the ORM
            if task.takes_context:
                if current_result is None or ctx.job is None:
                    raise RuntimeError("a task that takes_context runs as a job; enqueue it with .enqueue()")
                args = [TaskContext(task_result=current_result(ctx)), *args]
            return normalize_json(_call(task, args, kwargs))

    return run_task


def _call(task: Task, args: list, kwargs: dict) -> Any:
    try:
        return task.call(*args, **kwargs)  # async functions run through async_to_sync
    except Exception:
        raise
    except BaseException as exc:  # never let SystemExit & co. end an executor thread
        raise TaskAborted(f"the task raised {type(exc).__name__}: {exc}") from exc
