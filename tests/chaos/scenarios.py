"""The faults. Each scenario's ``fault(run)`` injects its fault for ``run.fault_seconds`` and returns when the
fault is over; the runner measures before and after and checks the invariants. Importable without Django
(the driver lists the scenarios); the faults import Django's parts when they run."""

from __future__ import annotations

import random
import signal
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
    moves_during: bool = False  # jobs must complete in the fault's second half: it may slow the queue, not stop it
    whole_run: bool = False  # ``fault(run)`` is the scenario's whole run (no steady load) and returns its Result

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


def _skewed_worker(seconds: float) -> Callable:
    def fault(run) -> None:
        from .clocks import skewed
        from .load import wait_for

        run.workers.start("w3", env=skewed(seconds))
        run.workers.wait_ready()
        wait_for(lambda: run.workers.claimed_by("w3"), 30, f"the worker {seconds:+g}s off to run jobs")
        time.sleep(run.fault_seconds)
        run.workers.stop("w3")

    fault.__doc__ = (
        f"A third worker whose wall clock reads {seconds:+g} s off (libfaketime) runs beside the two for the "
        "fault's duration, then stops: it takes no live worker's jobs and loses none of its own."
    )
    return fault


clock_ahead, clock_behind = _skewed_worker(120), _skewed_worker(-120)


def paused_in_transaction(run) -> None:
    """A worker stops itself (SIGSTOP) inside a mutation's transaction, holding the counter's row lock that
    every mutation takes, for three leases; then SIGCONT. The database ends the abandoned transaction, the
    other worker recovers the paused one's jobs, the stalled mutation takes effect once elsewhere."""
    from django_scheduled_actions import scheduler

    from . import functions as cf
    from .load import wait_for

    marker = run.workers.stall_marker
    run.expect(scheduler.run_after(0, cf.stall, {"key": "stall"}), "stall", "mutation")
    pid = int(wait_for(lambda: marker.exists() and marker.read_text().strip(), 30, "a worker to stop mid-mutation"))
    slot = next(slot for slot, proc in run.workers.procs.items() if proc.pid == pid)
    run.workers.faulted.add(run.workers.worker_id(slot))  # it is out for three leases: it may lose its actions
    time.sleep(run.fault_seconds)
    run.workers.signal(slot, signal.SIGCONT)


def locked_worker_rows(run) -> None:
    """Another session holds both workers' own rows in the workers table locked (``SELECT ... FOR UPDATE``,
    as an admin save, a migration or a long report may) for three leases: heartbeats must not wait for
    them, and no live worker may be taken for lost."""
    from django.db import transaction

    from django_scheduled_actions.models import WorkerProcess

    ids = [run.workers.worker_id(slot) for slot in run.workers.procs]
    with transaction.atomic():
        locked = list(WorkerProcess.objects.select_for_update().filter(worker_id__in=ids).values_list("pk", flat=True))
        if len(locked) != len(ids):
            raise AssertionError(f"expected to lock {len(ids)} worker rows, locked {len(locked)}")
        time.sleep(run.fault_seconds)


def _worker_connections() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE usename = %s", [ROLE])
        else:
            cursor.execute("SELECT count(*) FROM information_schema.processlist WHERE user = %s", [ROLE])
        return cursor.fetchone()[0]


def _limit_connections(limit: int | None) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"ALTER ROLE {ROLE} CONNECTION LIMIT {-1 if limit is None else int(limit)}")
        else:
            for host in ("127.0.0.1", "localhost"):
                cursor.execute(f"ALTER USER '{ROLE}'@'{host}' WITH MAX_USER_CONNECTIONS {int(limit or 0)}")


def connection_shortage(run) -> None:
    """The workers' role may hold half the connections they hold now (at least one more than each
    worker's heartbeat): their connections are cut once and they reconnect under that limit for the
    fault's duration. Fewer connections than wanted must mean slower, never stuck or failed."""
    held = _worker_connections()
    limit = max(held // 2, 2 * len(run.workers.procs) + 1)
    run.result.note = f"{limit} connections for workers that held {held}"
    try:
        _limit_connections(limit)
        run.kills += _terminate_worker_backends()
        time.sleep(run.fault_seconds)
    finally:
        _limit_connections(None)


def workflow_kills(run):
    """Runs of a ten-step workflow (mutations, actions without and with retries) while a random worker is
    killed every 1.5-4 s and the database restarted once: tests/chaos/workflow_kills.py."""
    from .workflow_kills import run_workflow_kills

    return run_workflow_kills(run)


SCENARIOS = [
    Scenario("crash_recovery", ("postgres", "mysql"), crash_recovery, 10, 4),
    Scenario("repeated_kills", ("postgres", "mysql"), repeated_kills, 60, 15),
    Scenario("db_restart", ("postgres", "mysql"), db_restart, 10, 4),
    Scenario("backend_kill", ("postgres", "mysql"), backend_kill, 20, 5),
    Scenario("connection_exhaustion", ("postgres",), connection_exhaustion, 15, 5),
    Scenario("idle_in_transaction", ("postgres",), idle_in_transaction, 60, 6),
    Scenario("clock", ("postgres",), clock, 10, 6, ("--poll-interval", "30")),
    Scenario("clock_ahead", ("postgres", "mysql"), clock_ahead, 20, 8, moves_during=True),
    Scenario("clock_behind", ("postgres", "mysql"), clock_behind, 20, 8, moves_during=True),
    Scenario("paused_in_transaction", ("postgres", "mysql"), paused_in_transaction, 9, 9, moves_during=True),
    Scenario("locked_worker_rows", ("postgres", "mysql"), locked_worker_rows, 9, 9, moves_during=True),
    Scenario("connection_shortage", ("postgres", "mysql"), connection_shortage, 20, 8, moves_during=True),
    Scenario("workflow_kills", ("postgres", "mysql"), workflow_kills, 240, 30, whole_run=True),  # s: the kills' cap
]
ALIASES = {"postgres_restart": "db_restart", "mariadb_restart": "db_restart", "restart": "db_restart"}


def find(name: str) -> Scenario:
    name = ALIASES.get(name, name)
    for scenario in SCENARIOS:
        if scenario.name == name:
            return scenario
    raise KeyError(f"unknown scenario {name!r} (known: {', '.join(s.name for s in SCENARIOS)})")
