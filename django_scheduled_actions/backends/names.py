"""How a task job is named and what it stores: ``"django.tasks:<module path>"``, and the arguments of its
body (jobs.py). Below jobs.py and results.py, which both need it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS, Task
from django.utils.module_loading import import_string

from ..core.validation import Validator
from ..exceptions import FunctionNotFound

PREFIX = "django.tasks:"
MAX_NAME_LENGTH = 255  # ScheduledFunction.name


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


def stored(
    ctx: Any, args: list, kwargs: dict, backend: str = DEFAULT_TASK_BACKEND_ALIAS, run_after: datetime | None = None
) -> None:
    """The signature of every task job's body (``jobs.task_function``): what its ``args`` hold."""


STORED = Validator(PREFIX, stored)
