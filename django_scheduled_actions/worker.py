"""The worker: claims due jobs in batches and runs them on a pool of threads.

The main thread claims, dispatches, watches action deadlines, recovers lost workers' jobs and prunes
old ones; executor threads run bodies; a recorder thread writes succeeded actions with group commit; a
heartbeat thread renews the worker's row, which is the lease on every job it holds; a cron thread
enqueues due cron runs; on PostgreSQL a listener thread wakes the loop on NOTIFY. Signals: the first
SIGTERM/SIGINT stops claiming, hands unstarted claims back and lets running jobs finish within
``grace`` seconds; a second one exits at once.
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.utils import timezone

from . import leases
from .conf import app_settings
from .cron_scheduler import CronLoop
from .exceptions import JobTimeout
from .executor import Executor, Recorder, persist
from .models import ScheduledFunction
from .notify import Listener, supports_listen
from .registry import registry

logger = logging.getLogger("django_scheduled_actions")
PRUNE_EVERY = 600.0


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class ExecutorThread(threading.Thread):
    """Takes claimed jobs from the worker's queue and runs them. Abandoned when an action times out."""

    def __init__(self, worker: Worker, number: int):
        super().__init__(name=f"scheduled-actions-executor-{number}", daemon=True)
        self.worker = worker
        self.lock = threading.Lock()
        self.job: ScheduledFunction | None = None
        self.deadline: float | None = None
        self.abandoned = False

    def watch(self, deadline: float | None) -> None:
        with self.lock:
            self.deadline = deadline

    def is_abandoned(self) -> bool:
        with self.lock:
            return self.abandoned

    def run(self) -> None:
        worker = self.worker
        try:
            while not self.is_abandoned():
                item = worker.jobs.get()
                if item is None:
                    break
                token, job = item
                _drop_broken_connections()
                with self.lock:
                    self.job = job
                try:
                    worker.executor.run(job, token, self.watch, self.is_abandoned)
                except Exception as exc:  # the executor's own bookkeeping failed (database gone too long)
                    logger.exception("executor could not record job=%s; releasing it", job.pk)
                    worker.orphans.append((job.pk, token, repr(exc)))
                finally:
                    with self.lock:
                        self.job, self.deadline = None, None
                    if not self.is_abandoned():
                        worker.job_done()
        finally:
            connections.close_all()

    def time_out(self, now: float) -> ScheduledFunction | None:
        """Abandon this thread if its action is past its deadline; returns the job it gave up."""
        with self.lock:
            if self.deadline is None or self.deadline > now or self.job is None:
                return None
            self.abandoned = True
            return self.job


class Heartbeat(threading.Thread):
    """Renews the worker's lease (its row in the workers table) every third of a lease: while it beats,
    nobody recovers the jobs it holds."""

    def __init__(self, worker: Worker):
        super().__init__(name="scheduled-actions-heartbeat", daemon=True)
        self.worker = worker

    def run(self) -> None:
        worker = self.worker
        interval = worker.lease.total_seconds() / 3
        while not worker.finished.wait(interval):
            try:
                if not leases.heartbeat(worker.worker_id, worker.clock(), worker.lease, worker.using):
                    worker.register()  # the row was pruned or deleted by hand: register again
            except (OperationalError, InterfaceError) as exc:
                logger.warning("heartbeat failed, retrying error=%r", exc)
                connections[worker.using].close()
        connections.close_all()


class Worker:
    def __init__(self, *, concurrency: int = 4, queues: Sequence[str] | None = None, burst: bool = False,
                 max_jobs: int | None = None, poll_interval: float | None = None, worker_id: str | None = None,
                 using: str = DEFAULT_DB_ALIAS, grace: float = 30.0, clock: Callable[[], datetime] = timezone.now,
                 crons: bool = True):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.prefetch = max(concurrency, 8)  # claimed jobs waiting for a thread, at most
        self.capacity = concurrency + self.prefetch
        self.queues = list(queues) if queues else None
        self.burst = burst
        self.crons = crons and not burst  # a burst drains what is due; it does not tick crons
        self.max_jobs = max_jobs
        self.poll_interval = float(poll_interval or app_settings.POLL_INTERVAL)
        self.worker_id = worker_id or default_worker_id()
        self.using = using
        self.grace = grace
        self.clock = clock
        self.lease = timedelta(seconds=float(app_settings.LEASE_SECONDS))
        self.executor = Executor(self.worker_id, using, clock)
        self.recorder = Recorder(self.executor)
        self.executor.recorder = self.recorder
        self.jobs: queue.Queue[tuple[str, ScheduledFunction] | None] = queue.Queue()
        self.wake = threading.Event()
        self.maybe_due = True  # False after a claim came back short, until a NOTIFY, a timeout or a dry queue
        self.claim_delay = 0.0  # after a failed claim: retry soon, backing off while the database is away
        self.orphans: list[tuple[int, str, str]] = []  # jobs whose outcome could not be recorded
        self.failed_claims: list[str] = []  # tokens of claims that raised: hand back whatever they took
        self.stopping = threading.Event()
        self.finished = threading.Event()
        self.threads: list[ExecutorThread] = []
        self.abandoned: list[ExecutorThread] = []
        self.background: list[threading.Thread] = []
        self.inflight = 0
        self.claimed_total = 0
        self.completed_total = 0
        self._count_lock = threading.Lock()
        self._thread_numbers = iter(range(1, 1_000_000))
        self._next_recovery = 0.0
        self._next_prune = 0.0

    # --- life cycle ---

    def run(self) -> int:
        """Run until stopped (or, with ``burst``, until nothing is due). Returns the exit code."""
        previous_handlers = self._install_signal_handlers()
        _keep_connections_open()
        logger.info("worker starting worker_id=%s concurrency=%d queues=%s functions=%d",
                    self.worker_id, self.concurrency, self.queues or "all", len(registry.all()))
        self.register()
        leases.recover_previous_incarnation(self.worker_id, self.clock(), self.using)
        self.background = [Heartbeat(self)]
        self.recorder.start()
        if supports_listen(self.using) and not self.burst:
            self.background.append(Listener(self.notify, self.stopping, self.using))
        if self.crons:
            self.background.append(CronLoop(self.stopping, clock=self.clock, using=self.using,
                                            recheck=self.poll_interval, on_fired=self.notify))
        for thread in self.background:
            thread.start()
        self.threads = [self._spawn_executor() for _ in range(self.concurrency)]
        try:
            while not self.stopping.is_set():
                if not self.step():
                    break
        finally:
            self._shut_down()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        logger.info("worker stopped worker_id=%s jobs=%d", self.worker_id, self.completed_total)
        return 0

    def register(self) -> None:
        leases.register_worker(self.worker_id, hostname=socket.gethostname(), pid=os.getpid(), queues=self.queues,
                               concurrency=self.concurrency, now=self.clock(), lease=self.lease, using=self.using)

    def step(self) -> bool:
        """One pass of the main loop: maintenance, claim, dispatch, wait. False when the worker is done."""
        mono = time.monotonic()
        self._check_deadlines(mono)
        self._maintenance(mono)
        claimed, asked = self._claim_and_dispatch()
        if self._done(claimed, asked):
            return False
        # a full batch means more may be due: come back as soon as a thread frees up
        if self.claim_delay:
            self._wait(self.claim_delay)
        else:
            self._wait(self.poll_interval if self.maybe_due else self._idle_timeout())
        return True

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def notify(self) -> None:
        """Something may have become due (NOTIFY, reconnect): claim on the next pass."""
        self.maybe_due = True
        self.wake.set()

    def _done(self, claimed: int, asked: int) -> bool:
        if self.max_jobs is not None and self.claimed_total >= self.max_jobs:
            return self.inflight == 0
        return self.burst and asked > 0 and claimed == 0 and self.inflight == 0

    # --- claiming ---

    def _claim_size(self) -> int:
        """Claim in batches: only when due work is likely and the waiting jobs ran down to half."""
        if not self.maybe_due or self.jobs.qsize() > self.prefetch // 2:
            return 0
        free = self.capacity - self.inflight
        if self.max_jobs is not None:
            free = min(free, self.max_jobs - self.claimed_total)
        return max(free, 0)

    def _claim_and_dispatch(self) -> tuple[int, int]:
        asked = self._claim_size()
        if asked == 0:
            return 0, 0
        _drop_broken_connections()
        token = uuid.uuid4().hex
        try:
            token, jobs = leases.claim(self.worker_id, asked, self.clock(), self.lease, self.queues, self.using,
                                       token=token)
        except (OperationalError, InterfaceError) as exc:
            self.failed_claims.append(token)  # the commit may have gone through before the connection failed
            self.claim_delay = min(max(self.claim_delay * 2, 0.05), self.poll_interval)
            logger.warning("claim failed (database unavailable?), retrying in %.2fs error=%r", self.claim_delay, exc)
            connections[self.using].close()
            return 0, asked
        self.claim_delay = 0.0
        self.maybe_due = len(jobs) == asked
        with self._count_lock:
            self.inflight += len(jobs)
            self.claimed_total += len(jobs)
        for job in jobs:
            self.jobs.put((token, job))
        return len(jobs), asked

    def job_done(self) -> None:
        with self._count_lock:
            self.inflight -= 1
            self.completed_total += 1
        if self.jobs.qsize() == 0:
            self.maybe_due = True  # the job may have scheduled more; look once the queue runs dry
        self.wake.set()

    # --- waiting ---

    def _idle_timeout(self) -> float:
        timeout = self.poll_interval
        try:
            next_due = leases.next_due_time(self.queues, self.clock(), self.using)  # limited jobs waiting excepted
        except (OperationalError, InterfaceError):
            connections[self.using].close()
            return timeout
        if next_due is not None:
            timeout = min(timeout, max((next_due - self.clock()).total_seconds(), 0.0))
        deadlines = [t.deadline for t in self.threads if t.deadline is not None]
        if deadlines:
            timeout = min(timeout, max(min(deadlines) - time.monotonic(), 0.0))
        return timeout

    def _wait(self, timeout: float) -> None:
        if timeout <= 0 or not self.wake.wait(timeout):
            self.maybe_due = True
        self.wake.clear()

    # --- timeouts, recovery, pruning ---

    def _check_deadlines(self, mono: float) -> None:
        for i, thread in enumerate(self.threads):
            job = thread.time_out(mono)
            if job is None:
                continue
            fn = registry.for_job(job.name)
            error = JobTimeout(f"action {job.name} ran longer than its timeout and was abandoned")
            logger.error("action timed out job=%s name=%s", job.pk, job.name)
            self.executor.record_action_failure(fn.retry, job, job.token, error)
            self.abandoned.append(thread)
            self.threads[i] = self._spawn_executor()
            self.job_done()

    def _maintenance(self, mono: float) -> None:
        try:
            while self.failed_claims:
                leases.release_claim(self.failed_claims[0], self.using)
                self.failed_claims.pop(0)
            while self.orphans:
                job_id, token, error = self.orphans[0]
                leases.release(job_id, token, f"worker error: {error}", self.clock(), self.using)
                self.orphans.pop(0)
            if mono >= self._next_recovery:
                self._next_recovery = mono + min(self.lease.total_seconds() / 4, 5.0)
                leases.recover_expired(self.clock(), self.using)
            if mono >= self._next_prune:
                self._next_prune = mono + PRUNE_EVERY
                leases.prune(self.clock(), app_settings.RETENTION, self.using)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("maintenance failed (database unavailable?) error=%r", exc)
            connections[self.using].close()

    def _spawn_executor(self) -> ExecutorThread:
        thread = ExecutorThread(self, next(self._thread_numbers))
        thread.start()
        return thread

    # --- shutdown ---

    def _shut_down(self) -> None:
        self.stopping.set()
        self._hand_back_unstarted()
        for token in self.failed_claims:
            persist(lambda t=token: leases.release_claim(t, self.using), self.using, patience=5.0)
        for _ in self.threads:
            self.jobs.put(None)
        deadline = time.monotonic() + self.grace
        for thread in self.threads + self.abandoned:
            thread.join(max(deadline - time.monotonic(), 0))
        if any(t.is_alive() and t.job is not None for t in self.threads):
            logger.warning("grace period over with jobs still running; their leases will expire")
        if self.recorder.is_alive():
            self.recorder.stop()
            self.recorder.join(max(deadline - time.monotonic(), 5.0))
        self.finished.set()
        for thread in self.background:
            thread.join(5)
        try:
            leases.sign_off(self.worker_id, self.clock(), self.using)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("could not sign off; this worker's row expires by itself error=%r", exc)
        connections.close_all()

    def _hand_back_unstarted(self) -> None:
        unstarted: dict[str, list[int]] = {}
        while True:
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                token, job = item
                unstarted.setdefault(token, []).append(job.pk)
                with self._count_lock:
                    self.inflight -= 1
        for token, ids in unstarted.items():
            persist(lambda t=token, i=ids: leases.hand_back(t, i, self.using), self.using, patience=5.0)
        if unstarted:
            logger.info("handed back unstarted jobs count=%d", sum(map(len, unstarted.values())))

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handle(signum: int, frame: object) -> None:
            if self.stopping.is_set():
                logger.warning("second signal: exiting at once")
                os._exit(1)
            logger.info("signal %s: finishing running jobs, then exiting", signal.Signals(signum).name)
            self.stop()

        return {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}


def _keep_connections_open() -> None:
    """A worker keeps its connections whatever CONN_MAX_AGE says (reconnecting per job halves throughput)."""
    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = None


def _drop_broken_connections() -> None:
    """Close this thread's connections that saw an error and no longer work; the next query reconnects."""
    for conn in connections.all(initialized_only=True):
        if conn.errors_occurred and conn.connection is not None and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
