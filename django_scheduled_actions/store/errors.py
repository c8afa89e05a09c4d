"""What a database error means, for each vendor: a conflict to retry, a lock wait given up, a lost race
on a unique key, or the connection itself gone. The drivers' codes live here and nowhere else."""

from __future__ import annotations

from django.db import InterfaceError

from ..conf import app_settings

PG_RETRYABLE = {"40001", "40P01", "55P03"}
PG_UNIQUE_VIOLATION = "23505"
PG_LOCK_TIMEOUT, MYSQL_LOCK_TIMEOUTS = "55P03", {1205, 3572}  # 3572: MySQL's NOWAIT
MYSQL_RETRYABLE = {1213, 1205}
SQLITE_RETRYABLE = {5, 6}  # SQLITE_BUSY, SQLITE_LOCKED (primary result codes)


def _sqlstate(cause: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a driver error (psycopg 3, psycopg2), None for other databases."""
    return getattr(cause, "sqlstate", None) or getattr(cause, "pgcode", None)


def _mysql_code(cause: BaseException) -> int | None:
    """MySQL/MariaDB's error number of a driver error (mysqlclient), None for other databases."""
    args = getattr(cause, "args", ())
    return args[0] if args and type(cause).__module__.startswith("MySQLdb") else None


def is_conflict(exc: BaseException) -> bool:
    """True for serialisation failures, deadlocks and lock timeouts: the transaction may be retried."""
    cause = exc.__cause__ or exc
    sqlstate = _sqlstate(cause)
    if sqlstate is not None:
        return sqlstate in PG_RETRYABLE
    code = getattr(cause, "sqlite_errorcode", None)
    if code is not None:
        return (code & 0xFF) in SQLITE_RETRYABLE
    return _mysql_code(cause) in MYSQL_RETRYABLE


def is_unique_race(exc: BaseException) -> bool:
    """True for a unique violation on PostgreSQL while mutations are serializable: possibly a key that a
    concurrent transaction committed after this one's snapshot was taken, which a repeat would see.

    Only mutation transactions retry it (``run_in_mutation_transaction``, at most ``MAX_UNIQUE_RETRIES``
    times), at the outermost level: a savepoint's caller may be catching ``IntegrityError`` itself.
    MySQL/MariaDB's serializable reads lock what they read, so the same race is a deadlock there (1213,
    retried as a conflict); SQLite has one writer, so the race cannot happen."""
    return app_settings.MUTATION_ISOLATION == "serializable" and _sqlstate(exc.__cause__ or exc) == PG_UNIQUE_VIOLATION


def is_lock_timeout(exc: BaseException) -> bool:
    """True when a statement gave up waiting for a lock (``lock_timeout``, ``innodb_lock_wait_timeout``, a
    ``NOWAIT`` that found the row locked): another session's doing, never the job's own failure."""
    cause = exc.__cause__ or exc
    if _sqlstate(cause) == PG_LOCK_TIMEOUT:
        return True
    return _mysql_code(cause) in MYSQL_LOCK_TIMEOUTS


PG_CONNECTION_STATES = {"57P01", "57P02", "57P03"}  # admin shutdown, crash shutdown, cannot connect now
# too many connections, shutdown, over a user's connection limit (the global one, the account's), killed,
# can't connect, gone, lost (PostgreSQL's refusals when connecting carry no SQLSTATE: connection errors)
MYSQL_CONNECTION_ERRORS = {1040, 1053, 1203, 1226, 1927, 2002, 2003, 2006, 2013}


def is_connection_error(exc: BaseException) -> bool:
    """True when the database connection itself failed (server gone, killed, restarting), not the statement."""
    if isinstance(exc, InterfaceError):
        return True
    cause = exc.__cause__ or exc
    sqlstate = getattr(cause, "sqlstate", None)
    if type(cause).__module__.startswith("psycopg"):
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in PG_CONNECTION_STATES
    return _mysql_code(cause) in MYSQL_CONNECTION_ERRORS
