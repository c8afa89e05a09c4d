"""Running one claimed job: look up its function, run the body, record the outcome.

- A **mutation** body and its job's completion commit in one transaction (exactly once): if the claim
  was lost meanwhile (canceled, lease recovered by another worker) the completion matches no row and
  the whole transaction rolls back.
- An **action** is marked started (``started_at``, ``attempts + 1``) in its own commit before the body
  runs (at most once); failures are retried by its ``RetryPolicy`` or fail the job.
- A job that is an item of a batch is counted in it once its final state has committed (``batches.py``).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import traceback
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.utils import timezone

from . import batches, guards, signals
from .context import JobInfo
from .exceptions import ArgumentValidationError, FunctionNotFound, NonRetryableError
from .execution import call_action_body, call_mutation_body
from .models import ScheduledFunction
from .registry import Function, registry
from .retry import RetryPolicy
from .transactions import is_connection_error, run_in_mutation_transaction

logger = logging.getLogger("django_scheduled_actions")
Jobs = ScheduledFunction.objects


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


class Executor:
    """Runs claimed jobs for one worker. ``on_body_start`` / ``on_body_end`` let the worker watch deadlines."""

    def __init__(self, worker_id: str, using: str = DEFAULT_DB_ALIAS, clock: Callable = timezone.now):
        self.worker_id = worker_id
        self.using = using
        self.clock = clock
        self.recorder: Recorder | None = None  # the worker's: batches the writes of succeeded actions

    def run(self, job: ScheduledFunction, token: str, watch: Callable[[float | None], None] | None = None,
            abandoned: Callable[[], bool] = lambda: False) -> None:
        try:
            fn = registry.for_job(job.name)
            if fn.kind != job.kind:
                raise FunctionNotFound(f"{job.name} is registered as a {fn.kind}, but the job is a {job.kind}")
        except FunctionNotFound as exc:
            self._fail(job, token, exc, count_attempt=True, started_at=self.clock())
            return
        if fn.kind == "mutation":
            self.run_mutation(fn, job, token)
        else:
            self.run_action(fn, job, token, watch or (lambda deadline: None), abandoned)

    # --- mutations: exactly once ---

    def run_mutation(self, fn: Function, job: ScheduledFunction, token: str) -> None:
        started = self.clock()
        info = JobInfo(job.pk, job.name, job.attempts + 1, job.scheduled_time)
        send(signals.job_started, job, worker_id=self.worker_id)

        jobs = Jobs.using(self.using)
        ctid = getattr(job, "ctid", None)  # PostgreSQL claims return it

        def body() -> Any:
            result = call_mutation_body(fn, fn.validator.to_python(job.args), self.using, info)
            now = self.clock()
            if not ((ctid and jobs.mark_succeeded_at(ctid, job.pk, token, result, now, started))
                    or jobs.mark_succeeded(job.pk, token, result, now, started_at=started, count_attempt=True)):
                raise ClaimLost
            return result

        try:
            with guards.policy("allow"):
                result = run_in_mutation_transaction(body, self.using)
        except ClaimLost:
            logger.info("mutation rolled back: job no longer claimed job=%s name=%s", job.pk, job.name)
        except (OperationalError, InterfaceError) as exc:
            if not is_connection_error(exc):
                self._fail(job, token, exc, count_attempt=True, started_at=started)
                return
            logger.warning("database connection lost during job=%s; handing it back", job.pk)
            connections[self.using].close()
            persist(lambda: Jobs.using(self.using).hand_back(token, [job.pk]), self.using)
        except BaseException as exc:  # SystemExit, CancelledError from a body: fail the job, keep the thread
            self._fail(job, token, exc, count_attempt=True, started_at=started)
            if isinstance(exc, KeyboardInterrupt):
                raise
        else:
            batches.job_finished(job, self.using)
            send(signals.job_succeeded, job, result=result, worker_id=self.worker_id)

    # --- actions: at most once, or at least once with a RetryPolicy ---

    def run_action(self, fn: Function, job: ScheduledFunction, token: str,
                   watch: Callable[[float | None], None], abandoned: Callable[[], bool]) -> None:
        now = self.clock()
        if not persist(lambda: Jobs.using(self.using).mark_started(job.pk, token, now), self.using):
            logger.info("action not started: job no longer claimed job=%s name=%s", job.pk, job.name)
            return
        job.attempts += 1
        info = JobInfo(job.pk, job.name, job.attempts, job.scheduled_time)
        send(signals.job_started, job, worker_id=self.worker_id)
        timeout = fn.timeout if fn.timeout is not None else _default_timeout()
        watch(time.monotonic() + timeout)
        try:
            result = call_action_body(fn, fn.validator.to_python(job.args), self.using, info)
        except BaseException as exc:  # not only Exception: a SystemExit must not strand the job
            watch(None)
            if not abandoned():
                self.record_action_failure(fn.retry, job, token, exc)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return
        watch(None)
        if abandoned():
            logger.warning("late result of a timed-out action discarded job=%s name=%s", job.pk, job.name)
            return
        self.record_action_success(job, token, result)

    def record_action_success(self, job: ScheduledFunction, token: str, result: Any) -> None:
        if self.recorder is not None and self.recorder.is_alive():
            self.recorder.record(job, token, result)
        else:
            self.record_successes([(job, token, result)])

    def record_successes(self, outcomes: list[tuple[ScheduledFunction, str, Any]]) -> None:
        """Write the outcomes of succeeded actions (one commit for all), then announce them."""
        jobs = Jobs.using(self.using)
        rows = [(job.pk, token, result) for job, token, result in outcomes]
        done = persist(lambda: jobs.mark_many_succeeded(rows, self.clock()), self.using)
        for job, _token, result in outcomes:
            if job.pk in done:
                batches.job_finished(job, self.using)
                send(signals.job_succeeded, job, result=result, worker_id=self.worker_id)
            elif persist(lambda j=job, r=result: jobs.keep_late_result(j.pk, r), self.using):
                logger.info("canceled action finished; result kept, state stays canceled job=%s", job.pk)

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


def _default_timeout() -> float:
    from .conf import app_settings

    return float(app_settings.ACTION_TIMEOUT)


class Recorder(threading.Thread):
    """Writes the outcomes of succeeded actions with group commit: the outcomes that executor threads
    hand in while one write is in flight go together in the next (one statement, one commit). Each
    thread waits until its outcome is written before it takes another job, so a killed worker leaves at
    most one unrecorded action per thread, as without batching; an idle worker adds no delay."""

    MAX_BATCH = 500

    def __init__(self, executor: Executor):
        super().__init__(name="scheduled-actions-recorder", daemon=True)
        self.executor = executor
        self.outcomes: queue.Queue[tuple[ScheduledFunction, str, Any, threading.Event] | None] = queue.Queue()

    def record(self, job: ScheduledFunction, token: str, result: Any) -> None:
        """Hand in an outcome and wait until it is written (or the recorder gave up on it)."""
        written = threading.Event()
        self.outcomes.put((job, token, result, written))
        while not written.wait(1.0):
            if not self.is_alive():  # stopped meanwhile: write it here
                self.executor.record_successes([(job, token, result)])
                return

    def stop(self) -> None:
        self.outcomes.put(None)

    def run(self) -> None:
        running = True
        while running:
            batch = [self.outcomes.get()]
            while len(batch) < self.MAX_BATCH and not self.outcomes.empty():
                batch.append(self.outcomes.get_nowait())
            running = None not in batch
            items = [item for item in batch if item is not None]
            if items:
                try:
                    self.executor.record_successes([(job, token, result) for job, token, result, _ in items])
                except Exception:  # the database stayed away: lease recovery settles these jobs
                    logger.exception("could not record succeeded actions jobs=%s", [i[0].pk for i in items])
                for *_, written in items:
                    written.set()
        connections.close_all()
