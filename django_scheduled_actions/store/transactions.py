"""Database transactions for functions: serializable mutations retried on conflicts, read-only queries.

Vendor differences live here and nowhere else:

- PostgreSQL: ``SET TRANSACTION ISOLATION LEVEL ...`` as the first statement of the transaction;
  serialisation failures (40001), deadlocks (40P01) and lock timeouts (55P03) are retried, and so, a few
  times, is a serializable mutation's unique violation (23505): its snapshot cannot see a row that a
  concurrent transaction committed after it began, so "read, found nothing, insert" loses such a race
  with that error.
- MySQL / MariaDB: ``SET TRANSACTION ISOLATION LEVEL ...`` before the transaction's first statement;
  deadlocks (1213) and lock wait timeouts (1205) are retried.
- SQLite: one writer at a time, taken at the start (``BEGIN IMMEDIATE``); "database is busy/locked"
  (SQLITE_BUSY / SQLITE_LOCKED) is retried.
"""

from __future__ import annotations

import logging
import random
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any, Protocol, TypeVar, cast

from django.db import DatabaseError, connections, transaction

from ..conf import app_settings
from ..core import guards
from . import commits
from .errors import is_conflict, is_unique_race

logger = logging.getLogger("django_scheduled_actions")
T = TypeVar("T")

MAX_CONFLICT_RETRIES = 40
RECONNECT_PATIENCE = 30.0  # seconds a transaction whose connection failed before its commit keeps trying
MAX_UNIQUE_RETRIES = 3  # unique violations retried per mutation call; one still there then is the application's


def _pg_isolation_levels() -> dict[str, object]:
    """psycopg 3's isolation levels, or {} when Django uses psycopg2 (or PostgreSQL is not in use)."""
    try:
        from django.db.backends.postgresql.psycopg_any import is_psycopg3
        from psycopg import IsolationLevel
    except ImportError:
        return {}
    if not is_psycopg3:
        return {}
    return {
        "serializable": IsolationLevel.SERIALIZABLE,
        "repeatable read": IsolationLevel.REPEATABLE_READ,
        "read committed": IsolationLevel.READ_COMMITTED,
    }


PG_ISOLATION = _pg_isolation_levels()


class _SQLiteModes(Protocol):
    """What Django's SQLite connection has and django-stubs leave out: the mode its ``BEGIN`` uses."""

    transaction_mode: str | None


def conflict_backoff(attempt: int) -> float:
    return random.uniform(0, min(0.5, 0.002 * 2**attempt))


_begin_hooks: list[Callable[[Any], None]] = []


def on_begin(hook: Callable[[Any], None]) -> None:
    """Run ``hook(connection)`` first in each transaction ``outermost`` opens (sessions.py: bounds per transaction)."""
    _begin_hooks.append(hook)


def _begun(connection: Any) -> None:
    for hook in _begin_hooks:  # outside the body's guard policy, as all of outermost's own statements
        hook(connection)


@contextmanager
def outermost(using: str, isolation: str | None, *, read_only: bool = False) -> Iterator[None]:
    """An outermost ``transaction.atomic`` with the given isolation, taking SQLite's write lock first.

    Only the body runs under the caller's guard policy: opening, beginning and ending the transaction are
    not the body's statements (ending one whose connection was lost reconnects, and a new MySQL connection
    starts with ``SET SESSION ...``, which a query's read-only policy would refuse)."""
    body_policy = guards.current()
    with guards.policy("allow"), _transaction(using, isolation, read_only):
        if body_policy is None:
            yield
        else:
            with guards.policy(body_policy):
                yield


@contextmanager
def _transaction(using: str, isolation: str | None, read_only: bool) -> Iterator[None]:
    conn = connections[using]
    raw = conn.connection
    if conn.vendor == "postgresql" and raw is not None and raw.closed and not conn.in_atomic_block:
        conn.close()  # broken underneath (a connection killed while Django set it up stays assigned): reopen
    conn.ensure_connection()
    vendor = conn.vendor
    if vendor == "sqlite":
        sqlite = cast(_SQLiteModes, conn)
        saved = sqlite.transaction_mode
        sqlite.transaction_mode = "DEFERRED" if read_only else "IMMEDIATE"
        try:
            with transaction.atomic(using=using):
                sqlite.transaction_mode = saved
                yield
        finally:
            sqlite.transaction_mode = saved
        return
    if (
        vendor == "postgresql"
        and PG_ISOLATION
        and (isolation or read_only)
        and conn.connection is not None
        and not conn.in_atomic_block
    ):
        # psycopg then opens the transaction with "BEGIN ISOLATION LEVEL ..." itself: one round trip less
        raw = conn.connection
        saved_level, saved_read_only = raw.isolation_level, raw.read_only
        with conn.wrap_database_errors:  # a lost connection is Django's OperationalError, as everywhere else
            raw.isolation_level = PG_ISOLATION[isolation] if isolation else saved_level
            raw.read_only = True if read_only else saved_read_only
        try:
            with transaction.atomic(using=using):
                _begun(conn)
                yield
        finally:
            if raw is conn.connection and not raw.closed:
                try:
                    raw.isolation_level, raw.read_only = saved_level, saved_read_only
                except Exception:  # broke meanwhile: never hide the body's outcome; the next use reopens
                    conn.close()
        return
    with transaction.atomic(using=using):
        clauses = [f"ISOLATION LEVEL {isolation.upper()}"] if isolation else []
        if read_only:
            clauses.append("READ ONLY")
        if clauses:
            with conn.cursor() as cursor:
                cursor.execute("SET TRANSACTION " + ", ".join(clauses))
        _begun(conn)
        yield


_UNPREPARABLE: weakref.WeakSet[Any] = weakref.WeakSet()  # PostgreSQL connections where preparing failed
_UNPREPARABLE_WARNED = threading.Event()  # whether this process has warned of it
_UNPREPARABLE_LOCK = threading.Lock()  # two threads finding it at once warn once


def fetch_prepared(using: str, sql: str, params: list[Any] | dict[str, Any]) -> list[tuple[Any, ...]]:
    """Run ``sql`` and return its rows; on PostgreSQL as a prepared statement, planned once per connection.

    For the statements a worker runs per claim, planning costs more than running (a claim: ~1.9 ms
    unprepared, ~1.3 ms prepared, here). Django leaves psycopg's automatic preparing off (connection
    poolers); this prepares only what is passed here, under names no other connection uses
    (``_name_statements_apart``). On a connection where a prepared statement went
    missing (SQLSTATE 26000 or 42P05: a pooler in transaction mode that does not keep them) it runs the
    statement again unprepared and never prepares there again; inside a transaction, which that error
    aborted, it raises instead (the mutation path then rolls back and runs each job alone)."""
    connection = connections[using]
    connection.ensure_connection()
    raw = connection.connection
    if connection.vendor == "postgresql" and PG_ISOLATION and raw not in _UNPREPARABLE:  # psycopg 3, not 2
        import psycopg

        if raw.prepare_threshold is None:  # psycopg then prepares nothing, even when asked
            raw.prepare_threshold = 2**31 - 1  # only what is executed with prepare=True
            _name_statements_apart(raw)
        try:
            with connection.wrap_database_errors, psycopg.Cursor(raw) as cursor:
                cursor.execute(sql, params, prepare=True)
                rows: list[tuple[Any, ...]] = cursor.fetchall()
                return rows
        except DatabaseError as exc:
            if getattr(exc.__cause__, "sqlstate", None) not in ("26000", "42P05"):
                raise
            _UNPREPARABLE.add(raw)
            with _UNPREPARABLE_LOCK:  # once per process: behind a pooler each of a worker's connections finds it
                level = logging.DEBUG if _UNPREPARABLE_WARNED.is_set() else logging.WARNING
                _UNPREPARABLE_WARNED.set()
            logger.log(
                level, "prepared statements do not work on this connection (a pooler?); not using them error=%r", exc
            )
            if connection.in_atomic_block:  # the transaction is aborted: the caller's rollback path takes over
                raise
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        unprepared: list[tuple[Any, ...]] = cursor.fetchall()
        return unprepared


def _name_statements_apart(raw: Any) -> None:
    """Start this connection's prepared statement names (psycopg's ``_pg3_<n>``, counted from 0 on every
    connection) at a random ``n``. Behind a pooler in transaction mode that shares server connections
    without keeping prepared statements apart (PgBouncer before 1.21), another client's ``_pg3_0`` may be on
    the server connection this one gets: executing "ours" there would run that other statement with these
    parameters. With names no other client uses, a statement this connection prepared elsewhere is only
    ever missing (26000), which ``fetch_prepared`` falls back from."""
    manager: Any = getattr(raw, "_prepared", None)
    if manager is not None and isinstance(getattr(manager, "_prepared_idx", None), int):
        manager._prepared_idx = secrets.randbits(63)


def in_transaction(using: str) -> bool:
    return connections[using].in_atomic_block


def in_callers_transaction(using: str) -> bool:
    """True inside a transaction that the caller opened (a mutation's, ``transaction.atomic()``). The
    blocks Django's ``TestCase`` wraps each test in do not count, as for ``atomic(durable=True)``."""
    connection = connections[using]
    blocks = connection.atomic_blocks
    return connection.in_atomic_block and not (blocks and getattr(blocks[-1], "_from_testcase", False))


def retry_on_conflict(attempt_once: Callable[[], T], *, unique_retries: int = 0) -> T:
    """Run ``attempt_once`` (one whole transaction) again after a conflict, with a short random backoff;
    also after a unique violation that may be a lost race (``is_unique_race``), at most ``unique_retries``
    times; and, for ``RECONNECT_PATIENCE`` seconds, after its connection failed before its commit (a
    connection killed, the server restarting or refusing new connections), each time on a new one."""
    attempt, reconnects, patience = 0, 0, time.monotonic() + RECONNECT_PATIENCE
    while True:
        try:
            return attempt_once()
        except commits.RunAgain as lost:
            error = lost.__cause__
            if time.monotonic() > patience:
                raise error from None  # type: ignore[misc]
            reconnects += 1
            logger.info("connection lost before the commit, running the transaction again error=%r", error)
            connections[lost.args[0]].close()
            time.sleep(min(0.05 * 2**reconnects, 1.0))
        except DatabaseError as exc:
            lost_race = unique_retries > 0 and is_unique_race(exc)
            if not (lost_race or is_conflict(exc)) or attempt >= MAX_CONFLICT_RETRIES:
                raise
            unique_retries -= lost_race
            attempt += 1
            logger.debug("transaction conflict, retrying attempt=%d error=%s", attempt, exc)
            time.sleep(conflict_backoff(attempt))


def run_in_short_transaction(body: Callable[[], T], using: str) -> T:
    """The app's own bookkeeping (batch counts, workflow journals): in the caller's transaction (a
    savepoint) if one is open, else in a short one of its own at the connection's default isolation
    (SQLite's write lock taken first), repeated after a conflict."""
    with guards.policy("allow"):
        if in_transaction(using):
            with transaction.atomic(using=using):
                return body()

        def once() -> T:
            with outermost(using, None):
                return body()

        return retry_on_conflict(once)


def run_in_mutation_transaction(body: Callable[[], T], using: str, isolation: str | None = None) -> T:
    """Run ``body`` in a mutation transaction (``isolation``, else ``MUTATION_ISOLATION``), retried on
    conflicts and lost unique-key races; join an open transaction as a savepoint (never retried: the
    transaction is the caller's)."""
    if in_transaction(using):
        with transaction.atomic(using=using):
            return body()

    def once() -> T:
        with commits.resolved(using) as attempt, outermost(using, isolation or app_settings.MUTATION_ISOLATION):
            result = body()
            attempt.about_to_commit()
        return result

    return retry_on_conflict(once, unique_retries=MAX_UNIQUE_RETRIES)


def run_in_query_transaction(body: Callable[[], T], using: str) -> T:
    """Run ``body`` read-only: a repeatable-read snapshot that is rolled back, never committed."""

    def once() -> T:
        ctx: AbstractContextManager[None]
        if in_transaction(using):
            ctx = transaction.atomic(using=using)
        else:
            isolation = None if connections[using].vendor == "sqlite" else "repeatable read"
            ctx = outermost(using, isolation, read_only=True)
        with ctx:
            result = body()
            transaction.set_rollback(True, using=using)
            return result

    if in_transaction(using):
        return once()

    def read_again_if_lost() -> T:  # read-only, rolled back: always safe to run again
        with commits.resolved(using):
            return once()

    return retry_on_conflict(read_again_if_lost)
