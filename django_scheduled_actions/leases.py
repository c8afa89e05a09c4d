"""Claiming due jobs and recovering the claims of lost workers.

A claim is a tiny transaction: lock due pending rows (``FOR UPDATE SKIP LOCKED`` on PostgreSQL and
MySQL/MariaDB; SQLite's single writer lock, taken with ``BEGIN IMMEDIATE``), mark them
``in_progress`` under a fresh token with a lease, commit. Bodies run outside it.

Jobs under a concurrency limit (``limits.py``) are claimed first, by their own transaction that locks
the limits' rows; the usual query then fills the rest of the claim with jobs that have no limit.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections

from . import batches, limits, signals
from .exceptions import FunctionNotFound, WorkerLost
from .models import ScheduledFunction, State
from .registry import registry
from .retry import RetryPolicy
from .transactions import outermost

logger = logging.getLogger("django_scheduled_actions")


def claim(worker_id: str, limit: int, now: datetime, lease: timedelta, queues: Iterable[str] | None = None,
          using: str = DEFAULT_DB_ALIAS) -> tuple[str, list[ScheduledFunction]]:
    """Claim up to ``limit`` due jobs, highest priority first; returns the claim token and the jobs."""
    token = uuid.uuid4().hex
    limited = limits.active(queues)
    claimed = limits.claim_limited(limited, worker_id, token, limit, now, lease, queues, using) if limited else []
    if len(claimed) < limit:
        claimed += _claim_unlimited(limited, worker_id, token, limit - len(claimed), now, lease, queues, using)
    if limited:
        claimed.sort(key=lambda j: (-j.priority, j.scheduled_time, j.pk))
    for job in claimed:
        job.state, job.worker_id, job.token = State.IN_PROGRESS, worker_id, token
    return token, claimed


def _claim_unlimited(limited: limits.Limits, worker_id: str, token: str, limit: int, now: datetime,
                     lease: timedelta, queues: Iterable[str] | None, using: str) -> list[ScheduledFunction]:
    jobs = ScheduledFunction.objects.using(using)
    with outermost(using, None):
        due = limited.exclude_limited(jobs.due(now).in_queues(queues).claim_order())
        if connections[using].features.has_select_for_update_skip_locked:
            due = due.select_for_update(skip_locked=True)
        claimed = list(due.defer("result", "error")[:limit])
        if claimed:
            jobs.filter(pk__in=[j.pk for j in claimed]).update(
                state=State.IN_PROGRESS, worker_id=worker_id, token=token, lease_expires_at=now + lease)
    return claimed


def next_due_time(queues: Iterable[str] | None, now: datetime, using: str = DEFAULT_DB_ALIAS) -> datetime | None:
    """When the next claim may find work (limited jobs waiting for a slot excepted)."""
    return limits.next_due_time(queues, now, using)


def _retry_policy(name: str) -> RetryPolicy:
    try:
        return registry.for_job(name).retry
    except FunctionNotFound:
        return RetryPolicy()


def recover_expired(now: datetime, using: str = DEFAULT_DB_ALIAS) -> int:
    """Recover the jobs of workers whose lease expired. Returns how many jobs were recovered.

    Mutations (whose ``started_at`` is only written with their commit) and unstarted claims go back to
    ``pending``: their transaction never committed. Started actions are retried per their RetryPolicy,
    or ``failed`` with "worker lost": never re-run beyond ``max_attempts``.
    """
    jobs = ScheduledFunction.objects.using(using)
    expired = jobs.expired_leases(now)
    recovered = expired.filter(started_at__isnull=True).update(
        state=State.PENDING, token="", worker_id="", lease_expires_at=None)
    for job in expired.filter(kind="action", started_at__isnull=False).defer("result", "args"):
        recovered += _recover_action(job, now, jobs)
    if recovered:
        logger.warning("recovered jobs of lost workers count=%d", recovered)
    batches.settle_stragglers(using)  # items whose worker died before counting them (and the ones failed above)
    return recovered


def _recover_action(job: ScheduledFunction, now: datetime, jobs) -> int:
    error = WorkerLost(f"worker lost: {job.worker_id or 'unknown'} stopped renewing its lease on this action")
    row = jobs.filter(pk=job.pk, token=job.token, state=State.IN_PROGRESS, lease_expires_at__lt=now)
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


def prune(now: datetime, retention: timedelta, using: str = DEFAULT_DB_ALIAS, batch: int = 1000) -> int:
    """Delete finished jobs older than ``retention`` and expired idempotency keys, in batches; and
    batches and sagas finished before then."""
    from .models import Batch, IdempotencyKey, Saga

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
    return deleted


def hand_back(token: str, job_ids: Iterable[int], using: str = DEFAULT_DB_ALIAS) -> int:
    return ScheduledFunction.objects.using(using).filter(started_at__isnull=True).hand_back(token, job_ids)
