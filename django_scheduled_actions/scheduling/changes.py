"""Changes to jobs already written: cancel, retry and run now (the admin's actions; ``scheduler.cancel``)."""

from __future__ import annotations

from datetime import datetime
from typing import NamedTuple

from django.db import IntegrityError, models, transaction
from django.db.models import QuerySet
from django.utils import timezone

from ..core import guards
from ..core.registry import registry
from ..exceptions import FunctionNotFound
from ..models import ScheduledFunction, State
from ..signals import job_canceled
from ..store.transactions import in_transaction, outermost, retry_on_conflict
from . import batches, jobs


def cancel(selected: QuerySet[ScheduledFunction], now: datetime | None = None) -> int:
    """Cancel the pending and in-progress jobs of ``selected``; finished ones are left as they are. Their
    batches count them as canceled. Sends ``job_canceled(job_ids=[...])`` on commit, if anyone listens."""
    using = selected.db
    open_jobs = selected.filter(state__in=(State.PENDING, State.IN_PROGRESS))
    listening = job_canceled.has_listeners(ScheduledFunction)
    ids = list(open_jobs.values_list("pk", flat=True)) if listening else []
    batch_ids = set(open_jobs.filter(batch__isnull=False).values_list("batch_id", flat=True))
    changed = open_jobs.update(state=State.CANCELED, completed_time=now or timezone.now(), lease_expires_at=None)
    if listening and changed:
        transaction.on_commit(lambda: job_canceled.send_robust(ScheduledFunction, job_ids=ids), using=using)
    if batch_ids and changed:
        batches.settle(batch_ids, using=using)  # counts them as canceled; may finish the batch
    return changed


class Change(NamedTuple):
    """What ``cancel_each()`` or ``run_now_each()`` did with one job: ``outcome`` names it (``canceled``,
    ``finished``, ``raced``; ``moved``, ``due``, ``not_pending``), ``state`` is the job's state as found."""

    job_id: int
    outcome: str
    state: str


def cancel_each(selected: QuerySet[ScheduledFunction], now: datetime | None = None) -> list[Change]:
    """``cancel()``, and what became of each job, in id order: ``canceled``, ``finished`` (it was already
    final: nothing changed) or ``raced`` (open when read, finished before the cancel reached it)."""
    found = dict(selected.values_list("pk", "state"))
    open_ids = [pk for pk, state in found.items() if state in (State.PENDING, State.IN_PROGRESS)]
    cancel(ScheduledFunction.objects.using(selected.db).filter(pk__in=open_ids), now)
    after = dict(ScheduledFunction.objects.using(selected.db).filter(pk__in=open_ids).values_list("pk", "state"))
    changes = []
    for pk, state in sorted(found.items()):
        if pk not in open_ids:
            changes.append(Change(pk, "finished", state))
        else:
            now_state = after.get(pk, state)
            changes.append(Change(pk, "canceled" if now_state == State.CANCELED else "raced", now_state))
    return changes


def cancel_batch(batch_id: int, using: str) -> int:
    """Cancel the batch's open items (counted as canceled); returns how many were canceled."""
    with guards.policy("allow"):
        return cancel(ScheduledFunction.objects.using(using).filter(batch_id=batch_id))


def run_now(selected: QuerySet[ScheduledFunction], now: datetime | None = None) -> int:
    """Make pending jobs scheduled for later due at once (the admin's "run now"); returns how many moved."""
    now = now or timezone.now()
    return selected.filter(state=State.PENDING, scheduled_time__gt=now).update(scheduled_time=now)


def run_now_each(selected: QuerySet[ScheduledFunction], now: datetime | None = None) -> list[Change]:
    """``run_now()``, and what became of each job, in id order: ``moved`` (due at once now), ``due`` (pending
    and already due: nothing to move) or ``not_pending`` (its state says why)."""
    now = now or timezone.now()
    rows = sorted(selected.values_list("pk", "state", "scheduled_time"))
    run_now(ScheduledFunction.objects.using(selected.db).filter(pk__in=[pk for pk, _state, _at in rows]), now)
    return [
        Change(pk, "not_pending" if state != State.PENDING else "moved" if at > now else "due", state)
        for pk, state, at in rows
    ]


class RetryOutcome(NamedTuple):
    """What ``retry()`` did with one job: ``new_job_id`` is its retry, or ``skipped`` says why there is none."""

    job_id: int
    new_job_id: int | None
    skipped: str


def retry(selected: QuerySet[ScheduledFunction], now: datetime | None = None) -> list[RetryOutcome]:
    """Schedule a new run of each failed or canceled job: same function, arguments, queue, priority, parent
    and cron, linked by ``retry_of``. A job that is not finished badly, already has a retry, or whose
    function is no longer registered is skipped. Returns one outcome per job, in id order. At most one
    retry per job, even when two admins retry it at once (``sa_job_retry_of_unique``)."""
    using, moment = selected.db, now or timezone.now()
    if in_transaction(using):
        with transaction.atomic(using=using):
            return _retry(selected, moment)

    def once() -> list[RetryOutcome]:
        with outermost(using, None):  # SQLite: take the write lock first
            return _retry(selected, moment)

    return retry_on_conflict(once)


def _retry(selected: QuerySet[ScheduledFunction], now: datetime) -> list[RetryOutcome]:
    outcomes, created = [], []
    for old in selected.order_by("pk").annotate(retried_as=models.Max("retries__pk")):
        try:
            reason = _not_retryable(old, old.retried_as) or ""
            fn = None if reason else registry.for_job(old.name)
        except FunctionNotFound:
            reason = "its function is not registered"
        if reason or fn is None:
            outcomes.append(RetryOutcome(old.pk, None, reason))
            continue
        job = ScheduledFunction(
            args=old.args,
            **jobs.row(fn, now, now, old.queue, old.priority, None, parent_id=old.parent_id, cron_id=old.cron_id),
            retry_of=old,
        )
        try:
            with transaction.atomic(using=selected.db):  # a savepoint: a lost race skips only this job
                job.save(using=selected.db, force_insert=True)
        except IntegrityError:  # a concurrent retry of the same job committed first
            outcomes.append(RetryOutcome(old.pk, None, "it was retried meanwhile by someone else"))
            continue
        created.append(job)
        outcomes.append(RetryOutcome(old.pk, job.pk, ""))
    jobs.announce(created, selected.db)
    return outcomes


def _not_retryable(job: ScheduledFunction, retried_as: int | None) -> str | None:
    if job.state not in (State.FAILED, State.CANCELED):
        return f"it is {job.get_state_display()}, not failed or canceled"
    if retried_as is not None:
        return f"it was already retried as #{retried_as}"
    return None
