"""An in-memory store of the worker's shape (django_scheduled_actions.worker.store.Store), for unit tests
of the worker's logic without a database: jobs are unsaved ``ScheduledFunction`` instances in a dict, the
clock is the test's, every write is logged, and the next writes can be made to fail as a lost database
would. Mutations are not behind the store (their bodies run in database transactions): actions only."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

from django.db import OperationalError

from django_scheduled_actions.models import ScheduledFunction, State


class MemoryStore:
    using = "default"

    def __init__(self, clock: Callable[[], datetime]):
        self.clock = clock
        self.jobs: dict[int, ScheduledFunction] = {}
        self.writes: list[tuple[str, Any]] = []  # (method, what it was given), in call order
        self.failing: dict[str, int] = {}  # method -> how many of its next calls raise OperationalError
        self.workers: dict[str, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    # --- the test's side ---

    def add(
        self,
        name: str,
        *,
        kind: str = "action",
        due_in: float = 0.0,
        priority: int = 0,
        queue: str = "default",
        max_attempts: int = 1,
        args: dict[str, Any] | None = None,
    ) -> ScheduledFunction:
        now = self.clock()
        job = ScheduledFunction(
            id=next(self._ids),
            name=name,
            kind=kind,
            args=args or {},
            queue=queue,
            priority=priority,
            scheduled_time=now + timedelta(seconds=due_in),
            created_at=now,
            max_attempts=max_attempts,
        )
        self.jobs[job.pk] = job
        return job

    def state(self, job_id: int) -> str:
        return self.jobs[job_id].state

    def fail_next(self, method: str, times: int = 1) -> None:
        self.failing[method] = self.failing.get(method, 0) + times

    def _write(self, method: str, what: Any) -> None:
        if self.failing.get(method):
            self.failing[method] -= 1
            raise OperationalError(2013, "Lost connection to server during query")
        self.writes.append((method, what))

    def _held(self, job_id: int, token: str) -> ScheduledFunction | None:
        job = self.jobs.get(job_id)
        return job if job is not None and job.token == token and job.state == State.IN_PROGRESS else None

    # --- the Store interface ---

    def now(self) -> datetime:
        return self.clock()

    def claim(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        queues: list[str] | None,
        token: str,
        start: int,
        skip: frozenset[str],
    ) -> list[ScheduledFunction]:
        self._write("claim", limit)
        now = self.clock()
        due = sorted(
            (
                j
                for j in self.jobs.values()
                if j.state == State.PENDING
                and j.scheduled_time <= now
                and j.name not in skip
                and (not queues or j.queue in queues)
            ),
            key=lambda j: (-j.priority, j.scheduled_time, j.pk),
        )[:limit]
        for job in due:
            job.state, job.token, job.worker_id, job.lease_expires_at = State.IN_PROGRESS, token, worker_id, now + lease
        return [copy.copy(job) for job in due]  # the worker's own instances, as a query returns

    def next_due_time(self, queues: list[str] | None, now: datetime, skip: frozenset[str]) -> datetime | None:
        return min(
            (
                j.scheduled_time
                for j in self.jobs.values()
                if j.state == State.PENDING and j.name not in skip and (not queues or j.queue in queues)
            ),
            default=None,
        )

    def release_claim(self, token: str) -> int:
        self._write("release_claim", token)
        return self.hand_back(token, [j for j in self.jobs.values() if j.token == token])

    def release(self, job_id: int, token: str, error: str, now: datetime) -> int:
        self._write("release", (job_id, error))
        job = self._held(job_id, token)
        if job is None:
            return 0
        job.state, job.error, job.completed_time = State.FAILED, error, now
        return 1

    def hand_back(self, token: str, jobs: Iterable[ScheduledFunction]) -> int:
        changed = 0
        for given in jobs:
            job = self._held(given.pk, token)
            if job is not None:
                job.state, job.token, job.worker_id, job.started_at = State.PENDING, "", "", None
                changed += 1
        return changed

    def register(
        self, worker_id: str, queues: list[str] | None, concurrency: int, now: datetime, lease: timedelta
    ) -> None:
        self.workers[worker_id] = {"queues": queues, "concurrency": concurrency}

    def publish(self, worker_id: str, functions: dict[str, str], unknown: list[str]) -> None:
        self.workers.setdefault(worker_id, {}).update(functions=functions, unknown=unknown)

    def heartbeat(self, worker_id: str, lease: timedelta) -> int:
        return int(worker_id in self.workers)

    def sign_off(self, worker_id: str, now: datetime) -> int:
        return int(self.workers.pop(worker_id, None) is not None)

    def recover_expired(self) -> int:
        return 0

    def recover_previous_incarnation(self, worker_id: str, now: datetime) -> int:
        return 0

    def prune(self) -> int:
        return 0

    def settle_actions(
        self, outcomes: list[tuple[int, str, Any]], starts: list[tuple[int, str]], now: datetime
    ) -> tuple[set[int], set[int]]:
        self._write("settle_actions", ([o[0] for o in outcomes], [s[0] for s in starts]))
        done, started = set(), set()
        for job_id, token, result in outcomes:
            if (job := self._held(job_id, token)) is not None:
                job.state, job.result, job.completed_time = State.SUCCESS, result, now
                done.add(job_id)
        for job_id, token in starts:
            if (job := self._held(job_id, token)) is not None:
                job.started_at, job.attempts = now, job.attempts + 1
                started.add(job_id)
        return done, started

    def mark_failed(self, job_id: int, token: str, error: str, now: datetime, **fields: Any) -> int:
        self._write("mark_failed", job_id)
        if (job := self._held(job_id, token)) is None:
            return 0
        job.state, job.error, job.completed_time = State.FAILED, error, now
        return 1

    def retry_later(self, job_id: int, token: str, error: str, run_at: datetime) -> int:
        self._write("retry_later", job_id)
        if (job := self._held(job_id, token)) is None:
            return 0
        job.state, job.error, job.scheduled_time, job.token, job.started_at = State.PENDING, error, run_at, "", None
        return 1

    def keep_late_result(self, job_id: int, result: Any) -> int:
        return 0

    def batch_item_finished(self, job: ScheduledFunction) -> None:
        assert job.batch_id is None, "the memory store has no batches"

    def undo_start(self, job_id: int, token: str) -> int:
        self._write("undo_start", job_id)
        if (job := self._held(job_id, token)) is None:
            return 0
        job.state, job.token, job.started_at, job.attempts = State.PENDING, "", None, job.attempts - 1
        return 1

    def wake_workers(self) -> None:
        self.writes.append(("wake_workers", None))

    def reconnect(self) -> None:
        self.writes.append(("reconnect", None))
