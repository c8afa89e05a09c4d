"""The worker's heartbeat: its row in the workers table is the lease on every job it holds."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import timedelta

from django.db import InterfaceError, OperationalError, connections

from ..store import sessions
from .store import Store

logger = logging.getLogger("django_scheduled_actions")


class Heartbeat(threading.Thread):
    """Renews the worker's lease every third of a lease until ``finished`` is set: while it beats, nobody
    recovers the jobs it holds. A row that is gone (pruned, deleted by hand) is registered again."""

    def __init__(
        self, store: Store, worker_id: str, lease: timedelta, finished: threading.Event, register: Callable[[], None]
    ):
        super().__init__(name="scheduled-actions-heartbeat", daemon=True)
        self.store, self.worker_id, self.lease = store, worker_id, lease
        self.finished, self.register = finished, register
        self.connected = threading.Event()  # its connection was tried: the worker's other threads start after

    def run(self) -> None:
        interval = self.lease.total_seconds() / 3
        sessions.bound(self.store.using)
        try:  # open its connection now, before the worker's other work takes the database's last ones
            connections[self.store.using].ensure_connection()
        except (OperationalError, InterfaceError) as exc:
            logger.warning("heartbeat could not connect yet, retrying error=%r", exc)
        self.connected.set()
        while not self.finished.wait(interval):
            try:
                if not self.store.heartbeat(self.worker_id, self.lease):
                    self.register()
            except (OperationalError, InterfaceError) as exc:
                logger.warning("heartbeat failed, retrying error=%r", exc)
                self.store.reconnect()
        connections.close_all()
