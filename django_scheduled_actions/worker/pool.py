"""The worker's executor threads: each takes claimed jobs from the queue and runs them (executor.py); one
whose action outlives its timeout is abandoned and replaced."""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext

from django.db import connections

from ..models import ScheduledFunction
from ..store import sessions
from .claims import Claims
from .connections import drop_broken_connections
from .executor import Executor
from .outcomes import Claimed, Unrecorded

logger = logging.getLogger("django_scheduled_actions")
Orphan = tuple[int, str, str]  # (job id, claim token, error): a job whose outcome could not be recorded


class ExecutorThread(threading.Thread):
    """Takes claimed jobs from the worker's queue and runs them. Abandoned when an action times out."""

    def __init__(self, pool: Pool, number: int):
        super().__init__(name=f"scheduled-actions-executor-{number}", daemon=True)
        self.pool = pool
        self.lock = threading.Lock()
        self.job: ScheduledFunction | None = None
        self.deadline: float | None = None
        self.abandoned = False

    def watch(self, deadline: float | None, job: ScheduledFunction | None) -> None:
        with self.lock:
            self.deadline, self.job = deadline, job

    def is_abandoned(self) -> bool:
        with self.lock:
            return self.abandoned

    def run(self) -> None:
        claims = self.pool.claims
        item: Claimed | None = None
        sessions.bound(self.pool.using)
        try:
            with self.pool.lane():  # a connection of its own, where the worker's connections leave room
                while not self.is_abandoned():
                    if item is not None and claims.stopping.is_set():  # pulled before the stop, never started
                        claims.hand_back([item])
                        item = None
                    item = item or claims.jobs.get()
                    if item is None:
                        break
                    drop_broken_connections()
                    item = self._run(item)
        finally:
            connections.close_all()

    def _run(self, item: Claimed) -> Claimed | None:
        """Run a claimed job (and the ones the executor pulls after it); returns a pulled job not yet run."""
        token, job = item
        try:
            return self.pool.executor.run(job, token, self.watch, self.is_abandoned, self.pool.claims.pull)
        except Unrecorded as exc:  # the database stayed away: release these jobs once it is back
            lost, error = exc.jobs, str(exc)
        except Exception as exc:  # a bug in the executor's own bookkeeping: do not strand the job
            logger.exception("executor failed on job=%s; releasing it", job.pk)
            lost, error = [item], repr(exc)
        finally:
            self.watch(None, None)
        for token, job in lost:
            logger.error("could not record the outcome of job=%s; releasing it", job.pk)
            self.pool.orphans.append((job.pk, token, error))
            self.pool.claims.job_done(job)
        return None

    def time_out(self, now: float) -> ScheduledFunction | None:
        """Abandon this thread if its action is past its deadline; returns the job it gave up."""
        with self.lock:
            if self.deadline is None or self.deadline > now or self.job is None:
                return None
            self.abandoned = True
            return self.job


class Pool:
    def __init__(
        self,
        size: int,
        claims: Claims,
        executor: Executor,
        using: str,
        lane: Callable[[], AbstractContextManager[None]] = nullcontext,
    ):
        self.size, self.claims, self.executor, self.using, self.lane = size, claims, executor, using, lane
        self.threads: list[ExecutorThread] = []
        self.abandoned: list[ExecutorThread] = []
        self.orphans: list[Orphan] = []  # appended by the threads, released by the worker's upkeep
        self._numbers = itertools.count(1)

    def start(self) -> None:
        self.threads = [self._spawn() for _ in range(self.size)]

    def time_out(self, mono: float, record: Callable[[ScheduledFunction], None]) -> None:
        """Abandon (and replace) each thread whose action is past its deadline; ``record`` its job."""
        for i, thread in enumerate(self.threads):
            job = thread.time_out(mono)
            if job is None:
                continue
            record(job)
            self.abandoned.append(thread)
            self.threads[i] = self._spawn()
            self.claims.job_done()

    def next_deadline(self) -> float | None:
        return min((t.deadline for t in self.threads if t.deadline is not None), default=None)

    def stop(self, deadline: float) -> None:
        """Let each thread finish its job until ``deadline`` (a monotonic time), then leave them."""
        for _ in self.threads:
            self.claims.jobs.put(None)
        for thread in self.threads + self.abandoned:
            thread.join(max(deadline - time.monotonic(), 0))
        if any(t.is_alive() and t.job is not None for t in self.threads):
            logger.warning("grace period over with jobs still running; their leases will expire")

    def _spawn(self) -> ExecutorThread:
        thread = ExecutorThread(self, next(self._numbers))
        thread.start()
        return thread
