"""The worker: wires its parts and runs the main loop.

The main thread claims (claims.py), watches action deadlines, and does the upkeep (maintenance.py);
executor threads (pool.py) run bodies, each taking the jobs waiting behind the one it runs when they can
share its write (executor.py); a ledger thread writes action successes and starts with group commit
(ledger.py); a heartbeat thread renews the worker's row, which is the lease on every job it holds; a cron
thread enqueues due cron runs (cron/ticker.py); on PostgreSQL a listener thread wakes the loop on NOTIFY.
Every read and write goes through the worker's store (store.py). Signals: the first SIGTERM/SIGINT stops
claiming, hands unstarted claims back and lets running jobs finish within ``grace`` seconds; a second one
exits at once.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, InterfaceError, OperationalError, connections
from django.utils import timezone

from .. import telemetry
from ..calls.through import direct
from ..conf import app_settings
from ..core.registry import registry
from ..cron.ticker import CronLoop
from ..exceptions import JobTimeout
from ..models import ScheduledFunction
from ..scheduling import jobs
from ..store import dbclock, sessions
from . import deploys
from .aio import AsyncRunner
from .claims import Claims
from .connections import DEFAULT as DEFAULT_CONNECTIONS
from .connections import Connections, PooledStore
from .executor import Executor
from .heartbeat import Heartbeat
from .ledger import Ledger
from .listener import DataVersionWatcher, Listener, behind_pooler, listen_alias, supports_listen
from .maintenance import Upkeep
from .mutations import MUTATIONS_PER_COMMIT
from .outcomes import Outcomes
from .pool import Pool
from .store import DatabaseStore, Store
from .wakeup import Wakeup

logger = logging.getLogger("django_scheduled_actions")


def default_worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


class Worker:
    def __init__(
        self,
        *,
        concurrency: int = 4,
        queues: Sequence[str] | None = None,
        burst: bool = False,
        max_jobs: int | None = None,
        poll_interval: float | None = None,
        worker_id: str | None = None,
        using: str = DEFAULT_DB_ALIAS,
        grace: float = 30.0,
        clock: Callable[[], datetime] | None = None,
        crons: bool = True,
        action_group: int = 8,
        async_concurrency: int = 100,
        db_connections: int = DEFAULT_CONNECTIONS,
        store: Store | None = None,
    ):
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if action_group < 1:
            raise ValueError("action_group must be at least 1")
        if async_concurrency < 1:
            raise ValueError("async_concurrency must be at least 1")
        listening = supports_listen(using) and not burst
        own = 1 + listening  # the heartbeat's connection, and the listener's
        if db_connections < own + 1:
            raise ValueError(
                f"db_connections must be at least {own + 1} here: one for the heartbeat"
                f"{', one for LISTEN' if listening else ''} and at least one for the work"
            )
        # the times it writes are the database's (a machine's clock may be minutes off); a test may pass its own
        self.corrected = dbclock.Corrected(using) if clock is None and store is None else None
        clock = self.corrected or clock or timezone.now
        self.concurrency, self.burst, self.grace, self.using, self.clock = concurrency, burst, grace, using, clock
        self.queues = list(queues) if queues else None
        self.crons = crons and not burst  # a burst drains what is due; it does not tick crons
        self.poll_interval = float(poll_interval or app_settings.POLL_INTERVAL)
        self.worker_id = worker_id or default_worker_id()
        self.lease = timedelta(seconds=float(app_settings.LEASE_SECONDS))
        self.listening = listening
        self.connections = Connections(db_connections - own, using, executors=concurrency)
        self.own_store = DatabaseStore(using)  # the heartbeat's, on its own connection
        self.store = store or PooledStore(self.own_store, self.connections)
        # carrying: with telemetry on, work handed to the connections' threads keeps the caller's trace
        self.through = telemetry.carrying(self.connections.through) if store is None else direct
        self.wake = Wakeup()
        self.stopping, self.finished = threading.Event(), threading.Event()
        self.signalled: int | None = None  # the SIGTERM/SIGINT that asked the worker to stop
        self.repertoire = deploys.Repertoire(self.worker_id, self.store, clock)  # functions it knows, names it skips
        self.claims = Claims(
            self.store,
            self.worker_id,
            concurrency=concurrency,
            lease=self.lease,
            holdable=concurrency * max(MUTATIONS_PER_COMMIT, action_group),
            queues=self.queues,
            max_jobs=max_jobs,
            poll_interval=self.poll_interval,
            skip=self.repertoire.skip,
            wake=self.wake.set,
            stopping=self.stopping,
            async_capacity=lambda: self.aio.capacity(),
        )
        outcomes = Outcomes(self.worker_id, self.store, clock)
        self.ledger = Ledger(outcomes.settle, using)
        self.aio = AsyncRunner(async_concurrency, outcomes, self.ledger.submit, self.connections, self.claims.job_done)
        self.executor = Executor(
            self.worker_id,
            using,
            clock,
            done=self.claims.job_done,
            action_group=action_group,
            leave=self.repertoire.leave,
            outcomes=outcomes,
            settle=self.ledger.settle,
            through=self.through,
            aio=self.aio,
        )
        self.pool = Pool(concurrency, self.claims, self.executor, using, self.connections.lane)
        self.upkeep = Upkeep(
            self.store, self.lease, self.claims.failed, self.pool.orphans, self.repertoire, clock, self.corrected
        )
        self.background: list[threading.Thread] = []

    # --- life cycle ---

    def run(self) -> int:
        """Run until stopped (or, with ``burst``, until nothing is due). Returns the exit code."""
        previous_handlers = self._install_signal_handlers()
        _keep_connections_open()
        pooled = behind_pooler(self.using)  # no session kept between transactions: LISTEN elsewhere or poll
        sessions.bound(self.using, per_transaction=pooled)
        self.listening = self.listening and not (pooled and listen_alias(self.using) == self.using)
        logger.info(
            "worker starting worker_id=%s concurrency=%d queues=%s database=%s functions=%d",
            self.worker_id,
            self.concurrency,
            ",".join(self.queues or ["all"]),
            _database(self.using),
            len(registry.all()),
        )
        fallback = self.store if isinstance(self.store, PooledStore) else None
        heartbeat = Heartbeat(self.own_store, self.worker_id, self.lease, self.finished, self.register, fallback)
        heartbeat.start()  # its connection first: the lease is renewed whatever the rest waits for
        heartbeat.connected.wait(10)  # where the database allows fewer connections than the worker's, the
        # others wait for one; a heartbeat connecting after them found none, and its jobs looked lost
        if self.corrected:
            self.through(self.corrected.measure)
        self.register()
        self.store.recover_previous_incarnation(self.worker_id, self.clock())
        self.background = [heartbeat]
        self.ledger.start()
        self.aio.start()
        if self.listening:
            self.background.append(Listener(self.notify, self.stopping, self.using))
        elif connections[self.using].vendor == "sqlite" and not self.burst:
            self.background.append(DataVersionWatcher(self.notify, self.stopping, self.using))
        if self.crons:
            self.background.append(
                CronLoop(
                    self.stopping,
                    clock=self.clock,
                    using=self.using,
                    recheck=self.poll_interval,
                    on_fired=self.notify,
                    through=self.through,
                )
            )
        for thread in self.background[1:]:
            thread.start()
        self.pool.start()
        try:
            with jobs.waking(self.notify):  # by the jobs its jobs schedule
                self._loop()
            if self.signalled is not None:
                logger.info("signal %s: finishing running jobs, then exiting", signal.Signals(self.signalled).name)
        finally:
            self._shut_down()
            for signum, handler in previous_handlers.items():
                signal.signal(signum, handler)
        logger.info("worker stopped worker_id=%s jobs=%d", self.worker_id, self.claims.completed_total)
        return 0

    def _loop(self) -> None:
        while not self.stopping.is_set() and self.signalled is None:
            timeout = self.step()
            if timeout is None:
                return
            if timeout <= 0 or not self.wake.wait(timeout):
                self.claims.maybe_due = True
            self.wake.clear()

    def register(self) -> None:
        self.store.register(self.worker_id, self.queues, self.concurrency, self.clock(), self.lease)
        self.repertoire.publish()

    def step(self) -> float | None:
        """One pass of the main loop: deadlines, upkeep, a claim. Returns how long to wait for the next
        pass (woken earlier by a finished job or a NOTIFY), or None when the worker is done."""
        mono = time.monotonic()
        self.pool.time_out(mono, self._timed_out)
        if self.upkeep.due(mono):
            self.through(lambda: self.upkeep.run(mono))
        running = self.claims.inflight  # jobs that may still schedule more (a retry) after this claim looked
        claimed, asked = self.claims.claim(mono)
        if self._done(claimed, asked, running):
            return None
        # a full batch means more may be due: come back as soon as a thread frees up
        if self.claims.delay:
            return self.claims.delay
        return self.poll_interval if self.claims.maybe_due else self._idle_timeout()

    def stop(self) -> None:
        self.stopping.set()
        self.wake.set()

    def notify(self) -> None:
        """Something may have become due (NOTIFY, reconnect): claim on the next pass."""
        self.claims.maybe_due = True
        self.wake.set()

    def _done(self, claimed: int, asked: int, running: int) -> bool:
        """A burst is done when a claim found nothing while no job was running: one that finished during
        the claim may have scheduled a retry the claim did not see."""
        claims = self.claims
        if claims.max_jobs is not None and claims.claimed_total >= claims.max_jobs:
            return claims.inflight == 0
        return self.burst and asked > 0 and claimed == 0 and running == 0 and claims.inflight == 0

    def _idle_timeout(self) -> float:
        """Until the next job falls due (judged on the database's clock, as the claim judges it), the next
        action deadline, or the poll interval, whichever comes first."""
        timeout = self.poll_interval
        try:
            now = self.store.now()
            next_due = self.store.next_due_time(self.queues, now, self.repertoire.skip())
        except (OperationalError, InterfaceError):
            self.store.reconnect()
            return timeout
        if next_due is not None:
            timeout = min(timeout, max((next_due - now).total_seconds(), 0.0))
        deadline = self.pool.next_deadline()
        if deadline is not None:
            timeout = min(timeout, max(deadline - time.monotonic(), 0.0))
        return timeout

    def _timed_out(self, job: ScheduledFunction) -> None:
        logger.error("action timed out job=%s name=%s", job.pk, job.name)
        error = JobTimeout(f"action {job.name} ran longer than its timeout and was abandoned")
        self.executor.outcomes.action_failed(registry.for_job(job.name).retry, job, job.token, error)

    # --- shutdown ---

    def _shut_down(self) -> None:
        self.stopping.set()
        self.claims.hand_back_waiting()
        deadline = time.monotonic() + self.grace
        self.pool.stop(deadline)
        if self.aio.is_alive():
            self.aio.stop(deadline)
        if self.ledger.is_alive():
            self.ledger.stop()
            self.ledger.join(max(deadline - time.monotonic(), 5.0))
        self.finished.set()
        for thread in self.background:
            thread.join(5)
        try:
            self.store.sign_off(self.worker_id, self.clock())
        except (OperationalError, InterfaceError) as exc:
            logger.warning("could not sign off; this worker's row expires by itself error=%r", exc)
        self.connections.close()
        connections.close_all()

    def _install_signal_handlers(self) -> dict[int, Any]:
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
    """A worker keeps its connections whatever CONN_MAX_AGE says (reconnecting per job halves throughput).
    Behind Django's own pool (PostgreSQL ``OPTIONS: {"pool": ...}``), which refuses persistent connections,
    each thread keeps the one it took from the pool instead: the pool needs room for ``--db-connections``."""
    for alias in connections:
        if not connections.settings[alias].get("OPTIONS", {}).get("pool"):
            connections.settings[alias]["CONN_MAX_AGE"] = None
