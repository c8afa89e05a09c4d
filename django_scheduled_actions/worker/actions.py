"""Running actions: at most once, or at least once with a ``RetryPolicy``.

An action is marked started (``started_at``, ``attempts + 1``) in a commit before the body runs (at most
once); failures are retried by its ``RetryPolicy`` or fail the job. A thread's successes and the start of
its next actions are one write (through the worker's ``Ledger``: one commit for all threads that arrive
together). A thread starts one action at a time, or up to ``group_size`` (default 8) at once while the
bodies it ran took under ``QUICK_ACTION_SECONDS``: a worker killed with ``kill -9`` leaves at most that
many started actions per thread without an outcome (they fail as "worker lost", never re-run). On
PostgreSQL, a claim made while threads wait for work marks that many of its actions started itself
(``claim`` in store/engines/postgresql.sql), and each runs at once; one not run after all (shutdown) has
its start undone.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync

from .. import signals, telemetry
from ..calls.run import call_action_body, call_async_action_body
from ..calls.through import Through, direct
from ..conf import app_settings
from ..core.jobs import JobInfo
from ..core.registry import Function
from ..models import ScheduledFunction
from .outcomes import Claimed, Outcome, Outcomes, Runnable, Unrecorded, guarded, persist, send

logger = logging.getLogger("django_scheduled_actions")
QUICK_ACTION_SECONDS = 0.005  # actions this quick are started in groups of up to ``group_size``

Watch = Callable[[float | None, ScheduledFunction | None], None]  # the deadline of the body running, or none
Settle = Callable[[list[Outcome], list[Claimed]], tuple[set[int], BaseException | None]]
Take = Callable[[], tuple[Runnable | None, Claimed | None]]  # the next waiting action, or the job that is not one


class Actions:
    def __init__(
        self,
        outcomes: Outcomes,
        done: Callable[[ScheduledFunction], None],
        group_size: int = 8,
        settle: Settle | None = None,
        through: Through = direct,
    ):
        self.outcomes, self.store, self.done, self.group_size = outcomes, outcomes.store, done, group_size
        self.write = settle or outcomes.settle  # the worker's ledger, when there is one
        self.through = through  # how the bodies' ctx reach the database: the worker's connections
        self.spans = telemetry.active()  # None: the bodies run as they are (no span, nothing imported)

    def run(self, first: Runnable, watch: Watch, abandoned: Callable[[], bool], take: Take) -> Claimed | None:
        """Start and run ``first``, then the actions ``take`` hands over: the successes of one group and the
        start of the next are one write. A group is one action, or up to ``group_size`` while every body of
        the previous group took under ``QUICK_ACTION_SECONDS``. Returns the first pulled job that is not an
        action."""
        group: list[Runnable] = [first]
        outcomes: list[Outcome] = []
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
                    outcome = self._run_started(fn, job, token, watch, abandoned)
                except Unrecorded as lost:  # its failure could not be written: nor will the group's be
                    jobs = lost.jobs + [(t, j) for j, t, _r in outcomes] + _started_after(group, i, started)
                    raise Unrecorded(jobs, lost.__cause__ or lost) from lost
                if abandoned():  # timed out: the worker recorded it; settle the rest here, then stop
                    self._give_up(outcomes, _started_after(group, i, started))
                    return None
                quick = quick and time.monotonic() - began < QUICK_ACTION_SECONDS
                if outcome is not None:
                    outcomes.append((job, token, outcome[0]))
            group = []
            while leftover is None and len(group) < (self.group_size if quick else 1):
                following, leftover = take()
                if following is None:
                    break
                group.append(following)
        if outcomes:
            self._settle(outcomes, [])
            for done_job, _token, _result in outcomes:
                self.done(done_job)
        return leftover

    def _give_up(self, outcomes: list[Outcome], unstarted: list[Claimed]) -> None:
        """An abandoned thread's last writes: its group's successes, and its started actions that never
        ran go back to pending (their start is undone)."""
        _started, error = self.outcomes.settle(outcomes, [])
        try:
            for token, job in unstarted:
                persist(functools.partial(self.store.undo_start, job.pk, token), self.store)
        except Exception as exc:
            error = exc
        if error is not None:
            raise Unrecorded([(token, job) for job, token, _result in outcomes] + unstarted, error)
        for job, _token, _result in outcomes:
            self.done(job)
        for _token, job in unstarted:
            self.done(job)

    def _run_started(
        self, fn: Function, job: ScheduledFunction, token: str, watch: Watch, abandoned: Callable[[], bool]
    ) -> tuple[Any] | None:
        """Run a started action's body: ``(result,)`` on success; None once a failure is recorded, or if
        the worker abandoned the body (timed out; the worker recorded that)."""
        job.attempts += 1
        info = JobInfo(job.pk, job.name, job.attempts, job.scheduled_time, "action")
        send(signals.job_started, job, worker_id=self.outcomes.worker_id)
        timeout = fn.timeout if fn.timeout is not None else float(app_settings.ACTION_TIMEOUT)
        watch(time.monotonic() + timeout, job)
        try:
            if self.spans is None:
                result = self._body(fn, job, info)
            else:
                result = self.spans.run_job(job, info, lambda: self._body(fn, job, info))
        except BaseException as exc:  # not only Exception: a SystemExit must not strand the job
            watch(None, None)
            if not abandoned():
                guarded([(token, job)], self.outcomes.action_failed, fn.retry, job, token, exc)
                self.done(job)
            if isinstance(exc, KeyboardInterrupt):
                raise
            return None
        watch(None, None)
        if abandoned():
            logger.warning("late result of a timed-out action discarded job=%s name=%s", job.pk, job.name)
            return None
        return (result,)

    def _body(self, fn: Function, job: ScheduledFunction, info: JobInfo) -> Any:
        kwargs = fn.validator.to_python(job.args)
        if fn.is_async:  # no event loop of a worker's around (run_due_jobs, a test's Executor): to completion
            return async_to_sync(call_async_action_body)(fn, kwargs, self.store.using, info)
        return call_action_body(fn, kwargs, self.store.using, info, through=self.through)

    def _settle(self, outcomes: list[Outcome], starts: list[Claimed]) -> set[int]:
        """Write succeeded actions and start the next ones; returns the ids that started."""
        started, error = self.write(outcomes, starts)
        if error is not None:
            raise Unrecorded([(token, job) for job, token, _ in outcomes] + starts, error)
        return started


def _started_after(group: list[Runnable], i: int, started: set[int]) -> list[Claimed]:
    """The jobs of ``group`` after the ``i``-th that were marked started (and have not run)."""
    return [(token, job) for _fn, job, token in group[i + 1 :] if job.pk in started]
