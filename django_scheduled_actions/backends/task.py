"""The task class of the backend: Django's ``Task`` plus this app's options.

Django 6.1 passes unknown ``@task(...)`` keywords to the backend's ``task_class``, so these work::

    @task(retry=RetryPolicy(max_attempts=5), timeout=120, rate_limit="20/s")
    def charge(order_id): ...

    charge.using(idempotency_key=f"charge-{order.pk}").enqueue(order.pk)

``retry``, ``timeout`` and ``rate_limit`` belong to the definition (as for ``@action``); ``idempotency_key`` is usually
given per call through ``.using()``. The backend validates them (``InvalidTask``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, cast

from django.tasks import Task
from django.tasks.exceptions import InvalidTask

from ..core import rates, values
from ..core.retry import RetryPolicy


@dataclass(frozen=True, slots=True, kw_only=True)
class ScheduledActionsTask(Task):
    retry: RetryPolicy | None = None  # None: at most once, as for an action without a RetryPolicy
    timeout: float | None = None  # seconds; None: SCHEDULED_ACTIONS_ACTION_TIMEOUT
    idempotency_key: str | None = None  # while held, enqueueing again returns the first result
    rate_limit: str | None = None  # "N/s", "N/m", "N/h": how fast its jobs start, across all workers

    def using(self, *, idempotency_key: str | None = None, **changes: Any) -> ScheduledActionsTask:
        """Django's ``using()`` (priority, queue_name, run_after, backend), plus ``idempotency_key``."""
        # explicit: zero-argument super() fails in slotted dataclasses; it returns a copy of this class
        task = cast(ScheduledActionsTask, Task.using(self, **changes))
        return task if idempotency_key is None else replace(task, idempotency_key=idempotency_key)


def validate_options(task: Task) -> None:
    """Raise ``InvalidTask`` for a bad ``retry``, ``timeout``, ``rate_limit`` or ``idempotency_key``."""
    retry = getattr(task, "retry", None)
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise InvalidTask(f"retry must be a django_scheduled_actions.RetryPolicy, got {retry!r}.")
    timeout = getattr(task, "timeout", None)
    if timeout is not None:
        values.seconds(timeout, "timeout", error=InvalidTask)
    rate_limit = getattr(task, "rate_limit", None)
    if rate_limit is not None and rates.problem(rate_limit):
        raise InvalidTask(f"rate_limit {rates.problem(rate_limit)}.")
    key = getattr(task, "idempotency_key", None)
    if key is not None:
        values.key(key, "idempotency_key", error=InvalidTask)
