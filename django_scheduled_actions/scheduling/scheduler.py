"""The transactional scheduler: ``run_after``, ``run_at``, ``cancel`` (the instance ``scheduler`` is exported
from the package root; this module is named ``scheduling`` so the two names never shadow each other).

The job row is written on the caller's connection, so inside ``transaction.atomic()`` or a mutation
it commits or rolls back with the caller's work. From an action (or outside any transaction) it
commits at once. PostgreSQL workers are woken by a NOTIFY that the table's trigger sends on commit.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, transaction
from django.utils import timezone

from ..calls.context import JobInfo
from ..calls.idempotency import check_key
from ..conf import app_settings
from ..core import guards
from ..core.registry import Function
from ..core.validation import dumps
from ..exceptions import ArgumentValidationError
from ..models import IdempotencyKey, ScheduledFunction, State
from ..signals import job_scheduled
from ..store.transactions import in_transaction, is_conflict, retry_on_conflict

BULK_CHUNK = 1000  # jobs per INSERT statement of run_many


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

    def run_many(self, fn: Function, items: Iterable[dict[str, Any]], *, delay: float | timedelta = 0,
                 queue: str | None = None, priority: int | None = None) -> list[int]:
        """Schedule ``fn`` once per item of ``items`` (arguments), ``delay`` seconds from now, in bulk:
        every item is validated before anything is written, the jobs are written atomically (joining the
        caller's transaction, as ``run_after`` does); returns their ids in the order of ``items``."""
        fn = check_schedulable(fn)
        texts = [checked_args(fn, args, index)[1] for index, args in enumerate(items)]
        now = timezone.now()
        template: dict[str, Any] = {
            "name": fn.name, "kind": fn.kind, "created_at": now, "queue": _queue(queue, fn),
            "scheduled_time": now + timedelta(seconds=min(max(_delay_seconds(delay), 0.0), 1e9)),
            "priority": _priority(priority, fn), "max_attempts": fn.retry.max_attempts,
            "parent_id": self.parent.id if self.parent else None}
        jobs = ScheduledFunction.objects.using(self.using)
        with guards.policy("allow"), transaction.atomic(using=self.using):
            if self._parent_canceled():
                template.update(state=State.CANCELED, completed_time=now)
            ids = [pk for start in range(0, len(texts), BULK_CHUNK)
                   for pk in jobs.insert_many(template, texts[start:start + BULK_CHUNK])]
            if job_scheduled.has_listeners(ScheduledFunction):
                transaction.on_commit(lambda: _announce_many(template, ids, texts, self.using), using=self.using)
        return ids

    def cancel_batch(self, batch_id: int) -> int:
        """Cancel the batch's pending and running items (counted as canceled); returns how many."""
        from .batches import cancel_batch

        return cancel_batch(batch_id, self.using)

    def cancel(self, job_id: int) -> None:
        """A pending job never runs; a running action finishes but stays canceled; finished: no-op."""
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"cancel() takes a job id (int), got {job_id!r}")
        def once() -> None:
            with transaction.atomic(using=self.using):
                ScheduledFunction.objects.using(self.using).filter(pk=job_id).cancel()

        with guards.policy("allow"):
            # alone, a deadlock with the job's own mutation (MariaDB: its child's foreign key check
            # share-locks this row) is retried; inside the caller's transaction it is the caller's
            once() if in_transaction(self.using) else retry_on_conflict(once)

    def _schedule(self, when: datetime, fn: Any, args: Any, key: str | None, queue: str | None,
                  priority: int | None, now: datetime) -> int:
        fn = check_schedulable(fn)
        json_args, _text = checked_args(fn, args)
        job = ScheduledFunction(
            name=fn.name, kind=fn.kind, args=json_args, scheduled_time=when, created_at=now,
            queue=_queue(queue, fn), priority=_priority(priority, fn), max_attempts=fn.retry.max_attempts,
            parent_id=self.parent.id if self.parent else None,
        )
        with guards.policy("allow"):
            if self._parent_canceled():
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
        """Whether the job scheduling this one was canceled: its children are then created canceled.

        A mutation job is not read: it completes in the transaction that schedules (a cancel landing
        first makes that completion fail and rolls the children back with it), and the read would cost
        a serializable transaction a predicate lock on the primary key's newest page, where every
        concurrent insert of a job lands: each scheduling mutation would conflict with all the others."""
        if self.parent is None or self.parent.kind == "mutation":
            return False
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


def _announce_many(template: dict[str, Any], ids: list[int], texts: list[str], using: str) -> None:
    """``job_scheduled`` for each job of ``run_many`` (instances built as from a query: 3x cheaper)."""
    proto = ScheduledFunction(**template)
    names = [field.attname for field in ScheduledFunction._meta.concrete_fields]
    values = [getattr(proto, name) for name in names]
    pk_at, args_at = names.index("id"), names.index("args")
    for pk, text in zip(ids, texts, strict=True):
        values[pk_at], values[args_at] = pk, json.loads(text)
        job_scheduled.send_robust(ScheduledFunction, job=ScheduledFunction.from_db(using, names, values))


def checked_args(fn: Function, args: Any, index: int | None = None) -> tuple[dict[str, Any], str]:
    """``args`` validated for ``fn`` (None: no arguments), as JSON and as its text, within
    ``SCHEDULED_ACTIONS_MAX_ARGS_BYTES``. ``index``: the item's position, named in errors."""
    try:
        json_args = fn.validator.to_json({} if args is None else args)
    except ArgumentValidationError as exc:
        if index is None:
            raise
        raise ArgumentValidationError(fn.name, f"item {index}: {exc.problem}", exc.argument) from None
    text = dumps(json_args)
    size = len(text.encode())
    if size > app_settings.MAX_ARGS_BYTES:
        where = "arguments" if index is None else f"item {index}: arguments"
        raise ArgumentValidationError(fn.name, f"{where} are {size} bytes serialised, over "
                                      f"SCHEDULED_ACTIONS_MAX_ARGS_BYTES={app_settings.MAX_ARGS_BYTES}")
    return json_args, text


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
