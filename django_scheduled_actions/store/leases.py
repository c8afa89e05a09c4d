"""Claiming due jobs and recovering the claims of lost workers.

A claim is a tiny transaction: lock due pending rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and
MySQL/MariaDB; SQLite's single writer lock, taken with ``BEGIN IMMEDIATE``), mark them
``in_progress`` under a fresh token with a lease, commit. Bodies run outside it.

Jobs under a concurrency limit (``limits.py``) are claimed first, by their own transaction that locks
the limits' rows; the usual query then fills the rest of the claim with jobs that have no limit.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections

from ..models import ScheduledFunction, State, WorkerProcess
from . import dbclock, limits
from .engines import engine
from .errors import is_lock_timeout
from .transactions import outermost, retry_on_conflict

logger = logging.getLogger("django_scheduled_actions")


def claim(
    worker_id: str,
    limit: int,
    now: datetime | None,
    lease: timedelta,
    queues: Iterable[str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
    token: str | None = None,
    start: int = 0,
    skip: frozenset[str] = frozenset(),
) -> tuple[str, list[ScheduledFunction]]:
    """Claim up to ``limit`` due jobs, highest priority first; returns the claim token and the jobs.

    Due by ``now``, or by the database's clock if it is None (what the worker passes); the claim's lease
    is ``lease`` from the database's time, whatever ``now`` says (see ``dbclock``).
    Per priority of pending jobs (see ``Engine.claim_unlimited``); on PostgreSQL one ``UPDATE ... RETURNING``
    statement per priority, which also returns each row's ``ctid``: a mutation's completion finds its
    row by it without an index scan (see executor.py). A caller that
    passes ``token`` can ``release_claim(token)`` if the claim fails: its commit may still have happened.
    On PostgreSQL, the actions among the first ``start`` jobs claimed are also marked started (their
    ``started_at`` is set): the caller runs each at once (``claim`` in postgresql.sql). Jobs of the functions named in
    ``skip`` are never claimed (the worker cannot run them, see deploys.py).
    """
    token = token or uuid.uuid4().hex
    limited = limits.active(queues, skip)
    claimed = limits.claim_limited(limited, worker_id, token, limit, now, lease, queues, using) if limited else []
    if len(claimed) < limit:
        claimed += engine(using).claim_unlimited(
            limited, worker_id, token, limit - len(claimed), now, lease, queues, max(start - len(claimed), 0)
        )
    if limited:
        claimed.sort(key=lambda j: (-j.priority, j.scheduled_time, j.pk))
    committed = time.monotonic()  # the claim's statements have committed: a snapshot taken after sees it
    for job in claimed:
        job.state, job.worker_id, job.token = State.IN_PROGRESS, worker_id, token
        job.claim_committed = committed
    return token, claimed


def next_due_time(
    queues: Iterable[str] | None, now: datetime, using: str = DEFAULT_DB_ALIAS, skip: frozenset[str] = frozenset()
) -> datetime | None:
    """When the next claim may find work (limited jobs waiting for a slot and skipped functions excepted)."""
    return limits.next_due_time(queues, now, using, skip)


def register_worker(
    worker_id: str,
    *,
    hostname: str,
    pid: int,
    queues: list[str] | None,
    concurrency: int,
    now: datetime,
    lease: timedelta,
    using: str = DEFAULT_DB_ALIAS,
) -> None:
    def once() -> None:
        with outermost(using, None):  # SQLite: take the write lock first, several workers start at once
            WorkerProcess.objects.using(using).update_or_create(
                worker_id=worker_id,
                defaults={
                    "hostname": hostname,
                    "pid": pid,
                    "queues": queues or [],
                    "concurrency": concurrency,
                    "started_at": now,
                    "heartbeat_at": dbclock.DatabaseNow(),
                    "expires_at": dbclock.after(lease),
                    "stopped_at": None,
                },
            )

    retry_on_conflict(once)


def heartbeat(worker_id: str, lease: timedelta, using: str = DEFAULT_DB_ALIAS) -> int:
    """Renew the lease on every job the worker holds: one UPDATE of its own row, to the database's time
    plus ``lease``; returns 0 if the row is gone. It never waits for the row: if another session holds
    it (an admin save, a migration, a long report), the lease is renewed on the jobs' own rows instead
    (those not locked: the worker's own transactions are completing them), which recovery honours too."""
    workers = WorkerProcess.objects.using(using).filter(worker_id=worker_id)
    renew = {"heartbeat_at": dbclock.DatabaseNow(), "expires_at": dbclock.after(lease)}
    if not connections[using].features.has_select_for_update_nowait:  # SQLite: no row locks
        return workers.update(**renew)
    try:
        with outermost(using, None):
            if not list(workers.select_for_update(nowait=True).values_list("pk", flat=True)):
                return 0
            return workers.update(**renew)
    except DatabaseError as exc:
        if not is_lock_timeout(exc):
            raise
    logger.warning("worker row locked by another session; lease renewed on its jobs worker=%s", worker_id)
    jobs = ScheduledFunction.objects.using(using).held_by(worker_id)
    with outermost(using, None):
        ids = list(jobs.select_for_update(skip_locked=True).values_list("pk", flat=True))
        jobs.filter(pk__in=ids).update(lease_expires_at=dbclock.after(lease))
    return 1


def sign_off(worker_id: str, now: datetime, using: str = DEFAULT_DB_ALIAS) -> int:
    return (
        WorkerProcess.objects.using(using)
        .filter(worker_id=worker_id)
        .update(stopped_at=now, expires_at=dbclock.DatabaseNow())
    )


def release(job_id: int, token: str, error: str, now: datetime, using: str = DEFAULT_DB_ALIAS) -> int:
    """Give up a claim whose outcome the worker could not record: back to pending if its body never
    committed (a mutation, or an action not started), else failed (an action may have run: at most once)."""
    jobs = ScheduledFunction.objects.using(using).filter(pk=job_id, token=token, state=State.IN_PROGRESS)
    return jobs.filter(started_at__isnull=True).unclaim() or jobs.update(
        state=State.FAILED, error=error, completed_time=now, lease_expires_at=None
    )


def release_claim(token: str, using: str = DEFAULT_DB_ALIAS) -> int:
    """Hand back what a claim that raised may have taken (the connection can fail after the server
    committed): none of it reached a thread, so even the actions the claim marked started never ran."""
    return ScheduledFunction.objects.using(using).filter(token=token, state=State.IN_PROGRESS).unclaim()


def hand_back(token: str, jobs: Iterable[ScheduledFunction], using: str = DEFAULT_DB_ALIAS) -> int:
    """Hand back claimed jobs that never ran, each only as its claim left it: not started, or marked started
    by the claim itself (``started_at`` as the claim returned it), never one a thread started since."""
    claimed_at: dict[datetime | None, list[int]] = {}
    for job in jobs:
        claimed_at.setdefault(job.started_at, []).append(job.pk)
    rows = ScheduledFunction.objects.using(using)
    return sum(
        (rows.filter(started_at=started) if started else rows.filter(started_at__isnull=True)).hand_back(token, ids)
        for started, ids in claimed_at.items()
    )
