"""Django's task signals, sent from this app's job signals; connected in ``AppConfig.ready()`` (Django 6+).

| this app's signal | Django's signal | ``task_result.status`` |
|---|---|---|
| ``job_scheduled`` (on commit) | ``task_enqueued`` | ``READY`` |
| ``job_started`` | ``task_started`` | ``RUNNING`` |
| ``job_succeeded`` | ``task_finished`` | ``SUCCESSFUL`` |
| ``job_failed`` with no retry left | ``task_finished`` | ``FAILED`` |

An attempt that fails and will be retried sends no ``task_finished`` (the task is ``READY`` again):
the retry sends ``task_started`` again. The sender is the backend class, as with Django's backends;
the ``TaskResult`` is read from the job row. Only task jobs (``"django.tasks:..."``) send them.
"""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed
from django.db import DEFAULT_DB_ALIAS
from django.dispatch import Signal
from django.tasks import task_backends
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils.module_loading import import_string

from .. import signals
from ..core.registry import registry
from ..models import ScheduledFunction
from .backend import ScheduledActionsBackend
from .jobs import resolve
from .names import PREFIX, is_task_job
from .results import load_result

logger = logging.getLogger("django_scheduled_actions")


def connect() -> None:
    """Let the worker run task jobs; send Django's task signals while ``TASKS`` names this app's backend
    (otherwise no receiver is connected: scheduling a job costs nothing extra). Safe to call more than once."""
    registry.add_resolver(PREFIX, resolve)
    setting_changed.connect(_tasks_changed, dispatch_uid="django_tasks.tasks_changed")
    _follow_tasks_setting()


def _follow_tasks_setting() -> None:
    def ours(path: str) -> bool:
        try:
            return issubclass(import_string(path), ScheduledActionsBackend)
        except (ImportError, TypeError):  # a bad path is reported by Django's own checks
            return False

    used = any(ours(str(config.get("BACKEND", ""))) for config in getattr(settings, "TASKS", {}).values())
    for signal, receiver in (
        (signals.job_scheduled, on_job_scheduled),
        (signals.job_started, on_job_started),
        (signals.job_succeeded, on_job_succeeded),
        (signals.job_failed, on_job_failed),
    ):
        uid = f"django_tasks.{receiver.__name__}"
        if used:
            signal.connect(receiver, sender=ScheduledFunction, dispatch_uid=uid)
        else:
            signal.disconnect(sender=ScheduledFunction, dispatch_uid=uid)


def _tasks_changed(setting: str, **kwargs: Any) -> None:
    if setting == "TASKS":
        _follow_tasks_setting()


def on_job_scheduled(sender: Any, job: Any, **kwargs: Any) -> None:
    send(task_enqueued, job)


def on_job_started(sender: Any, job: Any, **kwargs: Any) -> None:
    send(task_started, job)


def on_job_succeeded(sender: Any, job: Any, **kwargs: Any) -> None:
    send(task_finished, job)


def on_job_failed(sender: Any, job: Any, will_retry: bool = False, **kwargs: Any) -> None:
    if not will_retry:
        send(task_finished, job)


def send(signal: Signal, job: Any) -> None:
    """Send ``signal`` for a task job with its current ``TaskResult``; log (never raise) failures."""
    if not is_task_job(job.name):
        return
    try:
        result = load_result(job.pk, job._state.db or DEFAULT_DB_ALIAS)
        backend = type(task_backends[result.backend])
    except Exception:
        logger.exception("cannot send a django.tasks signal for task job=%s name=%s", job.pk, job.name)
        return
    for receiver, response in signal.send_robust(sender=backend, task_result=result):
        if isinstance(response, Exception):
            logger.error("task signal receiver failed receiver=%r job=%s", receiver, job.pk, exc_info=response)
