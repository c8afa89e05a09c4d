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
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.db.models.expressions import Col

from .. import signals
from ..core.registry import registry
from ..core.retry import RetryPolicy
from ..exceptions import FunctionNotFound, WorkerLost
from ..models import ScheduledFunction, ScheduledFunctionQuerySet, State, WorkerProcess
from ..scheduling import batches
from . import dbclock, limits
from .transactions import fetch_prepared, is_lock_timeout, outermost, retry_on_conflict

logger = logging.getLogger("django_scheduled_actions")


PG_CLAIM = """
WITH clock AS (SELECT COALESCE(%s::timestamptz, statement_timestamp()) AS due_by),
top AS (SELECT MAX(priority) AS v FROM scheduled_actions_job WHERE state = 'pending'),
picked AS (
    SELECT id, kind, row_number() OVER (ORDER BY scheduled_time, id) AS n FROM (
        SELECT id, kind, scheduled_time FROM scheduled_actions_job
        WHERE state = 'pending' AND scheduled_time <= (SELECT due_by FROM clock) AND priority = {priority} {conditions}
        ORDER BY priority DESC, scheduled_time, id LIMIT %s FOR UPDATE SKIP LOCKED) AS due),
starting AS (SELECT id FROM picked WHERE kind = 'action' AND n <= %s),
claimed AS (
    UPDATE scheduled_actions_job SET state = 'in_progress', worker_id = %s, token = %s,
        lease_expires_at = statement_timestamp() + %s::interval,
        started_at = CASE WHEN id = ANY(ARRAY(SELECT id FROM starting)) THEN (SELECT due_by FROM clock)
            ELSE started_at END,
        attempts = attempts + CASE WHEN id = ANY(ARRAY(SELECT id FROM starting)) THEN 1 ELSE 0 END
    WHERE id = ANY(ARRAY(SELECT id FROM picked))
    RETURNING ctid::text AS ctid, {columns})
SELECT (SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending' AND priority < {priority}),
       claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON TRUE"""
# ``due_by``: the caller's ``now``, or (NULL) the database's clock; the lease is always the database's.
# One statement claims at ``{priority}`` (the highest pending one: ``(SELECT v FROM top)``) and tells the
# next lower priority that has pending jobs (first column; NULL: none), so a claim walks no further than
# it must and an idle worker's claim of a new job is one round trip. The other columns are NULL when
# nothing was claimed. The actions among the first ``start`` jobs (in claim order) are marked started as
# well, as ``settle_actions`` would: the worker asks for that when as many of its threads are idle, and
# each of these actions then runs at once on one of them, without a write of its own.
# ``id = ANY(ARRAY(subquery))``, not ``id IN (subquery)``: the planner then looks the claimed rows up by
# primary key whatever the table holds; with ``IN`` it may hash-join a scan of the whole table.


def claim(worker_id: str, limit: int, now: datetime | None, lease: timedelta, queues: Iterable[str] | None = None,
          using: str = DEFAULT_DB_ALIAS, token: str | None = None, start: int = 0,
          skip: frozenset[str] = frozenset()) -> tuple[str, list[ScheduledFunction]]:
    """Claim up to ``limit`` due jobs, highest priority first; returns the claim token and the jobs.

    Due by ``now``, or by the database's clock if it is None (what the worker passes); the claim's lease
    is ``lease`` from the database's time, whatever ``now`` says (see ``dbclock``).
    Per priority of pending jobs (see ``_claim_unlimited``); on PostgreSQL one ``UPDATE ... RETURNING``
    statement per priority, which also returns each row's ``ctid``: a mutation's completion finds its
    row by it without an index scan (see executor.py). A caller that
    passes ``token`` can ``release_claim(token)`` if the claim fails: its commit may still have happened.
    On PostgreSQL, the actions among the first ``start`` jobs claimed are also marked started (their
    ``started_at`` is set): the caller runs each at once (see ``PG_CLAIM``). Jobs of the functions named in
    ``skip`` are never claimed (the worker cannot run them, see deploys.py).
    """
    token = token or uuid.uuid4().hex
    limited = limits.active(queues, skip)
    claimed = limits.claim_limited(limited, worker_id, token, limit, now, lease, queues, using) if limited else []
    if len(claimed) < limit:
        claimed += _claim_unlimited(limited, worker_id, token, limit - len(claimed), now, lease, queues, using,
                                    max(start - len(claimed), 0))
    if limited:
        claimed.sort(key=lambda j: (-j.priority, j.scheduled_time, j.pk))
    committed = time.monotonic()  # the claim's statements have committed: a snapshot taken after sees it
    for job in claimed:
        job.state, job.worker_id, job.token = State.IN_PROGRESS, worker_id, token
        job.claim_committed = committed
    return token, claimed


def _claim_unlimited(limited: limits.Limits, worker_id: str, token: str, limit: int, now: datetime | None,
                     lease: timedelta, queues: Iterable[str] | None, using: str, start: int) -> list[ScheduledFunction]:
    """Claim due jobs without a concurrency limit, one priority at a time, highest first.

    Per priority, because the due index is ordered by priority, then time: with the priority fixed the
    scan is a range that ends at the first job not due yet, whatever number of jobs wait for later (or
    ran before: MySQL/MariaDB's indexes are not partial). Without it, a claim that finds fewer due jobs
    than it asks for reads every future job of the table. PostgreSQL: each claim statement also names
    the next priority down (see ``PG_CLAIM``); elsewhere one query finds the priorities of pending jobs
    (usually one), then one claim per priority, highest first, until the claim is full."""
    if connections[using].vendor == "postgresql":
        claimed, below = _claim_postgresql(None, limited, worker_id, token, limit, now, lease, queues, using, start)
        while below is not None and len(claimed) < limit:
            more, below = _claim_postgresql(below, limited, worker_id, token, limit - len(claimed), now, lease,
                                            queues, using, max(start - len(claimed), 0))
            claimed += more
        return claimed
    claimed = []
    for priority in ScheduledFunction.objects.using(using).pending_priorities():
        claimed += _claim_at(priority, limited, worker_id, token, limit - len(claimed), now, lease, queues, using)
        if len(claimed) >= limit:
            break
    return claimed


def _claim_at(priority: int, limited: limits.Limits, worker_id: str, token: str, limit: int, now: datetime | None,
              lease: timedelta, queues: Iterable[str] | None, using: str) -> list[ScheduledFunction]:
    jobs = ScheduledFunction.objects.using(using)
    with outermost(using, None):
        due = jobs.due(dbclock.due_by(now)).filter(priority=priority).in_queues(queues).claim_order()
        due = limited.exclude_limited(due)
        if connections[using].features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        claimed = list(due.defer("result", "error")[:limit])
        if claimed:
            jobs.filter(pk__in=[j.pk for j in claimed]).update(
                state=State.IN_PROGRESS, worker_id=worker_id, token=token, lease_expires_at=dbclock.after(lease))
    return claimed


def next_due_time(queues: Iterable[str] | None, now: datetime, using: str = DEFAULT_DB_ALIAS,
                  skip: frozenset[str] = frozenset()) -> datetime | None:
    """When the next claim may find work (limited jobs waiting for a slot and skipped functions excepted)."""
    return limits.next_due_time(queues, now, using, skip)


def _claim_postgresql(priority: int | None, limited: limits.Limits, worker_id: str, token: str, limit: int,
                      now: datetime | None, lease: timedelta, queues: Iterable[str] | None, using: str,
                      start: int) -> tuple[list[ScheduledFunction], int | None]:
    """Claim at ``priority`` (None: the highest pending), starting the actions among the first ``start``;
    returns the jobs and the next lower priority with pending jobs, if any."""
    fields, converters = _claimed_fields(connections[using])
    params: list[object] = [now]
    if priority is not None:
        params.append(priority)
    conditions = []
    for clause, values in (("queue = ANY(%s)", queues), ("name <> ALL(%s)", limited.unclaimed_names()),
                           ("queue <> ALL(%s)", limited.queues)):
        if values:
            conditions.append(f"AND {clause}")
            params.append(list(values))
    params += [limit, start, worker_id, token, lease]
    if priority is not None:
        params.append(priority)
    sql = PG_CLAIM.format(conditions=" ".join(conditions), columns=", ".join(f.column for f in fields),
                          priority="(SELECT v FROM top)" if priority is None else "%s")
    connection = connections[using]
    rows = fetch_prepared(using, sql, params)
    names = [f.attname for f in fields]
    claimed = [_job(connection, using, names, converters, row[1:]) for row in rows if row[1] is not None]
    for job in claimed:
        if job.started_at is not None:
            job.attempts -= 1  # as for any action, the executor counts the attempt when it runs the body
    claimed.sort(key=lambda j: (-j.priority, j.scheduled_time, j.pk))
    return claimed, rows[0][0]


def _claimed_fields(connection: BaseDatabaseWrapper) -> tuple[list[Field], list[tuple[int, Callable, Col]]]:
    """The columns a claim returns (all but the result and the error) and the converters Django applies
    to them when it reads them (JSON decoding, for instance)."""
    fields = [f for f in ScheduledFunction._meta.concrete_fields if f.name not in ("result", "error")]
    converters = []
    for i, field in enumerate(fields):
        col = field.get_col(ScheduledFunction._meta.db_table)
        converters += [(i, convert, col) for convert in connection.ops.get_db_converters(col)
                       + col.get_db_converters(connection)]
    return fields, converters


def _job(connection: BaseDatabaseWrapper, using: str, names: list[str], converters: list[tuple[int, Callable, Col]],
         row: tuple) -> ScheduledFunction:
    """A claimed row as a job (what ``QuerySet.raw`` does, without its per-row bookkeeping)."""
    values = list(row[1:])
    for i, convert, col in converters:
        values[i] = convert(values[i], col, connection)
    job = ScheduledFunction.from_db(using, names, values)
    job.ctid = row[0]
    return job


def register_worker(worker_id: str, *, hostname: str, pid: int, queues: list[str] | None, concurrency: int,
                    now: datetime, lease: timedelta, using: str = DEFAULT_DB_ALIAS) -> None:
    def once() -> None:
        with outermost(using, None):  # SQLite: take the write lock first, several workers start at once
            WorkerProcess.objects.using(using).update_or_create(worker_id=worker_id, defaults={
                "hostname": hostname, "pid": pid, "queues": queues or [], "concurrency": concurrency,
                "started_at": now, "heartbeat_at": dbclock.DatabaseNow(), "expires_at": dbclock.after(lease),
                "stopped_at": None})

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
    return WorkerProcess.objects.using(using).filter(worker_id=worker_id).update(
        stopped_at=now, expires_at=dbclock.DatabaseNow())


def _retry_policy(name: str) -> RetryPolicy:
    try:
        return registry.for_job(name).retry
    except FunctionNotFound:
        return RetryPolicy()


def recover_expired(now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> int:
    """Recover the jobs of lost workers (claim lease over, no heartbeat). Returns how many were recovered.

    Leases are judged at ``now``, by default the database's time (what the worker passes: its own clock
    may be minutes off).

    Mutations (whose ``started_at`` is only written with their commit) and unstarted claims go back to
    ``pending``: their transaction never committed. Started actions are retried per their RetryPolicy,
    or ``failed`` with "worker lost": never re-run beyond ``max_attempts``.
    """
    now = now or dbclock.now(using)
    recovered = _recover(ScheduledFunction.objects.using(using).expired_leases(now), now)
    if recovered:
        logger.warning("recovered jobs of lost workers count=%d", recovered)
    batches.settle_stragglers(using)  # items whose worker died before counting them (and the ones failed above)
    return recovered


def recover_previous_incarnation(worker_id: str, now: datetime, using: str = DEFAULT_DB_ALIAS) -> int:
    """At start-up, before claiming: jobs still held under this worker id belong to a previous process of
    the same name (restarted pod, systemd unit) and are recovered like any lost worker's."""
    recovered = _recover(ScheduledFunction.objects.using(using).held_by(worker_id), now)
    if recovered:
        logger.warning("recovered jobs of this worker id's previous process worker=%s count=%d", worker_id, recovered)
        batches.settle_stragglers(using)
    return recovered


def _recover(lost: ScheduledFunctionQuerySet, now: datetime) -> int:
    recovered = lost.filter(started_at__isnull=True).unclaim()
    for job in lost.filter(kind="action", started_at__isnull=False).defer("result", "args"):
        recovered += _recover_action(job, now, lost)
    return recovered


def _recover_action(job: ScheduledFunction, now: datetime, lost: ScheduledFunctionQuerySet) -> int:
    error = WorkerLost(f"worker lost: {job.worker_id or 'unknown'} stopped renewing its lease on this action")
    row = lost.filter(pk=job.pk, token=job.token)
    if job.attempts < job.max_attempts:
        delay = timedelta(seconds=_retry_policy(job.name).backoff(job.attempts))
        changed = row.update(state=State.PENDING, error=str(error), scheduled_time=now + delay, token="",
                             worker_id="", lease_expires_at=None, started_at=None)
    else:
        changed = row.update(state=State.FAILED, error=str(error), completed_time=now, lease_expires_at=None)
    if changed:
        signals.job_failed.send_robust(sender=ScheduledFunction, job=job, error=error,
                                       will_retry=job.attempts < job.max_attempts, worker_id=None)
    return changed


def prune(now: datetime | None, retention: timedelta, using: str = DEFAULT_DB_ALIAS, batch: int = 1000) -> int:
    """Delete finished jobs older than ``retention`` and expired idempotency keys, in batches; and
    batches and sagas finished before then. ``now`` None: the database's time."""
    from ..models import Batch, IdempotencyKey, Saga

    now = now or dbclock.now(using)
    jobs = ScheduledFunction.objects.using(using)
    deleted = 0
    while True:
        ids = list(jobs.finished_before(now - retention).values_list("pk", flat=True)[:batch])
        if not ids:
            break
        deleted += jobs.filter(pk__in=ids).delete()[0]
    IdempotencyKey.objects.using(using).expired(now).delete()
    Batch.objects.using(using).filter(finished_at__lt=now - retention).delete()
    Saga.objects.using(using).filter(finished_at__lt=now - retention).delete()
    WorkerProcess.objects.using(using).filter(expires_at__lt=now - retention).delete()
    return deleted


def release(job_id: int, token: str, error: str, now: datetime, using: str = DEFAULT_DB_ALIAS) -> int:
    """Give up a claim whose outcome the worker could not record: back to pending if its body never
    committed (a mutation, or an action not started), else failed (an action may have run: at most once)."""
    jobs = ScheduledFunction.objects.using(using).filter(pk=job_id, token=token, state=State.IN_PROGRESS)
    return (jobs.filter(started_at__isnull=True).unclaim()
            or jobs.update(state=State.FAILED, error=error, completed_time=now, lease_expires_at=None))


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
    return sum((rows.filter(started_at=started) if started else rows.filter(started_at__isnull=True))
               .hand_back(token, ids) for started, ids in claimed_at.items())
