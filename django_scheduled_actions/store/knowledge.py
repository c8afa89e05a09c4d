"""What the live workers know: which functions each can run and which it met but could not (deploys.py
publishes it on the workers' rows; the admin shows it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS

from ..models import ScheduledFunction, WorkerProcess


def due_since(job: ScheduledFunction) -> datetime:
    """When the job fell due: its scheduled time (a retry's backoff moves it), or its creation if later."""
    return max(job.scheduled_time, job.created_at)


@dataclass(frozen=True)
class Seen:
    """One worker's row, as far as knowing functions goes."""

    functions: dict[str, str]
    unknown: list[str]
    queues: list[str]
    alive: bool
    known_until: datetime  # now while alive; else its sign-off, or its last heartbeat if it was lost

    def serves(self, queue: str) -> bool:
        return not self.queues or queue in self.queues


class Knowledge:
    """What the workers alive at ``since`` or later knew: one query of the (small) workers table."""

    def __init__(self, now: datetime, since: datetime, using: str = DEFAULT_DB_ALIAS):
        rows = (
            WorkerProcess.objects.using(using)
            .filter(expires_at__gte=since)
            .values_list("functions", "unknown", "queues", "heartbeat_at", "expires_at", "stopped_at")
        )
        self.seen = []
        for functions, unknown, queues, beat, expires, stopped in rows:
            alive = stopped is None and expires >= now
            self.seen.append(
                Seen(functions or {}, unknown or [], queues or [], alive, now if alive else stopped or beat)
            )

    def _knowers(self, name: str, kind: str, queue: str) -> list[Seen]:
        return [w for w in self.seen if w.functions.get(name) == kind and w.serves(queue)]

    def last_known(self, name: str, kind: str, queue: str) -> datetime | None:
        """The last time a worker serving ``queue`` knew the function (now if a live one does)."""
        return max((w.known_until for w in self._knowers(name, kind, queue)), default=None)

    def unrunnable(self, name: str, kind: str, queue: str) -> bool:
        """A live worker met the function and could not run it, and no live worker serving ``queue`` knows it
        (what the admin marks "no live worker knows this function")."""
        met = any(w.alive and name in w.unknown for w in self.seen)
        return met and not any(w.alive for w in self._knowers(name, kind, queue))


def grace_over(job: ScheduledFunction, knowledge: Knowledge, now: datetime, grace: float) -> bool:
    """Whether no live worker has known ``job``'s function for ``grace`` seconds since the job fell due."""
    last = knowledge.last_known(job.name, job.kind, job.queue)
    waiting_since = max(due_since(job), last) if last else due_since(job)
    return waiting_since <= now - timedelta(seconds=grace)
