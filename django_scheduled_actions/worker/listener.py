"""Waking workers. PostgreSQL: LISTEN on a channel that the job table's trigger NOTIFYs on commit.
SQLite: ``PRAGMA data_version``, which changes when another connection commits, read every few
milliseconds on a connection of its own (``DataVersionWatcher``). MariaDB / MySQL workers poll.

The listener runs in its own thread on its own connection, reconnects by itself after the database
restarts (LISTEN included), and wakes the worker after every reconnect in case it missed a notice.

LISTEN needs a session of its own. Behind a pooler in transaction mode (PgBouncer's usual setup) the
server connection that ran LISTEN goes back to the pool, and notices never reach the worker. So before
relying on it the worker checks that a notice sent on its own database arrives where it listens
(``notices_arrive``): on ``SCHEDULED_ACTIONS_LISTEN_DATABASE`` when set (a direct connection to the same
server), else on its own database. Where none arrives it polls, and says once what to configure.
"""

from __future__ import annotations

import logging
import secrets
import threading
import time
from collections.abc import Callable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections

from ..conf import app_settings

logger = logging.getLogger("django_scheduled_actions")
CHANNEL = "scheduled_actions"
PROBE_SECONDS = 3.0  # a notice on a direct connection arrives within milliseconds
DATA_VERSION_SECONDS = 0.01  # how often a SQLite worker reads PRAGMA data_version


def supports_listen(using: str = DEFAULT_DB_ALIAS) -> bool:
    return connections[using].vendor == "postgresql"


def listen_alias(using: str) -> str:
    """The alias to LISTEN on for jobs written to ``using``."""
    return str(app_settings.LISTEN_DATABASE or using)


def behind_pooler(using: str) -> bool:
    """Whether ``using`` keeps no session between transactions (a pooler in transaction mode).

    A separate ``SCHEDULED_ACTIONS_LISTEN_DATABASE`` says so; else a notice must reach a listener on
    ``using`` itself (a few milliseconds on a direct connection). Where it does not, the worker is told
    once, here, that it polls."""
    if not supports_listen(using):
        return False
    if listen_alias(using) != using:
        return True
    db = connections.create_connection(using)
    try:
        db.ensure_connection()
        raw = db.connection
        raw.autocommit = True
        if notices_arrive(raw, using):
            return False
    finally:
        db.close()
    warn_polling(using)
    return True


def notices_arrive(raw: Any, using: str, timeout: float = PROBE_SECONDS) -> bool:
    """Whether a NOTIFY sent on a fresh connection to ``using`` reaches the LISTEN of ``raw`` (autocommit)."""
    channel = f"{CHANNEL}_probe_{secrets.token_hex(6)}"
    raw.execute(f"LISTEN {channel}")
    sender = connections.create_connection(using)
    try:
        with sender.cursor() as cursor:
            cursor.execute(f"NOTIFY {channel}")
    finally:
        sender.close()
    arrived = any(True for _notice in raw.notifies(timeout=timeout, stop_after=1))
    raw.execute(f"UNLISTEN {channel}")
    return arrived


def warn_polling(using: str) -> None:
    listening_on = listen_alias(using)
    where = (
        f"database {listening_on!r}" if listening_on == using else f"SCHEDULED_ACTIONS_LISTEN_DATABASE {listening_on!r}"
    )
    logger.warning(
        "LISTEN on %s does not receive the NOTIFY of database %r (a pooler in transaction mode?): polling "
        "every --poll-interval instead. Set SCHEDULED_ACTIONS_LISTEN_DATABASE to the alias of a direct "
        "connection to that PostgreSQL server (not through the pooler) to wake workers at once",
        where,
        using,
    )


class Listener(threading.Thread):
    """LISTENs on ``listen_alias(using)``; checks on its first connection that notices of ``using`` arrive,
    and ends (the worker polls) with one warning if they do not."""

    def __init__(self, notify: Callable[[], None], stopping: threading.Event, using: str = DEFAULT_DB_ALIAS):
        super().__init__(name="scheduled-actions-listener", daemon=True)
        self.notify = notify
        self.stopping = stopping
        self.using = using
        self.ready = threading.Event()

    def run(self) -> None:
        delay, checked = 0.1, False
        while not self.stopping.is_set():
            db = connections.create_connection(listen_alias(self.using))
            try:
                db.ensure_connection()
                raw = db.connection
                raw.autocommit = True
                if not checked:  # first: its UNLISTEN is then not this session's last statement
                    if not notices_arrive(raw, self.using):
                        warn_polling(self.using)
                        return
                    checked = True
                raw.execute(f"LISTEN {CHANNEL}")  # what missed meanwhile: the notify() below
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


class DataVersionWatcher(threading.Thread):
    """SQLite: wakes the worker when another connection has committed (a job scheduled by another process,
    or by the worker's own threads). A read of ``PRAGMA data_version`` takes no lock and costs microseconds."""

    def __init__(self, notify: Callable[[], None], stopping: threading.Event, using: str = DEFAULT_DB_ALIAS):
        super().__init__(name="scheduled-actions-data-version", daemon=True)
        self.notify, self.stopping, self.using = notify, stopping, using

    def run(self) -> None:
        db = connections.create_connection(self.using)
        try:
            db.ensure_connection()
            raw, last = db.connection, None
            while not self.stopping.is_set():
                time.sleep(DATA_VERSION_SECONDS)  # cheaper than a timed wait on the event, 100 times a second
                try:
                    version = raw.execute("PRAGMA data_version").fetchone()[0]
                except Exception as exc:  # a busy or vanished file: the worker polls meanwhile
                    logger.debug("could not read PRAGMA data_version error=%r", exc)
                    continue
                if last is not None and version != last:
                    self.notify()
                last = version
        finally:
            db.close()
