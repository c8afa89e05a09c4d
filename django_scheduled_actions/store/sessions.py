"""Bounds on the worker's own database sessions: an abandoned transaction cannot hold the queue.

A worker paused inside a transaction (SIGSTOP, a stalled VM, a debugger) keeps its row locks for as long
as it is paused, and every other worker's writes to those rows queue behind them. So each session a
worker thread opens is bounded by the database itself, at half a lease (at least one second), shorter
than the lease after which other workers recover the paused worker's jobs:

- PostgreSQL: ``idle_in_transaction_session_timeout`` (the server ends a session idle in a transaction
  that long, releasing its locks) and ``lock_timeout`` (a statement waits no longer for a lock).
- MariaDB: ``idle_transaction_timeout`` and ``innodb_lock_wait_timeout`` (whole seconds). MySQL has no
  idle-in-transaction bound; it gets the lock wait bound only.
- SQLite: one writer at a time, bounded by its busy timeout already.

Behind a pooler in transaction mode (``per_transaction``: PgBouncer) a session ``SET`` would stay on
whichever server connection ran it, bounding the pooler's other clients there and not this worker's
next transaction. There the bounds are set again with ``SET LOCAL`` (``set_config(..., true)``) first in
each transaction the worker opens (``transactions.outermost``: claims, mutations, every write that
locks rows across statements); a single autocommit statement holds its locks only while it runs.

A lock wait that times out is retried like a conflict (``errors.is_conflict``) and never fails a
job (``errors.is_lock_timeout``). Sessions of the process that are not the worker's (a web request
in the same process, a test) are left alone.
"""

from __future__ import annotations

import threading
from typing import Any

from django.db import connections
from django.db.backends.signals import connection_created

from ..conf import app_settings
from ..core import guards
from . import transactions
from .engines import engine

_local = threading.local()
_pooled: set[str] = set()  # aliases bounded per transaction: behind a pooler in transaction mode


def bound(using: str, *, per_transaction: bool | None = None) -> None:
    """Bound this thread's connection to ``using``: the one open now, and each it opens from now on.
    ``per_transaction`` (set by the worker's main thread, for every thread): in each transaction instead."""
    if per_transaction is not None:
        (_pooled.add if per_transaction else _pooled.discard)(using)
    _local.aliases = {*getattr(_local, "aliases", ()), using}
    connection = connections[using]
    if connection.connection is not None:
        apply(connection)


def timeout_seconds() -> float:
    return max(float(app_settings.LEASE_SECONDS) / 2, 1.0)


def apply(connection: Any) -> None:
    """Set the session's bounds (see the module's docstring)."""
    if connection.alias in _pooled:
        return
    statements = engine(connection.alias).session_bounds(timeout_seconds())
    if not statements:
        return
    with guards.policy("allow"), connection.cursor() as cursor:  # a connection opened inside a query's body too
        for statement in statements:
            cursor.execute(statement)


def _on_begin(connection: Any) -> None:
    """First in each outermost transaction of a bounded thread behind a pooler: the bounds, for it alone."""
    if connection.alias not in _pooled or connection.alias not in getattr(_local, "aliases", ()):
        return
    statement, params = engine(connection.alias).transaction_bounds(timeout_seconds())
    if statement:
        with connection.cursor() as cursor:
            cursor.execute(statement, params)


def _on_connection_created(sender: Any, connection: Any, **kwargs: Any) -> None:
    if connection.alias in getattr(_local, "aliases", ()):
        apply(connection)


transactions.on_begin(_on_begin)
connection_created.connect(_on_connection_created, dispatch_uid="scheduled_actions_bounded_sessions")
