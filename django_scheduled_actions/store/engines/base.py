"""The portable engine (the ORM; SQLite as it is), and the named statements of the ``.sql`` files."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.db import connections, transaction

from ...models import ScheduledFunction, ScheduledFunctionQuerySet, State
from .. import dbclock
from ..transactions import outermost

if TYPE_CHECKING:
    from ..limits import Limits  # which imports the engines

MutationRow = tuple[str | None, int, str, Any, datetime]  # (ctid, job id, token, result, started_at)


def statements(filename: str) -> dict[str, str]:
    """The named statements of a ``.sql`` file beside this module: ``-- name: x`` starts statement ``x``;
    the comment lines under it are its planner notes, not part of the text sent."""
    named: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in (Path(__file__).parent / filename).read_text().splitlines():
        if line.startswith("-- name:"):
            current = named.setdefault(line.split(":", 1)[1].strip(), [])
        elif current is not None and line.strip() and not line.startswith("--"):
            current.append(line)
    return {name: "\n".join(lines) for name, lines in named.items()}


POSTGRESQL = statements("postgresql.sql")  # pending_priorities is portable: every engine but MySQL's runs it


class Engine:
    """The portable engine: SQLite, and what the others share."""

    vendor = "sqlite"

    def __init__(self, using: str):
        self.using = using

    @property
    def jobs(self) -> ScheduledFunctionQuerySet:
        return ScheduledFunction.objects.using(self.using)

    def session_bounds(self, seconds: float) -> list[str]:
        """Statements bounding a worker session's idle transactions and lock waits (see sessions.py)."""
        return []  # SQLite: one writer at a time, bounded by its busy timeout already

    def transaction_bounds(self, seconds: float) -> tuple[str, list[str]]:
        """The ``session_bounds`` of one transaction, as one statement and its parameters (behind a pooler)."""
        return "", []

    def wake_workers(self) -> None:
        """Wake every worker waiting for work (PostgreSQL: a NOTIFY; elsewhere workers poll)."""

    # --- reading the due index ---

    def pending_priorities(self) -> list[int]:
        """The priorities pending jobs have, highest first: a walk down the due index, one probe each."""
        with connections[self.using].cursor() as cursor:
            cursor.execute(POSTGRESQL["pending_priorities"])
            return [row[0] for row in cursor.fetchall()]

    def next_due_time(self, queues: Iterable[str] | None) -> datetime | None:
        """The earliest scheduled time of a pending job: per priority, the first entry of the due index
        at that priority (one probe each), not a scan of every pending job."""
        pending = self.jobs.filter(state=State.PENDING).in_queues(queues)
        times = [
            pending.filter(priority=priority)
            .order_by("scheduled_time")
            .values_list("scheduled_time", flat=True)
            .first()
            for priority in self.pending_priorities()
        ]
        return min((t for t in times if t is not None), default=None)

    # --- claiming ---

    def claim_unlimited(
        self,
        limited: Limits,
        worker_id: str,
        token: str,
        limit: int,
        now: datetime | None,
        lease: timedelta,
        queues: Iterable[str] | None,
        start: int,
    ) -> list[ScheduledFunction]:
        """Claim due jobs without a concurrency limit, one priority at a time, highest first.

        Per priority, because the due index is ordered by priority, then time: with the priority fixed the
        scan is a range that ends at the first job not due yet, whatever number of jobs wait for later (or
        ran before: MySQL/MariaDB's indexes are not partial). Without it, a claim that finds fewer due jobs
        than it asks for reads every future job of the table. One query finds the priorities of pending
        jobs (usually one), then one claim per priority, highest first, until the claim is full. ``start``
        is PostgreSQL's (its claim marks actions started); here the executor marks them."""
        claimed: list[ScheduledFunction] = []
        for priority in self.pending_priorities():
            claimed += self._claim_at(priority, limited, worker_id, token, limit - len(claimed), now, lease, queues)
            if len(claimed) >= limit:
                break
        return claimed

    def _claim_at(
        self,
        priority: int,
        limited: Limits,
        worker_id: str,
        token: str,
        limit: int,
        now: datetime | None,
        lease: timedelta,
        queues: Iterable[str] | None,
    ) -> list[ScheduledFunction]:
        with outermost(self.using, None):
            due = self.jobs.due(dbclock.due_by(now)).filter(priority=priority).in_queues(queues).claim_order()
            due = limited.exclude_limited(due)
            if connections[self.using].features.has_select_for_update_skip_locked:
                due = due.select_for_update(skip_locked=True)
            claimed = list(due.defer("result", "error")[:limit])
            if claimed:
                self.jobs.filter(pk__in=[j.pk for j in claimed]).update(
                    state=State.IN_PROGRESS, worker_id=worker_id, token=token, lease_expires_at=dbclock.after(lease)
                )
        return claimed

    # --- writing jobs ---

    def insert(self, job: ScheduledFunction) -> None:
        """Insert the new ``job`` and set its ``pk``. New jobs are announced by ``job_scheduled`` (on commit);
        Django's model signals are not part of that contract (PostgreSQL writes jobs without the ORM)."""
        job.save(using=self.using, force_insert=True)

    def insert_many(self, template: dict[str, Any], args: list[str]) -> list[int]:
        """Insert one job per JSON text in ``args``, every other field from ``template``; returns the new
        ids in the order of ``args``."""
        if not args:
            return []
        if not connections[self.using].features.can_return_rows_from_bulk_insert:  # MySQL: ids are not returned
            return [self.jobs.create(args=json.loads(text), **template).pk for text in args]
        jobs = self.jobs.bulk_create([ScheduledFunction(args=json.loads(text), **template) for text in args])
        return [job.pk for job in jobs]

    def complete_mutations(self, rows: list[MutationRow], now: datetime) -> int:
        """``mark_succeeded`` of the mutations ``(ctid, job id, token, result, started_at)`` that ran in the
        caller's transaction. Returns how many of them this worker still held: fewer than ``len(rows)``
        means a claim was lost."""
        return sum(
            bool(self.jobs.mark_succeeded(job_id, token, result, now, started_at=started, count_attempt=True))
            for _ctid, job_id, token, result, started in rows
        )

    def complete_mutation(
        self, ctid: str | None, job_id: int, token: str, result: Any, now: datetime, started_at: datetime
    ) -> int:
        """One mutation's success (it ran alone in the caller's transaction)."""
        return self.jobs.mark_succeeded(job_id, token, result, now, started_at=started_at, count_attempt=True)

    def settle_actions(
        self, outcomes: list[tuple[int, str, Any]], starts: list[tuple[int, str]], now: datetime
    ) -> tuple[set[int], set[int]]:
        """Mark succeeded actions ``(job id, token, result)`` and mark started the next ones ``(job id,
        token)``, in one commit. Returns the ids of each still claimed."""
        jobs = self.jobs
        with transaction.atomic(using=self.using):
            done = {job_id for job_id, token, result in outcomes if jobs.mark_succeeded(job_id, token, result, now)}
            return done, {job_id for job_id, token in starts if jobs.mark_started(job_id, token, now)}
