"""The faults. Each scenario's ``fault(run)`` injects its fault for ``run.fault_seconds`` and returns when the
fault is over; the runner measures before and after and checks the invariants. Importable without Django
(the driver lists the scenarios); the faults import Django's parts when they run."""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from .servers import DATABASE, ROLE


@dataclass(frozen=True)
class Scenario:
    name: str
    vendors: tuple[str, ...]
    fault: Callable
    full_seconds: float = 10.0
    short_seconds: float = 4.0
    worker_args: tuple[str, ...] = ()

    def label(self, vendor: str) -> str:
        if self.name == "db_restart":
            return "postgres_restart" if vendor == "postgres" else "mariadb_restart"
        return self.name


def crash_recovery(run) -> None:
    """SIGKILL one of the two workers mid-load; the other recovers its claims once their lease expires."""
    run.workers.kill("w1")
    run.kills += 1
    time.sleep(run.fault_seconds)


def repeated_kills(run) -> None:
    """SIGKILL a random worker every 1-3 s, restarting it each time (under a new worker id)."""
    rng = random.Random(99)  # noqa: S311
    end = time.monotonic() + run.fault_seconds
    while time.monotonic() < end:
        time.sleep(rng.uniform(1, 3))
        slot = rng.choice(sorted(run.workers.procs))
        run.workers.kill(slot)
        run.kills += 1
        run.workers.start(slot)


def db_restart(run) -> None:
    """Crash the database server (PostgreSQL ``immediate`` stop, MariaDB ``kill -9``) and start it again a
    couple of seconds later; the workers reconnect by themselves, LISTEN included."""
    run.server.crash()
    run.kills += 1
    time.sleep(min(2.0, run.fault_seconds))
    run.server.start()
    time.sleep(max(run.fault_seconds - 2.0, 0))


def _terminate_worker_backends() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE usename = %s", [ROLE])
            return cursor.fetchone()[0]
        cursor.execute("SELECT id FROM information_schema.processlist WHERE user = %s", [ROLE])
        killed = 0
        for (pid,) in cursor.fetchall():
            try:
                cursor.execute(f"KILL CONNECTION {int(pid)}")
                killed += 1
            except Exception:  # noqa: S112 - it ended by itself meanwhile
                continue
        return killed


def backend_kill(run) -> None:
    """Terminate the workers' database connections (``pg_terminate_backend`` / ``KILL CONNECTION``) four
    times a second."""
    from django.db import connection

    end = time.monotonic() + run.fault_seconds
    while time.monotonic() < end:
        try:
            run.kills += _terminate_worker_backends()
        except Exception:
            connection.close()
        time.sleep(0.25)


def connection_exhaustion(run) -> None:
    """The database refuses the workers' new connections (``CONNECTION LIMIT 0``; their open ones are
    terminated first) for the fault's duration, then lets them in again."""
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {DATABASE} CONNECTION LIMIT 0")
        end = time.monotonic() + run.fault_seconds
        while time.monotonic() < end:  # keep the ones that slipped in before the limit out too
            run.kills += _terminate_worker_backends()
            time.sleep(0.5)
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"ALTER DATABASE {DATABASE} CONNECTION LIMIT -1")


def idle_in_transaction(run) -> None:
    """Another client holds a repeatable-read transaction open (pinning xmin: no dead row can be vacuumed)."""
    from django.db import connections

    holder = connections.create_connection("default")
    try:
        holder.ensure_connection()
        raw = holder.connection
        raw.autocommit = False
        raw.execute("BEGIN ISOLATION LEVEL REPEATABLE READ")
        raw.execute("SELECT txid_current(), count(*) FROM scheduled_actions_job").fetchall()
        time.sleep(run.fault_seconds)
        raw.rollback()
    finally:
        holder.close()


def clock(run) -> None:
    """Jobs scheduled in the past (a day ago, the epoch), in the far future (a year on), and to come due while
    the workers sleep (the load pauses; workers poll only every 30 s, so only their computed wake-up time can
    run those jobs on time)."""
    from django_scheduled_actions import scheduler

    from . import functions as cf

    now = datetime.now(UTC)
    run.load.paused.set()
    try:
        for i in range(10):
            run.expect(
                scheduler.run_at(now - timedelta(days=1), cf.effect, {"key": f"past{i}"}), f"past{i}", "mutation"
            )
            run.expect(scheduler.run_at(1.0 + i, cf.effect, {"key": f"epoch{i}"}), f"epoch{i}", "mutation")
            run.expect(
                scheduler.run_at(now + timedelta(days=365), cf.effect, {"key": f"year{i}"}), f"year{i}", "future"
            )
        time.sleep(1.0)  # the workers ran the past jobs and went to sleep
        start = time.monotonic()
        spread = max(run.fault_seconds - 2.0, 1.0)
        for i in range(10):
            due = now + timedelta(seconds=2 + spread * i / 10)
            run.expect(scheduler.run_at(due, cf.effect, {"key": f"sleep{i}"}), f"sleep{i}", "mutation", on_time=True)
        time.sleep(max(run.fault_seconds - (time.monotonic() - start), 0) + 1.0)
    finally:
        run.load.paused.clear()


SCENARIOS = [
    Scenario("crash_recovery", ("postgres", "mysql"), crash_recovery, 10, 4),
    Scenario("repeated_kills", ("postgres", "mysql"), repeated_kills, 60, 15),
    Scenario("db_restart", ("postgres", "mysql"), db_restart, 10, 4),
    Scenario("backend_kill", ("postgres", "mysql"), backend_kill, 20, 5),
    Scenario("connection_exhaustion", ("postgres",), connection_exhaustion, 15, 5),
    Scenario("idle_in_transaction", ("postgres",), idle_in_transaction, 60, 6),
    Scenario("clock", ("postgres",), clock, 10, 6, ("--poll-interval", "30")),
]
ALIASES = {"postgres_restart": "db_restart", "mariadb_restart": "db_restart", "restart": "db_restart"}


def find(name: str) -> Scenario:
    name = ALIASES.get(name, name)
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(f"unknown scenario {name!r} (known: {', '.join(s.name for s in SCENARIOS)})")
