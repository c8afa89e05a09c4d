"""The transactional scheduler: ``run_after``, ``run_at``, ``cancel`` (the instance ``scheduler`` is exported
from the package root; this module is named ``scheduling`` so the two names never shadow each other).

The job row is written on the caller's connection, so inside ``transaction.atomic()`` or a mutation
it commits or rolls back with the caller's work. From an action (or outside any transaction) it
commits at once. PostgreSQL workers are woken by a NOTIFY that the table's trigger sends on commit.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, transaction
from django.utils import timezone

from . import guards
from .conf import app_settings
from .context import JobInfo
from .exceptions import ArgumentValidationError
from .idempotency import check_key
from .models import IdempotencyKey, ScheduledFunction, State
from .registry import Function
from .signals import job_scheduled
from .transactions import in_transaction, is_conflict
from .validation import dumps


def check_schedulable(fn: Any) -> Function:
    if not isinstance(fn, Function):
        raise TypeError(f"only functions decorated as mutations or actions can be scheduled, got {fn!r}")
    if fn.kind == "query":
        raise TypeError(f"{fn.name} is a query; only mutations and actions can be scheduled")
    return fn


def _delay_seconds(delay: Any) -> float:
    if isinstance(delay, timedelta):
        return delay.total_seconds()
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"delay must be a number of seconds or a timedelta, got {delay!r}")
    if not math.isfinite(delay):
        raise ValueError(f"delay must be finite, got {delay!r}")
    return float(delay)


def _as_datetime(when: Any) -> datetime:
    if isinstance(when, datetime):
        if timezone.is_naive(when):
            raise ValueError(f"run_at needs an aware datetime (or epoch seconds), got naive {when!r}")
        return when
    if isinstance(when, bool) or not isinstance(when, int | float):
        raise TypeError(f"run_at takes an aware datetime or epoch seconds, got {when!r}")
    if not math.isfinite(when):
        raise ValueError(f"run_at epoch seconds must be finite, got {when!r}")
    try:
        return datetime.fromtimestamp(when, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"run_at epoch seconds out of range: {when!r}") from exc


class Scheduler:
    """Schedules mutations and actions. ``scheduler`` is the module-level instance; ``ctx.scheduler``
    binds the job that schedules (recorded as the new job's parent)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS, parent: JobInfo | None = None):
        self.using = using
        self.parent = parent

    def run_after(self, delay: float | timedelta, fn: Function, args: dict[str, Any] | None = None, *,
                  idempotency_key: str | None = None, queue: str | None = None,
                  priority: int | None = None) -> int | None:
        """Run ``fn(args)`` ``delay`` seconds after now (0: as soon as possible after commit)."""
        seconds = _delay_seconds(delay)
        now = timezone.now()
        when = now + timedelta(seconds=max(seconds, 0.0)) if seconds < 1e9 else now + timedelta(days=36500)
        return self._schedule(when, fn, args, idempotency_key, queue, priority, now)

    def run_at(self, when: datetime | float, fn: Function, args: dict[str, Any] | None = None, *,
               idempotency_key: str | None = None, queue: str | None = None,
               priority: int | None = None) -> int:
        """Run ``fn(args)`` at ``when`` (aware datetime or epoch seconds); past times mean now."""
        moment = _as_datetime(when)
        now = timezone.now()
        return self._schedule(max(moment, now), fn, args, idempotency_key, queue, priority, now)

    def batch(self, fn: Function, items: Iterable[dict[str, Any]], *, on_complete: Function | None = None,
              on_complete_args: dict[str, Any] | None = None, delay: float | timedelta = 0,
              queue: str | None = None, priority: int | None = None) -> int:
        """Fan out: schedule ``fn`` once per item, in bulk and atomically; returns the ``Batch`` id. Fan in:
        ``on_complete`` is scheduled once when every item has finished, with ``batch_id``, ``succeeded``,
        ``failed`` and ``canceled`` added to ``on_complete_args`` (its signature is checked now)."""
        from .batches import schedule_batch

        when = timezone.now() + timedelta(seconds=min(max(_delay_seconds(delay), 0.0), 1e9))
        return schedule_batch(self, fn, items, when, on_complete, on_complete_args, queue, priority)

    def cancel_batch(self, batch_id: int) -> int:
        """Cancel the batch's pending and running items (counted as canceled); returns how many."""
        from .batches import cancel_batch

        return cancel_batch(batch_id, self.using)

    def cancel(self, job_id: int) -> None:
        """A pending job never runs; a running action finishes but stays canceled; finished: no-op."""
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"cancel() takes a job id (int), got {job_id!r}")
        with guards.policy("allow"):
            ScheduledFunction.objects.using(self.using).filter(pk=job_id).cancel()

    def _schedule(self, when: datetime, fn: Any, args: Any, key: str | None, queue: str | None,
                  priority: int | None, now: datetime) -> int:
        fn = check_schedulable(fn)
        json_args = fn.validator.to_json({} if args is None else args)
        size = len(dumps(json_args).encode())
        if size > app_settings.MAX_ARGS_BYTES:
            raise ArgumentValidationError(
                fn.name, f"arguments are {size} bytes serialised, over SCHEDULED_ACTIONS_MAX_ARGS_BYTES="
                f"{app_settings.MAX_ARGS_BYTES}")
        job = ScheduledFunction(
            name=fn.name, kind=fn.kind, args=json_args, scheduled_time=when, created_at=now,
            queue=_queue(queue, fn), priority=_priority(priority, fn), max_attempts=fn.retry.max_attempts,
            parent_id=self.parent.id if self.parent else None,
        )
        with guards.policy("allow"):
            if self.parent is not None and self._parent_canceled():
                job.state = State.CANCELED
                job.completed_time = now
            if key is None:
                job.save(using=self.using, force_insert=True)
            else:
                existing = self._schedule_once(job, key, now)
                if existing is not job:
                    return existing
        if job_scheduled.has_listeners(ScheduledFunction):
            transaction.on_commit(lambda: job_scheduled.send_robust(ScheduledFunction, job=job), using=self.using)
        return job.pk

    def _parent_canceled(self) -> bool:
        assert self.parent is not None
        return ScheduledFunction.objects.using(self.using).filter(
            pk=self.parent.id, state=State.CANCELED).exists()

    def _schedule_once(self, job: ScheduledFunction, key: str, now: datetime) -> ScheduledFunction | int | None:
        """Save ``job`` under ``key`` and return it, or return the id of the job holding the key."""
        key = check_key(key)
        keys = IdempotencyKey.objects.using(self.using)
        joined = in_transaction(self.using)
        for _attempt in range(10):
            row = keys.filter(key=key).values("job_id", "name", "expires_at").first()
            if row is not None and row["expires_at"] > now:
                if row["name"] != job.name:
                    raise ValueError(f"idempotency key {key!r} is held by a job of {row['name']}, not {job.name}")
                return row["job_id"]  # None when that job has since been pruned
            try:
                with transaction.atomic(using=self.using):
                    if row is not None:
                        keys.filter(key=key, expires_at__lte=now).delete()
                    job.save(using=self.using, force_insert=True)
                    keys.create(key=key, name=job.name, job=job, created_at=now,
                                expires_at=now + app_settings.IDEMPOTENCY_TTL)
                return job
            except IntegrityError:
                job.pk = None  # a concurrent call took the key: read its job on the next turn
            except DatabaseError as exc:
                if joined or not is_conflict(exc):
                    raise
                job.pk = None
        raise RuntimeError(f"could not settle idempotency key {key!r} after repeated conflicts")


def _queue(queue: str | None, fn: Function) -> str:
    if queue is None:
        return fn.options.queue
    if not isinstance(queue, str) or not queue or len(queue) > 100:
        raise ValueError(f"queue must be a non-empty string of at most 100 characters, got {queue!r}")
    return queue


def _priority(priority: int | None, fn: Function) -> int:
    if priority is None:
        return fn.options.priority
    if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) > 2**31 - 1:
        raise TypeError(f"priority must be a 32-bit int, got {priority!r}")
    return priority


scheduler = Scheduler()
