"""Recording what happened to claimed jobs: successes, failures, retries, through the worker's store, each
write repeated while the database is away (``persist``) and announced by the app's signals."""

from __future__ import annotations

import functools
import logging
import time
import traceback
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.db import InterfaceError, OperationalError

from .. import signals
from ..core.registry import Function
from ..core.retry import RetryPolicy
from ..exceptions import ArgumentValidationError, NonRetryableError, RateLimited
from ..models import ScheduledFunction, State
from .store import Store

logger = logging.getLogger("django_scheduled_actions")

Claimed = tuple[str, ScheduledFunction]  # (claim token, job): what the worker's queue holds
Pull = Callable[[], "Claimed | None"]  # the next claimed job if one is waiting, without blocking
Runnable = tuple[Function, ScheduledFunction, str]  # a claimed job with its function: (fn, job, token)
Outcome = tuple[ScheduledFunction, str, Any]  # a succeeded action: (job, token, result)
Written = tuple[set[int], BaseException | None]  # what a settle wrote: the ids it started, or its error


class ClaimLost(Exception):
    """The job is no longer ours (canceled, or its lease was recovered by another worker)."""


class Unrecorded(Exception):
    """The outcome of these claimed jobs could not be written (the database stayed away): the worker
    releases them (``leases.release``) once it can."""

    def __init__(self, jobs: list[Claimed], cause: BaseException):
        super().__init__(repr(cause))
        self.jobs = jobs


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()


def send(signal: Any, job: ScheduledFunction, **kwargs: Any) -> None:
    for receiver, response in signal.send_robust(sender=ScheduledFunction, job=job, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver failed receiver=%r job=%s", receiver, job.pk, exc_info=response)


def persist(write: Callable[[], Any], store: Store, patience: float = 30.0) -> Any:
    """Run a bookkeeping write, reconnecting and retrying while the database is unreachable."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            store.reconnect()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def guarded(jobs: list[Claimed], write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
    """``write(*args, **kwargs)``, which settles ``jobs``; if the database stays away, raise ``Unrecorded``."""
    try:
        write(*args, **kwargs)
    except Exception as exc:
        raise Unrecorded(jobs, exc) from exc


class Outcomes:
    """The writes of one worker's outcomes (``store``), announced to the app's signals and batches."""

    def __init__(self, worker_id: str, store: Store, clock: Callable[[], datetime]):
        self.worker_id, self.store, self.clock = worker_id, store, clock

    def settle(self, outcomes: list[Outcome], starts: list[Claimed]) -> tuple[set[int], BaseException | None]:
        """One commit for the succeeded actions ``outcomes`` and the ``starts`` of the next ones, then
        announce the outcomes. Returns the ids of the started jobs, and the error if the database stayed
        away."""
        now = self.clock()  # one time for every try: what makes a repeat match
        try:
            done, started = persist(
                lambda: self.store.settle_actions(
                    [(job.pk, token, result) for job, token, result in outcomes],
                    [(job.pk, token) for token, job in starts],
                    now,
                ),
                self.store,
            )
        except Exception as exc:
            logger.exception("could not record succeeded actions jobs=%s", [job.pk for job, _, _ in outcomes])
            return set(), exc
        for job, _token, result in outcomes:
            if job.pk in done:
                self.finished(job)
                send(signals.job_succeeded, job, result=result, worker_id=self.worker_id)
            elif persist(functools.partial(self.store.keep_late_result, job.pk, result), self.store):
                logger.info("canceled action finished; result kept, state stays canceled job=%s", job.pk)
        return started, None

    def action_failed(self, retry: RetryPolicy, job: ScheduledFunction, token: str, exc: BaseException) -> None:
        """Retry the action later per ``retry`` (after ``retry_after`` at least, for ``RateLimited``), or fail
        it (no retry left, or not to be retried)."""
        if (
            not isinstance(exc, Exception)
            or isinstance(exc, NonRetryableError | ArgumentValidationError)
            or job.attempts >= job.max_attempts
        ):
            self.fail(job, token, exc)
            return
        delay = retry.backoff(job.attempts)
        if isinstance(exc, RateLimited):  # the service said when to come back: not before, whatever the backoff
            delay = max(delay, exc.retry_after)
        run_at = self.clock() + timedelta(seconds=delay)
        if persist(lambda: self.store.retry_later(job.pk, token, describe(exc), run_at), self.store):
            send(signals.job_failed, job, error=exc, will_retry=True, worker_id=self.worker_id)

    def fail(self, job: ScheduledFunction, token: str, exc: BaseException, **fields: Any) -> None:
        now = self.clock()
        if persist(lambda: self.store.mark_failed(job.pk, token, describe(exc), now, **fields), self.store):
            job.attempts += 1 if fields.get("count_attempt") else 0
            job.state = State.FAILED  # as written: what finished() hands on (a failed replay is resumed later)
            self.finished(job)
            send(signals.job_failed, job, error=exc, will_retry=False, worker_id=self.worker_id)

    def finished(self, job: ScheduledFunction) -> None:
        """After ``job``'s final state committed: count it in its batch, if it has one."""
        self.store.batch_item_finished(job)
