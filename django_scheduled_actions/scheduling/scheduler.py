"""The transactional scheduler: ``run_after``, ``run_at``, ``cancel`` (the instance ``scheduler`` is exported
from the package root).

The job row is written on the caller's connection, so inside ``transaction.atomic()`` or a mutation
it commits or rolls back with the caller's work. From an action (or outside any transaction) it
commits at once. PostgreSQL workers are woken by a NOTIFY that the table's trigger sends on commit; a job
scheduled by a running job wakes that job's worker instead (``jobs.waking``).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, transaction
from django.utils import timezone

from ..core import guards, values
from ..core.jobs import JobInfo
from ..core.registry import Function
from ..models import ScheduledFunction, State
from ..store.engines import engine
from ..store.transactions import in_transaction, retry_on_conflict
from . import batches, changes, jobs

BULK_CHUNK = 1000  # jobs per INSERT statement of run_many


class Scheduler:
    """Schedules mutations and actions. ``scheduler`` is the module-level instance; ``ctx.scheduler``
    binds the job that schedules (recorded as the new job's parent)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS, parent: JobInfo | None = None):
        self.using = using
        self.parent = parent

    def run_after(
        self,
        delay: float | timedelta,
        fn: Function,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> int | None:
        """Run ``fn(args)`` ``delay`` seconds after now (0: as soon as possible after commit)."""
        now = timezone.now()
        return self._schedule(values.after(now, delay), fn, args, idempotency_key, queue, priority, now)

    def run_at(
        self,
        when: datetime | float,
        fn: Function,
        args: dict[str, Any] | None = None,
        *,
        idempotency_key: str | None = None,
        queue: str | None = None,
        priority: int | None = None,
    ) -> int | None:
        """Run ``fn(args)`` at ``when`` (aware datetime or epoch seconds); past times mean now."""
        moment = values.moment(when)
        now = timezone.now()
        return self._schedule(max(moment, now), fn, args, idempotency_key, queue, priority, now)

    def batch(
        self,
        fn: Function,
        items: Iterable[dict[str, Any]],
        *,
        on_complete: Function | None = None,
        on_complete_args: dict[str, Any] | None = None,
        delay: float | timedelta = 0,
        queue: str | None = None,
        priority: int | None = None,
    ) -> int:
        """Fan out: schedule ``fn`` once per item, in bulk and atomically; returns the ``Batch`` id. Fan in:
        ``on_complete`` is scheduled once when every item has finished, with ``batch_id``, ``succeeded``,
        ``failed`` and ``canceled`` added to ``on_complete_args`` (its signature is checked now)."""
        when = values.after(timezone.now(), delay)
        return batches.schedule_batch(
            self.using, self.parent, fn, items, when, on_complete, on_complete_args, queue, priority
        )

    def run_many(
        self,
        fn: Function,
        items: Iterable[dict[str, Any]],
        *,
        delay: float | timedelta = 0,
        queue: str | None = None,
        priority: int | None = None,
    ) -> list[int]:
        """Schedule ``fn`` once per item of ``items`` (arguments), ``delay`` seconds from now, in bulk:
        every item is validated before anything is written, the jobs are written atomically (joining the
        caller's transaction, as ``run_after`` does); returns their ids in the order of ``items``."""
        fn = jobs.check_schedulable(fn)
        texts = [jobs.checked_args(fn, args, index)[1] for index, args in enumerate(items)]
        now = timezone.now()
        template = jobs.row(fn, values.after(now, delay), now, queue, priority, self.parent)
        store = engine(self.using)
        with guards.policy("allow"), transaction.atomic(using=self.using):
            if jobs.parent_canceled(self.parent, self.using):
                template.update(state=State.CANCELED, completed_time=now)
            ids = [
                pk
                for start in range(0, len(texts), BULK_CHUNK)
                for pk in store.insert_many(template, texts[start : start + BULK_CHUNK])
            ]
            jobs.announce(lambda: jobs.as_read(template, ids, texts, self.using), self.using, self.parent)
        return ids

    def cancel_batch(self, batch_id: int) -> int:
        """Cancel the batch's pending and running items (counted as canceled); returns how many."""
        return changes.cancel_batch(batch_id, self.using)

    def cancel(self, job_id: int) -> None:
        """A pending job never runs; a running action finishes but stays canceled; finished: no-op."""
        if isinstance(job_id, bool) or not isinstance(job_id, int):
            raise TypeError(f"cancel() takes a job id (int), got {job_id!r}")

        def once() -> None:
            with transaction.atomic(using=self.using):
                changes.cancel(ScheduledFunction.objects.using(self.using).filter(pk=job_id))

        with guards.policy("allow"):
            # alone, a deadlock with the job's own mutation (MariaDB: its child's foreign key check
            # share-locks this row) is retried; inside the caller's transaction it is the caller's
            once() if in_transaction(self.using) else retry_on_conflict(once)

    def _schedule(
        self,
        when: datetime,
        fn: Any,
        args: Any,
        key: str | None,
        queue: str | None,
        priority: int | None,
        now: datetime,
    ) -> int | None:
        fn = jobs.check_schedulable(fn)
        json_args, _text = jobs.checked_args(fn, args)
        job = ScheduledFunction(args=json_args, **jobs.row(fn, when, now, queue, priority, self.parent))
        with guards.policy("allow"):
            return jobs.write(job, self.parent, key, now, self.using)


scheduler = Scheduler()
