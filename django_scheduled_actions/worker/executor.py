"""Running claimed jobs: look up each one's function, run the body, record the outcome.

- A **mutation** body and its job's completion commit in one transaction (exactly once): if the claim
  was lost meanwhile (canceled, lease recovered by another worker) the completion matches no row and
  the whole transaction rolls back. Mutations that are waiting when one finishes join its transaction
  (up to ``MUTATIONS_PER_COMMIT`` jobs or ``MUTATION_BATCH_SECONDS``): one commit for several jobs. If
  anything goes wrong in such a transaction (a body raises, a conflict, a lost claim) it rolls back as
  a whole and each of its jobs runs again alone (a body that raised is recorded failed, not re-run,
  unless what it raised was a conflict or a lost unique-key race, or a job before it in the transaction
  had lost its claim (what it raised may come from that body): then it runs again alone too, with the
  retries of ``run_in_mutation_transaction``); nothing of a rolled-back body stays. Two claims of one
  job (the first lost to a recovery while it waited in the worker's queue) never share a transaction,
  and a job whose claim committed after the transaction's snapshot does not join it.
- An **action** is marked started (``started_at``, ``attempts + 1``) in a commit before the body runs
  (at most once); failures are retried by its ``RetryPolicy`` or fail the job. An executor thread's
  successes and the start of its next actions are one write, and the ``Ledger`` makes the writes of all
  threads that arrive together one commit (group commit). A thread starts one action at a time, or up to
  ``action_group`` (default 8) at once while the bodies it ran took under ``QUICK_ACTION_SECONDS``: a
  worker killed with ``kill -9`` leaves at most that many started actions per thread without an outcome
  (they fail as "worker lost", never re-run). On PostgreSQL, a claim made while threads wait for work
  marks that many of its actions started itself (``leases.PG_CLAIM``), and each runs at once: one
  commit fewer between enqueue and body; one not run after all (shutdown) has its start undone.
- A job that is an item of a batch is counted in it once its final state has committed (``batches.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable, Collection
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, InterfaceError, OperationalError, connections
from django.utils import timezone

from .. import signals
from ..calls.run import call_action_body, call_mutation_body
from ..conf import app_settings
from ..core import guards
from ..core.jobs import JobInfo
from ..core.registry import Function, registry
from ..core.retry import RetryPolicy
from ..exceptions import ArgumentValidationError, FunctionNotFound, NonRetryableError
from ..models import ScheduledFunction, State
from ..scheduling import batches
from ..store import sessions
from ..store.engines import engine
from ..store.transactions import (
    is_conflict,
    is_connection_error,
    is_lock_timeout,
    is_unique_race,
    outermost,
    run_in_mutation_transaction,
)

logger = logging.getLogger("django_scheduled_actions")
Jobs = ScheduledFunction.objects
MUTATIONS_PER_COMMIT = 16
MUTATION_BATCH_SECONDS = 0.02  # no job joins a mutation transaction that has run this long
QUICK_ACTION_SECONDS = 0.005  # actions this quick are started in groups of up to ``action_group``

Claimed = tuple[str, ScheduledFunction]  # (claim token, job): what the worker's queue holds
Pull = Callable[[], "Claimed | None"]  # the next claimed job if one is waiting, without blocking
Runnable = tuple[Function, ScheduledFunction, str]  # a claimed job with its function: (fn, job, token)


class ClaimLost(Exception):
    """The job is no longer ours (canceled, or its lease was recovered by another worker)."""


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()


def send(signal: Any, job: ScheduledFunction, **kwargs: Any) -> None:
    for receiver, response in signal.send_robust(sender=ScheduledFunction, job=job, **kwargs):
        if isinstance(response, Exception):
            logger.error("signal receiver failed receiver=%r job=%s", receiver, job.pk, exc_info=response)


def persist(write: Callable[[], int], using: str, patience: float = 30.0) -> int:
    """Run a bookkeeping write, reconnecting and retrying while the database is unreachable."""
    deadline = time.monotonic() + patience
    delay = 0.05
    while True:
        try:
            return write()
        except (OperationalError, InterfaceError):
            if time.monotonic() > deadline:
                raise
            connections[using].close()
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


class Unrecorded(Exception):
    """The outcome of these claimed jobs could not be written (the database stayed away): the worker
    releases them (``leases.release``) once it can."""

    def __init__(self, jobs: list[Claimed], cause: BaseException):
        super().__init__(repr(cause))
        self.jobs = jobs


def _nothing_waiting() -> Claimed | None:
    return None


class Executor:
    """Runs claimed jobs for one worker. ``done(job)`` is called once for each job taken (from the
    queue or by ``pull``) whose outcome was written; ``watch(deadline, job)`` lets the worker time out
    the action running on a thread; ``leave((token, job))`` may hand back a job whose function this
    worker does not know, for a worker that does (True), instead of failing it (``deploys.py``)."""

    def __init__(self, worker_id: str, using: str = DEFAULT_DB_ALIAS, clock: Callable = timezone.now,
                 done: Callable[[ScheduledFunction], None] = lambda job: None, action_group: int = 8,
                 leave: Callable[[Claimed], bool] | None = None):
        self.worker_id = worker_id
        self.leave = leave
        self.action_group = action_group
        self.using = using
        self.clock = clock
        self.done = done
        self.ledger: Ledger | None = None  # the worker's: group commit of action successes and starts

    def run(self, job: ScheduledFunction, token: str,
            watch: Callable[[float | None, ScheduledFunction | None], None] = lambda deadline, job: None,
            abandoned: Callable[[], bool] = lambda: False, pull: Pull = _nothing_waiting) -> Claimed | None:
        """Run ``job`` and, while it is efficient to, the jobs ``pull`` hands over. Returns a job that was
        pulled but not run (the caller runs it next), or None."""
        fn = self._function(job, token)
        if fn is None:
            return None
        if fn.kind == "mutation":
            return self.run_mutations([(fn, job, token)], pull)
        return self.run_actions(fn, job, token, watch, abandoned, pull)

    def _function(self, job: ScheduledFunction, token: str) -> Function | None:
        """The job's function, or None after leaving the job to another worker or failing it (unknown name,
        or registered as another kind)."""
        try:
            fn = registry.for_job(job.name)
            if fn.kind != job.kind:
                raise FunctionNotFound(f"{job.name} is registered as a {fn.kind}, but the job is a {job.kind}")
        except FunctionNotFound as exc:
            self._guarded([(token, job)], self._unknown, job, token, exc)
            self.done(job)
            return None
        return fn

    def _unknown(self, job: ScheduledFunction, token: str, exc: FunctionNotFound) -> None:
        """A job whose function this worker cannot run: handed back for a worker that can, else failed."""
        if self.leave is not None and self.leave((token, job)):
            return
        started = job.started_at is not None  # by the claim: that counted the attempt
        self._fail(job, token, exc, count_attempt=not started, started_at=job.started_at if started else self.clock())

    def _guarded(self, jobs: list[Claimed], write: Callable[..., Any], *args: Any, **kwargs: Any) -> None:
        """``write(*args, **kwargs)``, which settles ``jobs``; if the database stays away, raise
        ``Unrecorded`` for them."""
        try:
            write(*args, **kwargs)
        except Exception as exc:
            raise Unrecorded(jobs, exc) from exc

    # --- mutations: exactly once ---

    def run_mutations(self, taken: list[Runnable], pull: Pull) -> Claimed | None:
        """Run the mutations in ``taken`` (one, from the caller) and those waiting in ``pull`` in one
        transaction with one completion statement. Returns the first pulled job that is not a mutation."""
        rows: list[tuple[str | None, int, str, Any, Any]] = []
        leftover: Claimed | None = None
        failing: int | None = None  # the job whose body raised, if one did
        opened = time.monotonic()  # before the transaction's snapshot: only claims committed by now join
        limit = opened + MUTATION_BATCH_SECONDS
        try:
            with guards.policy("allow"), outermost(self.using, app_settings.MUTATION_ISOLATION):
                while True:
                    fn, job, token = taken[len(rows)]
                    started = self.clock()
                    send(signals.job_started, job, worker_id=self.worker_id)
                    failing = len(rows)
                    info = JobInfo(job.pk, job.name, job.attempts + 1, job.scheduled_time, "mutation")
                    result = call_mutation_body(fn, fn.validator.to_python(job.args), self.using, info)
                    failing = None
                    rows.append((getattr(job, "ctid", None), job.pk, token, result, started))
                    if len(rows) >= MUTATIONS_PER_COMMIT or time.monotonic() > limit:
                        break
                    following, leftover = self._take_next(pull, "mutation", {job.pk for _f, job, _t in taken},
                                                          claimed_before=opened)
                    if following is None:
                        break
                    taken.append(following)
                if engine(self.using).complete_mutations(rows, self.clock()) != len(rows):
                    raise ClaimLost
        except BaseException as exc:  # all rolled back: record the failing body, run the others alone
            self._after_rollback(taken, failing, exc)
            return leftover
        for (_fn, job, _token), row in zip(taken, rows, strict=True):
            batches.job_finished(job, self.using)
            send(signals.job_succeeded, job, result=row[3], worker_id=self.worker_id)
            self.done(job)
        return leftover

    def _after_rollback(self, taken: list[Runnable], failing: int | None,
                        exc: BaseException) -> None:
        lost_connection = isinstance(exc, DatabaseError) and is_connection_error(exc)
        retryable = isinstance(exc, DatabaseError) and (is_conflict(exc) or is_unique_race(exc))
        own_failure = (failing is not None and not isinstance(exc, ClaimLost) and not lost_connection
                       and not retryable and not self._after_a_lost_claim(taken[:failing]))
        if lost_connection:  # each job runs again alone, on a new connection
            connections[self.using].close()
        unrecorded: list[Claimed] = []
        for i, (fn, job, token) in enumerate(taken):
            try:
                if own_failure and i == failing:
                    self._mutation_failed(job, token, exc, self.clock())
                else:
                    self.run_mutation(fn, job, token, announce=False)
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
            held = set(Jobs.using(self.using).filter(pk__in=[job.pk for _fn, job, _token in before],
                                                     state=State.IN_PROGRESS).values_list("pk", "token"))
        except DatabaseError:
            return True
        return any((job.pk, token) not in held for _fn, job, token in before)

    def _take_next(self, pull: Pull, kind: str, joined: Collection[int] = (),
                   claimed_before: float | None = None) -> tuple[Runnable | None, Claimed | None]:
        """The next waiting job, if there is one: ``(runnable, None)`` if it is a ``kind`` that can run
        (its function known) and not one of the ``joined`` jobs, else ``(None, job)``, for the caller to
        hand back (unknown names fail there). A job already joined is a second claim of it (the first
        lost, to a recovery, while it waited here): the two must never share a transaction.

        ``claimed_before``: a job whose claim committed later is handed back too. A transaction whose
        snapshot was taken before that claim committed does not see the job as claimed (PostgreSQL's
        repeatable read and serializable): its completion would match no row, and roll the group back."""
        following = pull()
        if following is None:
            return None, None
        token, job = following
        if job.pk in joined or (claimed_before is not None
                                and getattr(job, "claim_committed", claimed_before) > claimed_before):
            return None, following
        try:
            fn = registry.for_job(job.name)
        except FunctionNotFound:
            return None, following
        return ((fn, job, token), None) if fn.kind == kind == job.kind else (None, following)

    def run_mutation(self, fn: Function, job: ScheduledFunction, token: str, *, announce: bool = True) -> None:
        """One mutation alone in its transaction, retried on conflicts."""
        started = self.clock()
        info = JobInfo(job.pk, job.name, job.attempts + 1, job.scheduled_time, "mutation")
        if announce:
            send(signals.job_started, job, worker_id=self.worker_id)

        store = engine(self.using)
        ctid = getattr(job, "ctid", None)  # PostgreSQL claims return it

        def body() -> Any:
            result = call_mutation_body(fn, fn.validator.to_python(job.args), self.using, info)
            if not store.complete_mutation(ctid, job.pk, token, result, self.clock(), started):
                raise ClaimLost
            return result

        try:
            with guards.policy("allow"):
                result = run_in_mutation_transaction(body, self.using)
        except BaseException as exc:  # SystemExit, CancelledError from a body: fail the job, keep the thread
            self._mutation_failed(job, token, exc, started)
            if isinstance(exc, KeyboardInterrupt):
                raise
        else:
            batches.job_finished(job, self.using)
            send(signals.job_succeeded, job, result=result, worker_id=self.worker_id)
            self.done(job)

    def _mutation_failed(self, job: ScheduledFunction, token: str, exc: BaseException, started: Any) -> None:
        """After a mutation's transaction rolled back because of ``exc``: record what it means."""
        if isinstance(exc, ClaimLost):
            logger.info("mutation rolled back: job no longer claimed job=%s name=%s", job.pk, job.name)
        elif isinstance(exc, OperationalError | InterfaceError) and (is_connection_error(exc) or is_lock_timeout(exc)):
            logger.warning("database connection lost or a lock not granted during job=%s; handing it back "
                           "error=%r", job.pk, exc)
            connections[self.using].close()
            hand_back = lambda: Jobs.using(self.using).hand_back(token, [job.pk])  # noqa: E731
            self._guarded([(token, job)], persist, hand_back, self.using)
        else:
            self._guarded([(token, job)], self._fail, job, token, exc, count_attempt=True, started_at=started)
        self.done(job)

    # --- actions: at most once, or at least once with a RetryPolicy ---

    def run_actions(self, fn: Function, job: ScheduledFunction, token: str,
                    watch: Callable[[float | None, ScheduledFunction | None], None], abandoned: Callable[[], bool],
                    pull: Pull) -> Claimed | None:
        """Start and run ``job``, then the actions ``pull`` hands over: the successes of one group and the
        start of the next are one write. A group is one action, or up to ``action_group`` while every
        body of the previous group took under ``QUICK_ACTION_SECONDS``. Returns the first pulled job that
        is not an action."""
        group: list[Runnable] = [(fn, job, token)]
        outcomes: list[tuple[ScheduledFunction, str, Any]] = []
        leftover: Claimed | None = None
        while group:
            # an action the claim marked started (its started_at is set) needs no start of its own
            started = {job.pk for _fn, job, _token in group if job.started_at is not None}
            starts = [(token, job) for _fn, job, token in group if job.pk not in started]
            if outcomes or starts:
                started |= self._settle(outcomes, starts)
            for done_job, _token, _result in outcomes:
                self.done(done_job)
            outcomes, quick = [], True
            for i, (fn, job, token) in enumerate(group):
                if job.pk not in started:
                    logger.info("action not started: job no longer claimed job=%s name=%s", job.pk, job.name)
                    self.done(job)
                    continue
                began = time.monotonic()
                try:
                    outcome = self._run_started_action(fn, job, token, watch, abandoned)
                except Unrecorded as lost:  # its failure could not be written: nor will the group's be
                    jobs = lost.jobs + [(t, j) for j, t, _r in outcomes] + _started_after(group, i, started)
                    raise Unrecorded(jobs, lost.__cause__ or lost) from lost
                if abandoned():  # timed out: the worker recorded it; settle the rest here, then stop
                    self._give_up_group(outcomes, _started_after(group, i, started))
                    return None
                quick = quick and time.monotonic() - began < QUICK_ACTION_SECONDS
                if outcome is not None:
                    outcomes.append((job, token, outcome[0]))
            group = []
            while leftover is None and len(group) < (self.action_group if quick else 1):
                following, leftover = self._take_next(pull, "action")
                if following is None:
                    break
                group.append(following)
        if outcomes:
            self._settle(outcomes, [])
            for done_job, _token, _result in outcomes:
                self.done(done_job)
        return leftover

    def _give_up_group(self, outcomes: list[tuple[ScheduledFunction, str, Any]], unstarted: list[Claimed]) -> None:
        """An abandoned thread's last writes: its group's successes, and its started actions that never
        ran go back to pending (their start is undone)."""
        jobs = Jobs.using(self.using)
        _started, error = self._write(outcomes, [])
        try:
            for token, job in unstarted:
                persist(lambda t=token, j=job: jobs.undo_start(j.pk, t), self.using)
        except Exception as exc:
            error = exc
        if error is not None:
            raise Unrecorded([(token, job) for job, token, _result in outcomes] + unstarted, error)
        for job, _token, _result in outcomes:
            self.done(job)
        for _token, job in unstarted:
            self.done(job)

    def _run_started_action(self, fn: Function, job: ScheduledFunction, token: str,
                            watch: Callable[[float | None, ScheduledFunction | None], None],
                            abandoned: Callable[[], bool]) -> tuple[Any] | None:
        """Run a started action's body: ``(result,)`` on success; None once a failure is recorded, or if
        the worker abandoned the body (timed out; the worker recorded that)."""
        job.attempts += 1
        info = JobInfo(job.pk, job.name, job.attempts, job.scheduled_time, "action")
        send(signals.job_started, job, worker_id=self.worker_id)
        timeout = fn.timeout if fn.timeout is not None else float(app_settings.ACTION_TIMEOUT)
        watch(time.monotonic() + timeout, job)
        try:
            result = call_action_body(fn, fn.validator.to_python(job.args), self.using, info)
        except BaseException as exc:  # not only Exception: a SystemExit must not strand the job
            watch(None, None)
            if not abandoned():
                self._guarded([(token, job)], self.record_action_failure, fn.retry, job, token, exc)
                self.done(job)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None
        watch(None, None)
        if abandoned():
            logger.warning("late result of a timed-out action discarded job=%s name=%s", job.pk, job.name)
            return None
        return (result,)

    def _settle(self, outcomes: list[tuple[ScheduledFunction, str, Any]], starts: list[Claimed]) -> set[int]:
        """Write succeeded actions and start the next ones; returns the ids that started. Through the
        worker's ledger (group commit) when there is one."""
        jobs = [(token, job) for job, token, _ in outcomes] + starts
        if self.ledger is not None and self.ledger.is_alive():
            ok, error = self.ledger.settle(outcomes, starts)
        else:
            ok, error = self._write(outcomes, starts)
        if error is not None:
            raise Unrecorded(jobs, error)
        return ok

    def _write(self, outcomes: list[tuple[ScheduledFunction, str, Any]],
               starts: list[Claimed]) -> tuple[set[int], BaseException | None]:
        """One commit for ``outcomes`` and ``starts``, then announce the outcomes. Returns the ids of the
        started jobs, and the error if the database stayed away."""
        store, now = engine(self.using), self.clock()  # one time for every try: what makes a repeat match
        try:
            done, started = persist(lambda: store.settle_actions(
                [(job.pk, token, result) for job, token, result in outcomes],
                [(job.pk, token) for token, job in starts], now), self.using)
        except Exception as exc:
            logger.exception("could not record succeeded actions jobs=%s", [job.pk for job, _, _ in outcomes])
            return set(), exc
        for job, _token, result in outcomes:
            if job.pk in done:
                batches.job_finished(job, self.using)
                send(signals.job_succeeded, job, result=result, worker_id=self.worker_id)
            elif persist(lambda j=job, r=result: Jobs.using(self.using).keep_late_result(j.pk, r), self.using):
                logger.info("canceled action finished; result kept, state stays canceled job=%s", job.pk)
        return started, None

    def record_action_failure(self, retry: RetryPolicy, job: ScheduledFunction, token: str,
                              exc: BaseException) -> None:
        if (not isinstance(exc, Exception) or isinstance(exc, NonRetryableError | ArgumentValidationError)
                or job.attempts >= job.max_attempts):
            self._fail(job, token, exc)
            return
        run_at = self.clock() + timedelta(seconds=retry.backoff(job.attempts))
        if persist(lambda: Jobs.using(self.using).retry_later(job.pk, token, describe(exc), run_at), self.using):
            send(signals.job_failed, job, error=exc, will_retry=True, worker_id=self.worker_id)

    def _fail(self, job: ScheduledFunction, token: str, exc: BaseException, **fields: Any) -> None:
        now = self.clock()
        if persist(lambda: Jobs.using(self.using).mark_failed(job.pk, token, describe(exc), now, **fields),
                   self.using):
            job.attempts += 1 if fields.get("count_attempt") else 0
            batches.job_finished(job, self.using)
            send(signals.job_failed, job, error=exc, will_retry=False, worker_id=self.worker_id)


def _started_after(group: list[Runnable], i: int, started: set[int]) -> list[Claimed]:
    """The jobs of ``group`` after the ``i``-th that were marked started (and have not run)."""
    return [(token, job) for _fn, job, token in group[i + 1:] if job.pk in started]


class Ledger(threading.Thread):
    """Writes the successes of actions and the starts of the next ones with group commit: what the
    executor threads hand in while one write is in flight goes together in the next (one statement,
    one commit). A thread waits until its write has committed before it runs another body, so a killed
    worker leaves at most one action per thread started and unrecorded, as without batching; an idle
    worker adds no delay."""

    MAX_BATCH = 500

    def __init__(self, executor: Executor):
        super().__init__(name="scheduled-actions-ledger", daemon=True)
        self.executor = executor
        self.requests: queue.Queue[_Request | None] = queue.Queue()
        self.writing = threading.Lock()  # held by whoever is writing: this thread or a caller of settle

    def settle(self, outcomes: list[tuple[ScheduledFunction, str, Any]],
               starts: list[Claimed]) -> tuple[set[int], BaseException | None]:
        """Write now on the caller's connection if nothing else is being written (no hand-off to this
        thread: ~0.3 ms of an idle worker's action start); else hand the write in and wait until it is
        committed (or failed), grouped with what others hand in meanwhile."""
        if self.requests.empty() and self.writing.acquire(blocking=False):
            try:
                return self.executor._write(outcomes, starts)
            finally:
                self.writing.release()
        request = _Request(outcomes, starts)
        self.requests.put(request)
        while not request.written.wait(1.0):
            if not self.is_alive():  # stopped meanwhile: write it here
                return self.executor._write(outcomes, starts)
        return request.started, request.error

    def stop(self) -> None:
        self.requests.put(None)

    def run(self) -> None:
        sessions.bound(self.executor.using)
        running = True
        while running:
            batch = [self.requests.get()]
            with self.writing:  # what is handed in while a caller writes joins this batch
                while len(batch) < self.MAX_BATCH and not self.requests.empty():
                    batch.append(self.requests.get_nowait())
                running = None not in batch
                requests = [request for request in batch if request is not None]
                if requests:
                    started, error = self.executor._write([o for r in requests for o in r.outcomes],
                                                          [s for r in requests for s in r.starts])
            for request in requests:
                request.started, request.error = started, error
                request.written.set()
        connections.close_all()


class _Request:
    def __init__(self, outcomes: list[tuple[ScheduledFunction, str, Any]], starts: list[Claimed]):
        self.outcomes, self.starts = outcomes, starts
        self.started: set[int] = set()
        self.error: BaseException | None = None
        self.written = threading.Event()
