"""The worker's heartbeat: its row in the workers table is the lease on every job it holds."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import timedelta

from django.db import InterfaceError, OperationalError, connections

from ..store import sessions
from .store import Store

logger = logging.getLogger("django_scheduled_actions")


class Heartbeat(threading.Thread):
    """Renews the worker's lease every third of a lease until ``finished`` is set: while it beats, nobody
    recovers the jobs it holds. A row that is gone (pruned, deleted by hand) is registered again.

    While its own connection fails (killed, and the database refusing a new one because the worker's other
    connections and other clients hold them all), it beats through ``fallback``, the worker's other
    connections: a worker whose writes succeed is never taken for lost for want of one connection. And it
    tries for its own connection again every ``RETRY_SECONDS``, not at the next beat: connections cut at once
    are reopened by every thread that needs one, and a heartbeat that waited a third of a lease found the
    database's last ones taken (MariaDB, 3 s leases, half the connections allowed: a live worker's action
    was failed as lost)."""

    RETRY_SECONDS = 0.1

    def __init__(
        self,
        store: Store,
        worker_id: str,
        lease: timedelta,
        finished: threading.Event,
        register: Callable[[], None],
        fallback: Store | None = None,
    ):
        super().__init__(name="scheduled-actions-heartbeat", daemon=True)
        self.store, self.worker_id, self.lease, self.fallback = store, worker_id, lease, fallback
        self.finished, self.register = finished, register
        self.connected = threading.Event()  # its connection was tried: the worker's other threads start after
        self.borrowing = False  # beating through the fallback, its own connection failing
        self.failing = False  # the last attempt failed on every connection tried (warned once per streak)
        self.renewed = time.monotonic()  # when the lease was last renewed, on any connection

    def run(self) -> None:
        interval = self.lease.total_seconds() / 3
        sessions.bound(self.store.using)
        try:  # open its connection now, before the worker's other work takes the database's last ones
            connections[self.store.using].ensure_connection()
        except (OperationalError, InterfaceError) as exc:
            logger.warning("heartbeat could not connect yet, retrying error=%r", exc)
        self.connected.set()
        wait = interval
        while not self.finished.wait(wait):
            wait = self.beat_once(interval)
        connections.close_all()

    def beat_once(self, interval: float) -> float:
        """One attempt to renew the lease; returns how long to wait before the next."""
        try:
            self._beat(self.store)
        except (OperationalError, InterfaceError) as exc:
            self.store.reconnect()
            if time.monotonic() - self.renewed >= interval:  # due: renew it elsewhere meanwhile
                self._beat_elsewhere(exc)
            return min(self.RETRY_SECONDS, interval)  # and have its own connection back as soon as one frees
        self.renewed = time.monotonic()
        if self.borrowing or self.failing:
            logger.info("heartbeat on its own connection again worker=%s", self.worker_id)
            self.borrowing = self.failing = False
        return interval

    def _beat(self, store: Store) -> None:
        if not store.heartbeat(self.worker_id, self.lease):
            self.register()

    def _beat_elsewhere(self, error: Exception) -> None:
        if self.fallback is None:
            self._failed(error)
            return
        if not self.borrowing:
            logger.warning(
                "heartbeat's connection failed; renewing the lease on the worker's other connections meanwhile "
                "worker=%s error=%r",
                self.worker_id,
                error,
            )
            self.borrowing = True
        try:
            self._beat(self.fallback)
        except (OperationalError, InterfaceError) as exc:
            self._failed(exc)
        else:
            self.renewed = time.monotonic()

    def _failed(self, error: Exception) -> None:
        logger.log(logging.DEBUG if self.failing else logging.WARNING, "heartbeat failed, retrying error=%r", error)
        self.failing = True
