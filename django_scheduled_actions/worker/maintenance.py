"""Maintenance every worker does now and then: recovering the jobs of lost workers, pruning old rows, and
(``Upkeep``) releasing what its own failed writes left claimed."""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError
from django.db.models import QuerySet

from .. import signals
from ..calls import saga as sagas
from ..core.registry import registry
from ..core.retry import RetryPolicy
from ..exceptions import FunctionNotFound, WorkerLost
from ..models import (
    Batch,
    IdempotencyKey,
    Saga,
    ScheduledFunction,
    ScheduledFunctionQuerySet,
    State,
    WorkerProcess,
    WorkflowRun,
)
from ..scheduling import batches
from ..store import dbclock
from ..workflows import steps as workflow_steps

logger = logging.getLogger("django_scheduled_actions")
PRUNE_EVERY = 600.0


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
    workflow_steps.settle_stragglers(using)  # workflow steps whose worker died before journaling them
    sagas.abandon_stragglers(using)  # sagas whose job ended for good while they ran
    return recovered


def recover_previous_incarnation(worker_id: str, now: datetime, using: str = DEFAULT_DB_ALIAS) -> int:
    """At start-up, before claiming: jobs still held under this worker id belong to a previous process of
    the same name (restarted pod, systemd unit) and are recovered like any lost worker's."""
    recovered = _recover(ScheduledFunction.objects.using(using).held_by(worker_id), now)
    if recovered:
        logger.warning("recovered jobs of this worker id's previous process worker=%s count=%d", worker_id, recovered)
        batches.settle_stragglers(using)
        workflow_steps.settle_stragglers(using)
        sagas.abandon_stragglers(using)
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
        changed = row.update(
            state=State.PENDING,
            error=str(error),
            scheduled_time=now + delay,
            token="",
            worker_id="",
            lease_expires_at=None,
            started_at=None,
        )
    else:
        changed = row.update(state=State.FAILED, error=str(error), completed_time=now, lease_expires_at=None)
    if changed:
        signals.job_failed.send_robust(
            sender=ScheduledFunction, job=job, error=error, will_retry=job.attempts < job.max_attempts, worker_id=None
        )
    return changed


def prune(now: datetime | None, retention: timedelta, using: str = DEFAULT_DB_ALIAS, batch: int = 1000) -> int:
    """Delete finished jobs older than ``retention`` and expired idempotency keys, in batches; and
    batches, sagas and workflow runs finished before then. ``now`` None: the database's time. Returns how
    many jobs were deleted (``prune_rows`` says how many rows of each kind)."""
    return prune_rows(now, retention, using, batch)["jobs"]


def prunable(now: datetime, retention: timedelta, using: str = DEFAULT_DB_ALIAS) -> dict[str, QuerySet[Any]]:
    """What pruning at ``now`` deletes, by kind: finished jobs, batches, sagas and workflow runs (with their
    steps) finished more than ``retention`` ago, idempotency keys expired by ``now``, and the rows of workers
    whose lease ran out more than ``retention`` ago."""
    before = now - retention
    return {
        "jobs": ScheduledFunction.objects.using(using).finished_before(before),
        "idempotency_keys": IdempotencyKey.objects.using(using).expired(now),
        "batches": Batch.objects.using(using).filter(finished_at__lt=before),
        "sagas": Saga.objects.using(using).filter(finished_at__lt=before),
        "workflow_runs": WorkflowRun.objects.using(using).filter(finished_at__lt=before),  # and their steps
        "workers": WorkerProcess.objects.using(using).filter(expires_at__lt=before),
    }


def prune_rows(
    now: datetime | None,
    retention: timedelta,
    using: str = DEFAULT_DB_ALIAS,
    batch: int = 1000,
    *,
    dry_run: bool = False,
) -> dict[str, int]:
    """Prune (see ``prunable``) and return how many rows of each kind were deleted; with ``dry_run``, how
    many would be, deleting nothing. Jobs are deleted ``batch`` at a time."""
    now = now or dbclock.now(using)
    found = prunable(now, retention, using)
    if dry_run:
        return {kind: rows.count() for kind, rows in found.items()}
    deleted = {"jobs": 0}
    while ids := list(found["jobs"].values_list("pk", flat=True)[:batch]):
        deleted["jobs"] += (
            ScheduledFunction.objects.using(using).filter(pk__in=ids).delete()[1].get(ScheduledFunction._meta.label, 0)
        )
    for kind, rows in found.items():
        if kind != "jobs":
            deleted[kind] = rows.delete()[1].get(rows.model._meta.label, 0)
    return deleted


class Upkeep:
    """The main loop's chores: release the claims and jobs whose writes failed, recover lost workers' jobs
    every quarter lease (5 s at most), prune every ``PRUNE_EVERY`` seconds, keep the repertoire fresh."""

    def __init__(
        self,
        store: Any,
        lease: timedelta,
        failed_claims: list[str],
        orphans: list[tuple[int, str, str]],
        repertoire: Any,
        clock: Callable[[], datetime],
        corrected: dbclock.Corrected | None = None,
    ):
        self.store, self.lease, self.failed_claims, self.orphans = store, lease, failed_claims, orphans
        self.repertoire, self.clock, self.corrected = repertoire, clock, corrected
        self._next_recovery = self._next_prune = 0.0

    def due(self, mono: float) -> bool:
        """Whether ``run`` has anything to do now: the loop asks on every pass, and hands ``run`` to a
        database connection only then."""
        return bool(
            self.failed_claims
            or self.orphans
            or mono >= self._next_recovery
            or mono >= self._next_prune
            or self.repertoire.due(mono)
        )

    def run(self, mono: float) -> None:
        try:
            while self.failed_claims:
                self.store.release_claim(self.failed_claims[0])
                self.failed_claims.pop(0)
            while self.orphans:
                job_id, token, error = self.orphans[0]
                self.store.release(job_id, token, f"worker error: {error}", self.clock())
                self.orphans.pop(0)
            if mono >= self._next_recovery:
                self._next_recovery = mono + min(self.lease.total_seconds() / 4, 5.0)
                if self.corrected:  # on the same beat: a clock that jumped is corrected within seconds
                    self.corrected.measure()
                self.store.recover_expired()
            if mono >= self._next_prune:
                self._next_prune = mono + PRUNE_EVERY
                self.store.prune()
            self.repertoire.upkeep(mono)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("maintenance failed (database unavailable?) error=%r", exc)
            self.store.reconnect()
