"""``ScheduledActionsBackend``: Django's Tasks API on this app's scheduler, job table and worker."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, cast

from django.apps import apps
from django.conf import settings
from django.core import checks
from django.db import DEFAULT_DB_ALIAS
from django.tasks import Task, TaskResult
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.utils.json import normalize_json

from ..core.check_ids import TASKS_APP_NOT_INSTALLED, TASKS_UNKNOWN_DATABASE, TASKS_UNKNOWN_OPTION
from .jobs import register_rate_limited, task_function
from .names import MAX_NAME_LENGTH, PREFIX, job_name
from .results import load_result
from .task import ScheduledActionsTask, validate_options

OPTIONS = ("DATABASE",)


class ScheduledActionsBackend(BaseTaskBackend):
    """Enqueue writes a job row on the caller's connection: inside ``transaction.atomic()`` it commits
    or rolls back with the caller's work. ``manage.py runworker`` runs it; results are read from the row.

    ``OPTIONS``: ``{"DATABASE": alias}`` (default ``"default"``), the database of the jobs (give the
    worker the same ``--database``).
    """

    task_class = ScheduledActionsTask
    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]):
        super().__init__(alias, params)
        self.database = self.options.get("DATABASE", DEFAULT_DB_ALIAS)

    def validate_task(self, task: Task) -> None:
        super().validate_task(task)
        if len(job_name(task)) > MAX_NAME_LENGTH:
            raise InvalidTask(
                f"Task path {task.module_path!r} is too long for a job name "
                f"(at most {MAX_NAME_LENGTH - len(PREFIX)} characters)."
            )
        validate_options(task)
        register_rate_limited(task)

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        """Schedule the task as a job and return its ``READY`` result (or, when its idempotency key is
        held, the result of the job holding it)."""
        from .. import Scheduler  # the scheduler module imports models: load it on first use

        self.validate_task(task)
        stored: dict[str, Any] = {"args": normalize_json(args), "kwargs": normalize_json(kwargs), "backend": self.alias}
        if task.run_after is not None:
            stored["run_after"] = task.run_after
        key = getattr(task, "idempotency_key", None)
        options = {"idempotency_key": key, "queue": task.queue_name, "priority": task.priority}
        scheduler = Scheduler(using=self.database)
        fn = task_function(task)
        if task.run_after is None:
            job_id = scheduler.run_after(0, fn, stored, **options)
        else:
            job_id = scheduler.run_at(task.run_after, fn, stored, **options)
        if job_id is None:
            raise TaskResultDoesNotExist(f"idempotency key {key!r} is held by a job that has been pruned")
        return self._enqueued_result(job_id, key)

    def _enqueued_result(self, job_id: int, key: str | None) -> TaskResult:
        result = self.get_result(job_id)
        if key is not None:  # the job holds the key (the scheduler refuses a key held by another task)
            task = cast(ScheduledActionsTask, result.task)  # a key is this backend's option: its task class
            object.__setattr__(result, "task", replace(task, idempotency_key=key))
        return result

    def get_result(self, result_id: Any) -> TaskResult:
        return load_result(result_id, self.database)

    def check(self, **kwargs: Any) -> list[checks.CheckMessage]:
        errors: list[checks.CheckMessage] = []
        where = f"TASKS[{self.alias!r}]"
        for name in sorted(set(self.options) - set(OPTIONS)):
            errors.append(
                checks.Error(
                    f"{where}: unknown OPTIONS key {name!r}.",
                    hint=f"{type(self).__name__} takes: {', '.join(OPTIONS)}.",
                    id=TASKS_UNKNOWN_OPTION,
                )
            )
        if self.database not in settings.DATABASES:
            errors.append(
                checks.Error(
                    f"{where}: OPTIONS['DATABASE'] {self.database!r} is not in DATABASES.",
                    hint=f"Use one of: {', '.join(settings.DATABASES)}.",
                    id=TASKS_UNKNOWN_DATABASE,
                )
            )
        if not apps.is_installed("django_scheduled_actions"):
            errors.append(
                checks.Error(
                    f"{where} uses {type(self).__name__}, but django_scheduled_actions is not in INSTALLED_APPS.",
                    hint="Add it: its worker runs the tasks.",
                    id=TASKS_APP_NOT_INSTALLED,
                )
            )
        return errors
