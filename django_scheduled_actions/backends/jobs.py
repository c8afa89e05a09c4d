"""How a task is a job: its name, its stored arguments, and the body the worker runs.

A task job is a ``ScheduledFunction`` of kind ``action`` named ``"django.tasks:<module path>"``. Its
``args`` hold ``{"args": [...], "kwargs": {...}, "backend": alias, "run_after": iso | absent}``. The
worker finds its function through ``registry.for_job``, which hands such names to ``resolve`` here:
the task is imported from its module path (as Django's own ``Task`` pickling does) and wrapped in an
internal action whose body calls it. Task bodies are ordinary Django code: unlike action bodies they
may use the ORM (they run outside any transaction, in autocommit).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task, TaskContext
from django.utils.json import normalize_json

from ..core import guards
from ..core.registry import Function, Options, registry
from ..core.retry import NO_RETRY
from ..exceptions import NonRetryableError
from .names import job_name, load_task
from .results import load_result


class TaskAborted(NonRetryableError):
    """A task raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``, ...); its job
    fails at once, with the original exception as the cause in its traceback."""


def resolve(module_path: str) -> Function:
    """The registry's resolver for job names starting with ``PREFIX``."""
    return task_function(load_task(module_path))


def task_function(task: Task) -> Function:
    """An unregistered internal action that runs ``task`` with a job's stored arguments."""
    options = Options(
        timeout=getattr(task, "timeout", None),
        retry=getattr(task, "retry", None) or NO_RETRY,
        rate_limit=getattr(task, "rate_limit", None),
    )
    return Function(_body(task), "action", "internal", job_name(task), options)


def register_rate_limited(task: Task) -> None:
    """Register a task with a ``rate_limit`` as a function, when it is defined: claims find the functions
    with a rate in the registry, before any job of the task is resolved (``resolve``)."""
    if getattr(task, "rate_limit", None) is not None:
        registry.register(task_function(task))


def _body(task: Task):
    def run_task(
        ctx: Any, args: list, kwargs: dict, backend: str = DEFAULT_TASK_BACKEND_ALIAS, run_after: datetime | None = None
    ) -> Any:
        with guards.policy("allow"):  # a task body may use the ORM
            if task.takes_context:
                args = [TaskContext(task_result=_current_result(ctx)), *args]
            return normalize_json(_call(task, args, kwargs))

    return run_task


def _call(task: Task, args: list, kwargs: dict) -> Any:
    try:
        return task.call(*args, **kwargs)  # async functions run through async_to_sync
    except Exception:
        raise
    except BaseException as exc:  # never let SystemExit & co. end an executor thread
        raise TaskAborted(f"the task raised {type(exc).__name__}: {exc}") from exc


def _current_result(ctx: Any):
    if ctx.job is None:
        raise RuntimeError("a task that takes_context runs as a job; enqueue it with .enqueue()")
    return load_result(ctx.job.id, ctx.using)
