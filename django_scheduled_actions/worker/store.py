"""What the worker reads and writes, as one interface: ``DatabaseStore`` is the real one, on the job tables
(store/, maintenance.py); the unit tests drive the worker against an in-memory one of the same shape
(tests/support/memory_store.py). Mutations are not behind it: their bodies run in database transactions
(mutations.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, Protocol

from django.db import connections

from ..conf import app_settings
from ..models import ScheduledFunction, WorkerProcess
from ..scheduling import batches
from ..store import dbclock, leases
from ..store.engines import engine
from ..workflows import steps as workflow_steps
from . import maintenance

Jobs = ScheduledFunction.objects


class Store(Protocol):
    using: str

    def now(self) -> datetime: ...
    def claim(
        self,
        worker_id: str,
        limit: int,
        lease: timedelta,
        queues: list[str] | None,
        token: str,
        start: int,
        skip: frozenset[str],
    ) -> list[ScheduledFunction]: ...
    def next_due_time(self, queues: list[str] | None, now: datetime, skip: frozenset[str]) -> datetime | None: ...
    def release_claim(self, token: str) -> int: ...
    def release(self, job_id: int, token: str, error: str, now: datetime) -> int: ...
    def hand_back(self, token: str, jobs: Iterable[ScheduledFunction]) -> int: ...
    def register(
        self, worker_id: str, queues: list[str] | None, concurrency: int, now: datetime, lease: timedelta
    ) -> None: ...
    def publish(self, worker_id: str, functions: dict[str, str], unknown: list[str]) -> None: ...
    def heartbeat(self, worker_id: str, lease: timedelta) -> int: ...
    def sign_off(self, worker_id: str, now: datetime) -> int: ...
    def recover_expired(self) -> int: ...
    def recover_previous_incarnation(self, worker_id: str, now: datetime) -> int: ...
    def prune(self) -> int: ...
    def settle_actions(
        self, outcomes: list[tuple[int, str, Any]], starts: list[tuple[int, str]], now: datetime
    ) -> tuple[set[int], set[int]]: ...
    def mark_failed(self, job_id: int, token: str, error: str, now: datetime, **fields: Any) -> int: ...
    def retry_later(self, job_id: int, token: str, error: str, run_at: datetime) -> int: ...
    def keep_late_result(self, job_id: int, result: Any) -> int: ...
    def batch_item_finished(self, job: ScheduledFunction) -> None: ...
    def undo_start(self, job_id: int, token: str) -> int: ...
    def wake_workers(self) -> None: ...
    def reconnect(self) -> None: ...


class DatabaseStore:
    """The worker's reads and writes on the database alias ``using``, each on the calling thread's connection."""

    def __init__(self, using: str):
        self.using = using

    def now(self) -> datetime:
        return dbclock.now(self.using)  # due times and leases are judged on the database's clock

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
        return leases.claim(worker_id, limit, None, lease, queues, self.using, token=token, start=start, skip=skip)[1]

    def next_due_time(self, queues: list[str] | None, now: datetime, skip: frozenset[str]) -> datetime | None:
        return leases.next_due_time(queues, now, self.using, skip)

    def release_claim(self, token: str) -> int:
        return leases.release_claim(token, self.using)

    def release(self, job_id: int, token: str, error: str, now: datetime) -> int:
        return leases.release(job_id, token, error, now, self.using)

    def hand_back(self, token: str, jobs: Iterable[ScheduledFunction]) -> int:
        return leases.hand_back(token, jobs, self.using)

    def register(
        self, worker_id: str, queues: list[str] | None, concurrency: int, now: datetime, lease: timedelta
    ) -> None:
        leases.register_worker(
            worker_id,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            queues=queues,
            concurrency=concurrency,
            now=now,
            lease=lease,
            using=self.using,
        )

    def publish(self, worker_id: str, functions: dict[str, str], unknown: list[str]) -> None:
        """What the worker can run and the names it met but cannot, on its row (deploys.py)."""
        WorkerProcess.objects.using(self.using).filter(worker_id=worker_id).update(functions=functions, unknown=unknown)

    def heartbeat(self, worker_id: str, lease: timedelta) -> int:
        return leases.heartbeat(worker_id, lease, self.using)

    def sign_off(self, worker_id: str, now: datetime) -> int:
        return leases.sign_off(worker_id, now, self.using)

    def recover_expired(self) -> int:
        return maintenance.recover_expired(None, self.using)  # on the database's clock

    def recover_previous_incarnation(self, worker_id: str, now: datetime) -> int:
        return maintenance.recover_previous_incarnation(worker_id, now, self.using)

    def prune(self) -> int:
        return maintenance.prune(None, app_settings.RETENTION, self.using)

    def settle_actions(
        self, outcomes: list[tuple[int, str, Any]], starts: list[tuple[int, str]], now: datetime
    ) -> tuple[set[int], set[int]]:
        return engine(self.using).settle_actions(outcomes, starts, now)

    def mark_failed(self, job_id: int, token: str, error: str, now: datetime, **fields: Any) -> int:
        return Jobs.using(self.using).mark_failed(job_id, token, error, now, **fields)

    def retry_later(self, job_id: int, token: str, error: str, run_at: datetime) -> int:
        return Jobs.using(self.using).retry_later(job_id, token, error, run_at)

    def keep_late_result(self, job_id: int, result: Any) -> int:
        return Jobs.using(self.using).keep_late_result(job_id, result)

    def undo_start(self, job_id: int, token: str) -> int:
        return Jobs.using(self.using).undo_start(job_id, token)

    def batch_item_finished(self, job: ScheduledFunction) -> None:
        """After ``job``'s final state committed: count it in its batch, if it has one; journal it in its
        workflow run, if it runs a step."""
        batches.job_finished(job, self.using)
        workflow_steps.job_finished(job, self.using)

    def wake_workers(self) -> None:
        engine(self.using).wake_workers()

    def reconnect(self) -> None:
        """Drop this thread's connection after an error; the next query opens a new one."""
        connections[self.using].close()
