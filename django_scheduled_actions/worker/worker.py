"""The worker: claims due jobs in batches and runs them on a pool of threads.

The main thread claims, dispatches, watches action deadlines, recovers lost workers' jobs and prunes
old ones; executor threads run bodies, each taking the jobs waiting behind the one it runs when they can
share its write (executor.py); a ledger thread writes action successes and starts with group commit; a
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

from ..conf import app_settings
from ..core.registry import registry
from ..cron.ticker import CronLoop
from ..exceptions import JobTimeout
from ..models import ScheduledFunction
from ..store import dbclock, leases, sessions
from . import deploys, maintenance
from .executor import MUTATIONS_PER_COMMIT, Claimed, Executor, Ledger, Unrecorded, persist
from .listener import Listener, supports_listen

logger = logging.getLogger("django_scheduled_actions")
PRUNE_EVERY = 600.0
# Claimed jobs left waiting for a thread: about PREFETCH_SECONDS of work at the rate jobs finished lately,
# between one per thread and PREFETCH_MAX (see Worker._adapt_prefetch).
PREFETCH_SECONDS = 0.05
PREFETCH_MAX = 128


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

    def watch(self, deadline: float | None, job: ScheduledFunction | None) -> None:
        with self.lock:
            self.deadline, self.job = deadline, job

    def is_abandoned(self) -> bool:
        with self.lock:
            return self.abandoned

    def run(self) -> None:
        worker = self.worker
        item: Claimed | None = None
        sessions.bound(worker.using)
        try:
            while not self.is_abandoned():
                if item is not None and worker.stopping.is_set():  # pulled before the stop, never started
                    worker.hand_back([item])
                    item = None
                item = item or worker.jobs.get()
                if item is None:
                    break
                _drop_broken_connections()
                item = self._run(item)
        finally:
            connections.close_all()

    def _run(self, item: Claimed) -> Claimed | None:
        """Run a claimed job (and the ones the executor pulls after it); returns a pulled job not yet run."""
        worker = self.worker
        token, job = item
        try:
            return worker.executor.run(job, token, self.watch, self.is_abandoned, worker.pull)
        except Unrecorded as exc:  # the database stayed away: release these jobs once it is back
            lost, error = exc.jobs, str(exc)
        except Exception as exc:  # a bug in the executor's own bookkeeping: do not strand the job
            logger.exception("executor failed on job=%s; releasing it", job.pk)
            lost, error = [item], repr(exc)
        finally:
            self.watch(None, None)
        for token, job in lost:
            logger.error("could not record the outcome of job=%s; releasing it", job.pk)
            worker.orphans.append((job.pk, token, error))
            worker.job_done(job)
        return None

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
        sessions.bound(worker.using)
        while not worker.finished.wait(interval):
            try:
                if not leases.heartbeat(worker.worker_id, worker.lease, worker.using):
                    worker.register()  # the row was pruned or deleted by hand: register again
            except (OperationalError, InterfaceError) as exc:
                logger.warning("heartbeat failed, retrying error=%r", exc)
                connections[worker.using].close()
        connections.close_all()


class Wakeup:
    """What wakes the main loop: set by other threads (a job done, a NOTIFY) and by signal handlers.

    Not a ``threading.Event``: its ``set()`` takes the lock that the main thread holds inside ``wait()``
    and ``clear()``, so a handler running at that moment (handlers run in the main thread) deadlocked
    the worker. ``queue.SimpleQueue.put`` is reentrant (C, no Python-level lock)."""

    def __init__(self) -> None:
        self._signals: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._signals.put(None)

    def wait(self, timeout: float) -> bool:
        """True if set before ``timeout`` seconds passed (or since the last ``clear``)."""
        try:
            self._signals.get(timeout=timeout)
        except queue.Empty:
            return False
        return True

    def clear(self) -> None:
        while True:
            try:
                self._signals.get_nowait()
            except queue.Empty:
                return


class Worker:
    def __init__(self, *, concurrency: int = 4, queues: Sequence[str] | None = None, burst: bool = False,
                 max_jobs: int | None = None, poll_interval: float | None = None, worker_id: str | None = None,
                 using: str = DEFAULT_DB_ALIAS, grace: float = 30.0, clock: Callable[[], datetime] = timezone.now,
                 crons: bool = True, action_group: int = 8):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if action_group < 1:
            raise ValueError("action_group must be at least 1")
        self.concurrency = concurrency
        self.prefetch = concurrency  # claimed jobs waiting for a thread, at most; grows with the rate
        # and what the threads may hold besides: a transaction of mutations, or a group of started actions
        # each (only quick jobs form them, and quick jobs are what makes prefetch large)
        self.holdable = concurrency * max(MUTATIONS_PER_COMMIT, action_group)
        self._rate_mark = (time.monotonic(), 0)  # (when, completed_total then): the rate's window
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
        self.repertoire = deploys.Repertoire(self.worker_id, using, clock)  # functions it knows, names it skips
        self.executor = Executor(self.worker_id, using, clock, done=self.job_done, action_group=action_group,
                                 leave=self.repertoire.leave)
        self.ledger = Ledger(self.executor)
        self.executor.ledger = self.ledger
        self.jobs: queue.Queue[Claimed | None] = queue.Queue()
        self.wake = Wakeup()
        self.signalled: int | None = None  # the SIGTERM/SIGINT that asked the worker to stop
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
        sessions.bound(self.using)
        logger.info("worker starting worker_id=%s concurrency=%d queues=%s database=%s functions=%d",
                    self.worker_id, self.concurrency, ",".join(self.queues or ["all"]), _database(self.using),
                    len(registry.all()))
        self.register()
        maintenance.recover_previous_incarnation(self.worker_id, self.clock(), self.using)
        self.background = [Heartbeat(self)]
        self.ledger.start()
        if supports_listen(self.using) and not self.burst:
            self.background.append(Listener(self.notify, self.stopping, self.using))
        if self.crons:
            self.background.append(CronLoop(self.stopping, clock=self.clock, using=self.using,
                                            recheck=self.poll_interval, on_fired=self.notify))
        for thread in self.background:
            thread.start()
        self.threads = [self._spawn_executor() for _ in range(self.concurrency)]
        try:
            while not self.stopping.is_set() and self.signalled is None:
                if not self.step():
                    break
            if self.signalled is not None:
                logger.info("signal %s: finishing running jobs, then exiting", signal.Signals(self.signalled).name)
        finally:
            self._shut_down()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        logger.info("worker stopped worker_id=%s jobs=%d", self.worker_id, self.completed_total)
        return 0

    def register(self) -> None:
        leases.register_worker(self.worker_id, hostname=socket.gethostname(), pid=os.getpid(), queues=self.queues,
                               concurrency=self.concurrency, now=self.clock(), lease=self.lease, using=self.using)
        self.repertoire.publish()

    def step(self) -> bool:
        """One pass of the main loop: maintenance, claim, dispatch, wait. False when the worker is done."""
        mono = time.monotonic()
        self._check_deadlines(mono)
        self._maintenance(mono)
        running = self.inflight  # jobs that may still schedule more (a retry) after this claim looked
        claimed, asked = self._claim_and_dispatch()
        if self._done(claimed, asked, running):
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

    def _done(self, claimed: int, asked: int, running: int) -> bool:
        """A burst is done when a claim found nothing while no job was running: one that finished during
        the claim may have scheduled a retry the claim did not see."""
        if self.max_jobs is not None and self.claimed_total >= self.max_jobs:
            return self.inflight == 0
        return self.burst and asked > 0 and claimed == 0 and running == 0 and self.inflight == 0

    # --- claiming ---

    def _claim_size(self) -> int:
        """Claim in batches: only when due work is likely and the waiting jobs ran down to half."""
        self._adapt_prefetch(time.monotonic())
        if not self.maybe_due or self.jobs.qsize() > self.prefetch // 2:
            return 0
        free = self.prefetch + min(self.holdable, self.prefetch) - self.inflight
        if self.max_jobs is not None:
            free = min(free, self.max_jobs - self.claimed_total)
        return max(free, 0)

    def _adapt_prefetch(self, mono: float) -> None:
        """Size the waiting jobs to the rate at which jobs finished over the last tenth of a second or more:
        quick jobs get claims big enough that the threads do not wait for the next one (no-op actions on
        PostgreSQL: 128 waiting drained 15-20% faster than 32), slow ones stay unclaimed for other workers
        instead of queueing here (a worker of 4 threads claimed up to 96 jobs whatever their length: 24 s of
        work in one-second jobs; now 8)."""
        since, count = self._rate_mark
        if mono - since < 0.1:
            return
        self._rate_mark = (mono, self.completed_total)
        rate = (self.completed_total - count) / (mono - since)  # 0 when idle or in long jobs: one per thread
        self.prefetch = min(max(int(rate * PREFETCH_SECONDS), self.concurrency), PREFETCH_MAX)

    def _claim_and_dispatch(self) -> tuple[int, int]:
        asked = self._claim_size()
        if asked == 0:
            return 0, 0
        _drop_broken_connections()
        token = uuid.uuid4().hex
        # threads waiting for a job: the claim may mark that many actions started, each runs at once
        idle = self.concurrency - self.inflight if self.jobs.qsize() == 0 else 0
        try:
            token, jobs = leases.claim(self.worker_id, asked, None, self.lease, self.queues, self.using,
                                       token=token, start=max(idle, 0), skip=self.repertoire.skip())
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

    def pull(self) -> Claimed | None:
        """A claimed job waiting in the queue, without blocking (None if there is none or the worker stops)."""
        if self.stopping.is_set():
            return None
        try:
            item = self.jobs.get_nowait()
        except queue.Empty:
            return None
        if item is None:  # a thread's stop sentinel: leave it for the thread loop
            self.jobs.put(None)
        return item

    def job_done(self, job: ScheduledFunction | None = None) -> None:
        with self._count_lock:
            self.inflight -= 1
            self.completed_total += 1
        if self.jobs.qsize() == 0:
            self.maybe_due = True  # the job may have scheduled more; look once the queue runs dry
        self.wake.set()

    # --- waiting ---

    def _idle_timeout(self) -> float:
        timeout = self.poll_interval
        try:  # due times are judged on the database's clock, as the claim judges them
            now = dbclock.now(self.using)
            next_due = leases.next_due_time(self.queues, now, self.using,  # limited jobs waiting excepted
                                            self.repertoire.skip())
        except (OperationalError, InterfaceError):
            connections[self.using].close()
            return timeout
        if next_due is not None:
            timeout = min(timeout, max((next_due - now).total_seconds(), 0.0))
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
                maintenance.recover_expired(None, self.using)  # on the database's clock
            if mono >= self._next_prune:
                self._next_prune = mono + PRUNE_EVERY
                maintenance.prune(None, app_settings.RETENTION, self.using)
            self.repertoire.upkeep(mono)
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
        if self.ledger.is_alive():
            self.ledger.stop()
            self.ledger.join(max(deadline - time.monotonic(), 5.0))
        self.finished.set()
        for thread in self.background:
            thread.join(5)
        try:
            leases.sign_off(self.worker_id, self.clock(), self.using)
        except (OperationalError, InterfaceError) as exc:
            logger.warning("could not sign off; this worker's row expires by itself error=%r", exc)
        connections.close_all()

    def _hand_back_unstarted(self) -> None:
        unstarted = []
        while True:
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                unstarted.append(item)
        self.hand_back(unstarted)

    def hand_back(self, items: list[Claimed]) -> None:
        """Return claimed jobs that never started to ``pending`` (shutting down)."""
        claims: dict[str, list[ScheduledFunction]] = {}
        for token, job in items:
            claims.setdefault(token, []).append(job)
        for token, jobs in claims.items():
            persist(lambda t=token, j=jobs: leases.hand_back(t, j, self.using), self.using, patience=5.0)
        with self._count_lock:
            self.inflight -= len(items)
        if items:
            logger.info("handed back unstarted jobs count=%d", len(items))

    def _install_signal_handlers(self) -> dict[int, object]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handle(signum: int, frame: object) -> None:
            # runs in the main thread between two of its bytecodes, maybe while that holds a lock: no
            # Event.set() here (logging's locks are reentrant); the main loop stops when it sees the flag
            if self.signalled is not None:
                logger.warning("second signal: exiting at once")
                os._exit(1)
            self.signalled = signum
            self.wake.set()

        return {signum: signal.signal(signum, handle) for signum in (signal.SIGTERM, signal.SIGINT)}


def _database(using: str) -> str:
    """``alias (vendor name@host:port)`` for the start line: which database this worker serves, no credentials."""
    connection = connections[using]
    where = connection.settings_dict.get("HOST") or ""
    if where and connection.settings_dict.get("PORT"):
        where = f"{where}:{connection.settings_dict['PORT']}"
    return f"{using} ({connection.vendor} {connection.settings_dict.get('NAME')}{'@' + where if where else ''})"


def _keep_connections_open() -> None:
    """A worker keeps its connections whatever CONN_MAX_AGE says (reconnecting per job halves throughput)."""
    for alias in connections:
        connections.settings[alias]["CONN_MAX_AGE"] = None


def _drop_broken_connections() -> None:
    """Close this thread's connections that saw an error and no longer work; the next query reconnects."""
    for conn in connections.all(initialized_only=True):
        if conn.errors_occurred and conn.connection is not None and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
