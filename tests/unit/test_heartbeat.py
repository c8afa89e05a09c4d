"""The heartbeat's retry logic, on a fake store: its own connection is tried again at once, not at the next
beat, and the lease is renewed through the worker's other connections when a beat is due."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

from django.db import OperationalError

from django_scheduled_actions.worker.heartbeat import Heartbeat


class FlakyStore:
    using = "default"

    def __init__(self, failures: int):
        self.failures, self.beats, self.reconnects = failures, 0, 0

    def heartbeat(self, worker_id: str, lease: timedelta) -> int:
        if self.failures:
            self.failures -= 1
            raise OperationalError("too many connections")
        self.beats += 1
        return 1

    def reconnect(self) -> None:
        self.reconnects += 1


def heartbeat(own: FlakyStore, fallback: FlakyStore | None) -> Heartbeat:
    return Heartbeat(own, "w", timedelta(seconds=3), threading.Event(), lambda: None, fallback)  # type: ignore[arg-type]


def test_a_failed_beat_is_tried_again_soon_on_its_own_connection():
    own = FlakyStore(failures=2)
    beat = heartbeat(own, FlakyStore(0))
    assert beat.beat_once(1.0) == Heartbeat.RETRY_SECONDS
    assert beat.beat_once(1.0) == Heartbeat.RETRY_SECONDS
    assert own.reconnects == 2 and own.beats == 0
    assert beat.beat_once(1.0) == 1.0  # back on its own connection: the next beat a third of a lease later
    assert own.beats == 1


def test_the_lease_is_renewed_elsewhere_only_when_a_beat_is_due():
    own, fallback = FlakyStore(failures=100), FlakyStore(0)
    beat = heartbeat(own, fallback)
    beat.beat_once(1.0)
    assert fallback.beats == 0  # renewed a moment ago (at start): retrying its own is enough for now
    beat.renewed = time.monotonic() - 1.0
    beat.beat_once(1.0)
    assert fallback.beats == 1 and beat.borrowing
    beat.beat_once(1.0)
    assert fallback.beats == 1  # just renewed there: not again until the next beat is due


def test_with_every_connection_failing_it_keeps_trying_and_warns_once(caplog):
    own, fallback = FlakyStore(failures=5), FlakyStore(failures=5)
    beat = heartbeat(own, fallback)
    for _ in range(5):
        beat.renewed = time.monotonic() - 1.0
        assert beat.beat_once(1.0) == Heartbeat.RETRY_SECONDS
    warned = [
        r.getMessage() for r in caplog.records if r.levelname == "WARNING" and "heartbeat failed" in r.getMessage()
    ]
    assert len(warned) == 1, warned
    assert beat.beat_once(1.0) == 1.0 and own.beats == 1 and not beat.failing
