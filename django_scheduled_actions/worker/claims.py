"""The worker's claims: how many jobs to claim, claiming them into the queue the executor threads take
from, and the counts of jobs in flight.

Claims come in batches, only when due work is likely and the waiting jobs ran down to half. The jobs
left waiting for a thread are about ``PREFETCH_SECONDS`` of work at the rate jobs finished lately, between
one per thread and ``PREFETCH_MAX``."""

from __future__ import annotations

import functools
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta

from django.db import InterfaceError, OperationalError

from ..models import ScheduledFunction
from .outcomes import Claimed, persist
from .store import Store

logger = logging.getLogger("django_scheduled_actions")
PREFETCH_SECONDS = 0.05
PREFETCH_MAX = 128
PEERS_WOKEN_EVERY = 0.25  # seconds: at most so often, a claim that came back full wakes the other workers


class Claims:
    def __init__(
        self,
        store: Store,
        worker_id: str,
        *,
        concurrency: int,
        holdable: int,
        lease: timedelta,
        queues: list[str] | None,
        max_jobs: int | None,
        poll_interval: float,
        skip: Callable[[], frozenset[str]],
        wake: Callable[[], None],
        stopping: threading.Event,
        async_capacity: Callable[[], tuple[int, int]] = lambda: (0, 0),
    ):
        self.store, self.worker_id, self.concurrency = store, worker_id, concurrency
        self.lease, self.queues = lease, queues
        # what the threads may hold besides the waiting jobs: a transaction of mutations or a group of actions each
        self.holdable, self.max_jobs, self.poll_interval = holdable, max_jobs, poll_interval
        self.skip, self.wake, self.stopping = skip, wake, stopping
        self.async_capacity = async_capacity  # (async actions in flight, free slots): the event loop's
        self.jobs: queue.Queue[Claimed | None] = queue.Queue()
        self.prefetch = concurrency  # claimed jobs waiting for a thread, at most; grows with the rate
        self._rate_mark = (time.monotonic(), 0)  # (when, completed then): the rate's window
        self.maybe_due = True  # False after a claim came back short, until a NOTIFY, a timeout or a dry queue
        self.delay = 0.0  # after a failed claim: retry soon, backing off while the database is away
        self.failed: list[str] = []  # tokens of claims that raised: hand back whatever they took
        self.inflight = self.claimed_total = self.completed_total = 0
        self._peers_woken = 0.0  # time.monotonic() when a full claim last woke the other workers
        self._count_lock = threading.Lock()

    def size(self, mono: float) -> int:
        """How many jobs to claim now: none unless due work is likely and the waiting jobs ran down to half."""
        self._adapt_prefetch(mono)
        if not self.maybe_due or self.jobs.qsize() > self.prefetch // 2:
            return 0
        on_loop, loop_free = self.async_capacity()  # async actions neither wait in the queue nor hold a thread
        free = self.prefetch + min(self.holdable, self.prefetch) - (self.inflight - on_loop) + loop_free
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

    def claim(self, mono: float) -> tuple[int, int]:
        """Claim what ``size`` says into the queue; returns (jobs claimed, jobs asked for)."""
        asked = self.size(mono)
        if asked == 0:
            return 0, 0
        token = uuid.uuid4().hex
        # threads (and loop slots) waiting for a job: the claim may mark that many actions started, each
        # runs at once
        on_loop, loop_free = self.async_capacity()
        idle = self.concurrency - (self.inflight - on_loop) + loop_free if self.jobs.qsize() == 0 else 0
        try:
            jobs = self.store.claim(self.worker_id, asked, self.lease, self.queues, token, max(idle, 0), self.skip())
        except (OperationalError, InterfaceError) as exc:
            self.failed.append(token)  # the commit may have gone through before the connection failed
            self.delay = min(max(self.delay * 2, 0.05), self.poll_interval)
            logger.warning("claim failed (database unavailable?), retrying in %.2fs error=%r", self.delay, exc)
            self.store.reconnect()
            return 0, asked
        self.delay = 0.0
        self.maybe_due = len(jobs) == asked
        if self.maybe_due:
            self._wake_peers(mono)
        jobs = self._without_left(token, jobs)
        with self._count_lock:
            self.inflight += len(jobs)
            self.claimed_total += len(jobs)
        for job in jobs:
            self.jobs.put((token, job))
        return len(jobs), asked

    def _wake_peers(self, mono: float) -> None:
        """More may be due than this worker took: wake the others, which jobs scheduled by running jobs
        do not wake (``scheduling.jobs.waking``)."""
        if mono - self._peers_woken < PEERS_WOKEN_EVERY:
            return
        self._peers_woken = mono
        try:
            self.store.wake_workers()
        except (OperationalError, InterfaceError):
            self.store.reconnect()  # they poll meanwhile

    def _without_left(self, token: str, jobs: list[ScheduledFunction]) -> list[ScheduledFunction]:
        """Hand back at once the jobs of names left to other workers while this claim was in flight
        (deploys.py): the claim may have taken a job again just after it was handed back."""
        skipped = self.skip()
        left = [job for job in jobs if job.name in skipped]
        if not left:
            return jobs
        try:
            persist(functools.partial(self.store.hand_back, token, left), self.store, patience=5.0)
        except (OperationalError, InterfaceError):
            return jobs  # the executor leaves them as it found them
        return [job for job in jobs if job.name not in skipped]

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
        self.wake()

    def hand_back(self, items: list[Claimed]) -> None:
        """Return claimed jobs that never started to ``pending`` (shutting down)."""
        claims: dict[str, list[ScheduledFunction]] = {}
        for token, job in items:
            claims.setdefault(token, []).append(job)
        for token, jobs in claims.items():
            persist(functools.partial(self.store.hand_back, token, jobs), self.store, patience=5.0)
        with self._count_lock:
            self.inflight -= len(items)
        if items:
            logger.info("handed back unstarted jobs count=%d", len(items))

    def hand_back_waiting(self) -> None:
        """Hand back every job still waiting in the queue, and what failed claims may have taken."""
        waiting = []
        while True:
            try:
                item = self.jobs.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                waiting.append(item)
        self.hand_back(waiting)
        for token in self.failed:
            persist(functools.partial(self.store.release_claim, token), self.store, patience=5.0)
