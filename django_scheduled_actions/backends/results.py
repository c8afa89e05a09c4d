"""Reading a task job back as Django's ``TaskResult``.

| job state | ``TaskResult.status`` |
|---|---|
| ``pending``, or ``in_progress`` not started yet | ``READY`` |
| ``in_progress`` with its body started | ``RUNNING`` |
| ``success`` | ``SUCCESSFUL`` (``return_value`` is the job's ``result``) |
| ``failed``, ``canceled`` | ``FAILED`` |

``errors`` holds the job's last error (the row keeps one); its exception class is read from the
stored traceback. ``attempts`` is the job's ``attempts``; the row keeps the last worker's id only,
so earlier entries of ``worker_ids`` are ``""``.
"""

from __future__ import annotations

import re
from typing import Any

from django.tasks import DEFAULT_TASK_BACKEND_ALIAS as DEFAULT_BACKEND
from django.tasks import TaskResult, TaskResultStatus
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist

from ..core import guards
from ..exceptions import FunctionNotFound
from .names import PREFIX, STORED, load_task

_BLOCK_START = re.compile(
    r"^(?:Traceback \(most recent call last\):|The above exception was the direct cause "
    r"of the following exception:|During handling of the above exception, another "
    r"exception occurred:)$",
    re.MULTILINE,
)
_EXCEPTION_LINE = re.compile(r"([A-Za-z_][\w.]*)(?::|$)")
UNKNOWN_EXCEPTION = "django_scheduled_actions.exceptions.ScheduledActionsError"


def load_result(result_id: Any, using: str) -> TaskResult:
    """The ``TaskResult`` of the task job ``result_id``; ``TaskResultDoesNotExist`` when there is none."""
    # here: Django loads this backend for an @task at import time, maybe before the app registry is ready
    from ..models import ScheduledFunction

    try:
        pk = int(result_id)
    except (TypeError, ValueError):
        raise TaskResultDoesNotExist(result_id) from None
    with guards.policy("allow"):
        job = ScheduledFunction.objects.using(using).filter(pk=pk, name__startswith=PREFIX).first()
    if job is None:
        raise TaskResultDoesNotExist(result_id)
    try:
        return to_task_result(job)
    except FunctionNotFound as exc:
        raise TaskResultDoesNotExist(f"{result_id}: {exc}") from exc


def to_task_result(job: Any) -> TaskResult:
    task = load_task(job.name.removeprefix(PREFIX))
    stored = STORED.to_python(job.args)
    task = task.using(
        priority=job.priority,
        queue_name=job.queue,
        backend=stored.get("backend", DEFAULT_BACKEND),
        run_after=stored.get("run_after"),
    )
    status = _status(job)
    result: TaskResult = TaskResult(
        task=task,
        id=str(job.pk),
        status=status,
        enqueued_at=job.created_at,
        started_at=job.started_at,
        finished_at=job.completed_time if status in (TaskResultStatus.SUCCESSFUL, TaskResultStatus.FAILED) else None,
        last_attempted_at=job.started_at,
        args=stored["args"],
        kwargs=stored["kwargs"],
        backend=task.backend,
        errors=[task_error(job.error)] if job.error else [],
        worker_ids=_worker_ids(job),
    )
    if status == TaskResultStatus.SUCCESSFUL:
        object.__setattr__(result, "_return_value", job.result)
    return result


def _status(job: Any) -> TaskResultStatus:
    from ..models import State  # here: as in load_result, the app registry may not be ready at import

    if job.state == State.SUCCESS:
        return TaskResultStatus.SUCCESSFUL
    if job.state in (State.FAILED, State.CANCELED):
        return TaskResultStatus.FAILED
    if job.state == State.IN_PROGRESS and job.started_at is not None:
        return TaskResultStatus.RUNNING
    return TaskResultStatus.READY


def _worker_ids(job: Any) -> list[str]:
    if not job.attempts:
        return []
    return [""] * (job.attempts - 1) + [job.worker_id]


def task_error(error: str) -> TaskError:
    """A stored error (a formatted traceback) as Django's ``TaskError``."""
    return TaskError(
        exception_class_path=exception_class_path(error), traceback=error if error.endswith("\n") else error + "\n"
    )


def exception_class_path(error: str) -> str:
    """The dotted path of the exception a formatted traceback ends with.

    ``traceback.format_exception`` writes the raised exception's block last (after its causes): its
    frames are indented, and its first unindented line is ``module.Class: message`` (builtins without
    their module). Errors
    written without a traceback (such as "worker lost") name no class: they read as this app's base
    error.
    """
    last_block = _BLOCK_START.split(error)[-1]
    for line in last_block.splitlines():
        if line and not line[0].isspace():
            match = _EXCEPTION_LINE.match(line)
            if match is None:
                break
            path = match[1]
            return path if "." in path else f"builtins.{path}"
    return UNKNOWN_EXCEPTION
