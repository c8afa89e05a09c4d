"""The other connections to the database: counting them (what a worker holds: the connection-bound tests,
benchmarks/waiting.py) and killing them, as a database restart would, as far as the workers can tell
(tests/process/test_processes.py, tests/db/test_worker.py)."""

from __future__ import annotations

from django.db import OperationalError, connection


def other_connections() -> int:
    """Connections to this database but this process's own (PostgreSQL and MariaDB)."""
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        else:
            cursor.execute(
                "SELECT count(*) FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()"
            )
        return int(cursor.fetchone()[0])


def kill_other_connections(vendor: str, keep_listener: bool = False) -> int:
    """Terminate every connection to the test database but this process's own (a database restart, as far
    as the workers can tell), or all but PostgreSQL's LISTEN connections. Returns how many were killed."""
    with connection.cursor() as cursor:
        if vendor == "postgresql":
            cursor.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = current_database() "
                "AND pid <> pg_backend_pid() AND NOT (%s AND query LIKE 'LISTEN %%')",
                [keep_listener],
            )
            return len(cursor.fetchall())
        cursor.execute("SELECT id FROM information_schema.processlist WHERE db = DATABASE() AND id <> CONNECTION_ID()")
        killed = 0
        for (pk,) in cursor.fetchall():
            try:
                cursor.execute(f"KILL CONNECTION {int(pk)}")
            except OperationalError as exc:  # 1094: it closed since the listing (a worker gives connections back)
                if exc.args[0] != 1094:
                    raise
            else:
                killed += 1
        return killed
