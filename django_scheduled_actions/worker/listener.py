"""Waking workers. PostgreSQL: LISTEN on a channel that the job table's trigger NOTIFYs on commit.

The listener runs in its own thread on its own connection, reconnects by itself after the database
restarts (LISTEN included), and wakes the worker after every reconnect in case it missed a notice.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from django.db import DEFAULT_DB_ALIAS, connections

logger = logging.getLogger("django_scheduled_actions")
CHANNEL = "scheduled_actions"


def supports_listen(using: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[using].vendor == "postgresql"


class Listener(threading.Thread):
    def __init__(self, notify: Callable[[], None], stopping: threading.Event, using: str = DEFAULT_DB_ALIAS):
        super().__init__(name="scheduled-actions-listener", daemon=True)
        self.notify = notify
        self.stopping = stopping
        self.using = using
        self.ready = threading.Event()

    def run(self) -> None:
        delay = 0.1
        while not self.stopping.is_set():
            db = connections.create_connection(self.using)
            try:
                db.ensure_connection()
                raw = db.connection
                raw.autocommit = True
                raw.execute(f"LISTEN {CHANNEL}")
                self.ready.set()
                self.notify()
                delay = 0.1
                while not self.stopping.is_set():
                    for _notice in raw.notifies(timeout=0.5, stop_after=1):
                        self.notify()
            except Exception as exc:  # any failure of this connection: reconnect with backoff
                if self.stopping.is_set():
                    break
                logger.warning("listener connection lost, reconnecting in %.1fs error=%r", delay, exc)
                self.stopping.wait(delay)
                delay = min(delay * 2, 5.0)
            finally:
                try:
                    db.close()
                except Exception:  # noqa: S110 - the connection is already gone
                    pass
