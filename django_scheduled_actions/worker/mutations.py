"""Running mutations: exactly once.

A mutation body and its job's completion commit in one transaction: if the claim was lost meanwhile
(canceled, lease recovered by another worker) the completion matches no row and the whole transaction
rolls back. Mutations that are waiting when one finishes join its transaction (up to
``MUTATIONS_PER_COMMIT`` jobs or ``MUTATION_BATCH_SECONDS``): one commit for several jobs. If anything goes
wrong in such a transaction (a body raises, a conflict, a lost claim) it rolls back as a whole and each of
its jobs runs again alone (a body that raised is recorded failed, not re-run, unless what it raised was a
conflict or a lost unique-key race, or a job before it in the transaction had lost its claim (what it
raised may come from that body): then it runs again alone too, with the retries of
``run_in_mutation_transaction``); nothing of a rolled-back body stays. Two claims of one job (the first
lost to a recovery while it waited in the worker's queue) never share a transaction, and a job whose claim
committed after the transaction's snapshot does not join it (see ``Executor.take_next``). After a conflict
the next groups are smaller (``GroupSize``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from django.db import DatabaseError, InterfaceError, OperationalError

from .. import signals, telemetry
from ..calls.run import call_mutation_body
from ..conf import app_settings
from ..core import guards
from ..core.jobs import JobInfo
from ..core.registry import Function
from ..models import ScheduledFunction, State
from ..store.engines import engine
from ..store.errors import is_conflict, is_connection_error, is_lock_timeout, is_unique_race
from ..store.transactions import outermost, run_in_mutation_transaction
from .outcomes import Claimed, ClaimLost, Outcomes, Runnable, Unrecorded, guarded, persist, send

logger = logging.getLogger("django_scheduled_actions")
Jobs = ScheduledFunction.objects
MUTATIONS_PER_COMMIT = 16
MUTATION_BATCH_SECONDS = 0.02  # no job joins a mutation transaction that has run this long

Take = Callable[[float], tuple[Runnable | None, Claimed | None]]  # the next waiting mutation claimed before t


class GroupSize:
    """How many mutations may share a transaction: halved each time a shared transaction rolls back for a
    conflict (its jobs then run alone, never as the same group again), grown back by one for each
    transaction that commits as full as allowed. Scheduling mutations rarely conflict (migration 0013);
    bodies that read and write the same rows do, and a big group makes each conflict cost more bodies."""

    def __init__(self, most: int = MUTATIONS_PER_COMMIT):
        self.most = self.now = most

    def conflicted(self) -> None:
        self.now = max(1, self.now // 2)

    def committed(self, size: int) -> None:
        if size >= self.now:
            self.now = min(self.most, self.now + 1)


class Mutations:
    def __init__(self, outcomes: Outcomes, done: Callable[[ScheduledFunction], None]):
        self.outcomes, self.store, self.done = outcomes, outcomes.store, done
        self.using, self.clock, self.worker_id = outcomes.store.using, outcomes.clock, outcomes.worker_id
        self.group = GroupSize()
        self.spans = telemetry.active()  # None: the bodies run as they are (no span, nothing imported)

    def run_together(self, taken: list[Runnable], take: Take) -> Claimed | None:
        """Run the mutation in ``taken`` and those ``take`` hands over in one transaction with one
        completion statement. Returns the first pulled job that is not a mutation."""
        rows: list[tuple[str | None, int, str, Any, Any]] = []
        leftover: Claimed | None = None
        failing: int | None = None  # the job whose body raised, if one did
        opened = time.monotonic()  # before the transaction's snapshot: only claims committed by now join
        limit = opened + MUTATION_BATCH_SECONDS
        try:
            isolation = taken[0][0].isolation or app_settings.MUTATION_ISOLATION  # the group's: see Executor.run
            with guards.policy("allow"), outermost(self.using, isolation):
                while True:
                    fn, job, token = taken[len(rows)]
                    started = self.clock()
                    send(signals.job_started, job, worker_id=self.worker_id)
                    failing = len(rows)
                    info = JobInfo(job.pk, job.name, job.attempts + 1, job.scheduled_time, "mutation")
                    result = self._body(fn, job, info)
                    failing = None
                    rows.append((getattr(job, "ctid", None), job.pk, token, result, started))
                    if len(rows) >= self.group.now or time.monotonic() > limit:
                        break
                    following, leftover = take(opened)
                    if following is None:
                        break
                    taken.append(following)
                if engine(self.using).complete_mutations(rows, self.clock()) != len(rows):
                    raise ClaimLost
        except BaseException as exc:  # all rolled back: record the failing body, run the others alone
            self._after_rollback(taken, failing, exc)
            return leftover
        self.group.committed(len(rows))
        for (_fn, job, _token), row in zip(taken, rows, strict=True):
            self.outcomes.finished(job)
            send(signals.job_succeeded, job, result=row[3], worker_id=self.worker_id)
            self.done(job)
        return leftover

    def _body(self, fn: Function, job: ScheduledFunction, info: JobInfo) -> Any:
        """The job's body, in its own span when telemetry is on (each job of a group has its own)."""
        if self.spans is None:
            return call_mutation_body(fn, fn.validator.to_python(job.args), self.using, info)
        return self.spans.run_job(
            job, info, lambda: call_mutation_body(fn, fn.validator.to_python(job.args), self.using, info)
        )

    def _after_rollback(self, taken: list[Runnable], failing: int | None, exc: BaseException) -> None:
        lost_connection = isinstance(exc, DatabaseError) and is_connection_error(exc)
        retryable = isinstance(exc, DatabaseError) and (is_conflict(exc) or is_unique_race(exc))
        own_failure = (
            failing is not None
            and not isinstance(exc, ClaimLost)
            and not lost_connection
            and not retryable
            and not self._after_a_lost_claim(taken[:failing])
        )
        if lost_connection:  # each job runs again alone, on a new connection
            self.store.reconnect()
        if retryable and len(taken) > 1:
            self.group.conflicted()
        unrecorded: list[Claimed] = []
        for i, (fn, job, token) in enumerate(taken):
            try:
                if own_failure and i == failing:
                    self._failed(job, token, exc, self.clock())
                else:
                    self.run_alone(fn, job, token, announce=False)
            except Unrecorded as lost:
                unrecorded += lost.jobs
        if isinstance(exc, KeyboardInterrupt):
            raise exc
        if unrecorded:
            raise Unrecorded(unrecorded, exc)

    def _after_a_lost_claim(self, before: list[Runnable]) -> bool:
        """Whether a job whose body ran ``before`` the one that raised, in the transaction now rolled back,
        had lost its claim: the failure may then be what that body did (a second claim of a job inserting
        the same row), and is not recorded; the body runs again alone. True if the database cannot say."""
        if not before:
            return False
        try:
            held = set(
                Jobs.using(self.using)
                .filter(pk__in=[job.pk for _fn, job, _token in before], state=State.IN_PROGRESS)
                .values_list("pk", "token")
            )
        except DatabaseError:
            return True
        return any((job.pk, token) not in held for _fn, job, token in before)

    def run_alone(self, fn: Function, job: ScheduledFunction, token: str, *, announce: bool = True) -> None:
        """One mutation alone in its transaction, retried on conflicts."""
        started = self.clock()
        info = JobInfo(job.pk, job.name, job.attempts + 1, job.scheduled_time, "mutation")
        if announce:
            send(signals.job_started, job, worker_id=self.worker_id)
        store = engine(self.using)
        ctid = getattr(job, "ctid", None)  # PostgreSQL claims return it

        def body() -> Any:
            result = self._body(fn, job, info)
            if not store.complete_mutation(ctid, job.pk, token, result, self.clock(), started):
                raise ClaimLost
            return result

        try:
            with guards.policy("allow"):
                result = run_in_mutation_transaction(body, self.using, fn.isolation)
        except BaseException as exc:  # SystemExit, CancelledError from a body: fail the job, keep the thread
            self._failed(job, token, exc, started)
            if isinstance(exc, KeyboardInterrupt):
                raise
        else:
            self.outcomes.finished(job)
            send(signals.job_succeeded, job, result=result, worker_id=self.worker_id)
            self.done(job)

    def _failed(self, job: ScheduledFunction, token: str, exc: BaseException, started: Any) -> None:
        """After a mutation's transaction rolled back because of ``exc``: record what it means."""
        if isinstance(exc, ClaimLost):
            logger.info("mutation rolled back: job no longer claimed job=%s name=%s", job.pk, job.name)
        elif isinstance(exc, OperationalError | InterfaceError) and (is_connection_error(exc) or is_lock_timeout(exc)):
            logger.warning(
                "database connection lost or a lock not granted during job=%s; handing it back error=%r", job.pk, exc
            )
            self.store.reconnect()
            hand_back = lambda: Jobs.using(self.using).hand_back(token, [job.pk])  # noqa: E731
            guarded([(token, job)], persist, hand_back, self.store)
        else:
            guarded([(token, job)], self.outcomes.fail, job, token, exc, count_attempt=True, started_at=started)
        self.done(job)
