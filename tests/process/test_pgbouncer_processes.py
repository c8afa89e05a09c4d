"""Workers behind PgBouncer in transaction mode (PostgreSQL only): the guarantees of test_processes.py hold.

The test's own PgBouncer (tests/support/pgbouncer.py, Debian's 1.18: no prepared statements kept) stands in
front of the test database; the worker processes connect through it, and LISTEN over a direct alias
(``SCHEDULED_ACTIONS_LISTEN_DATABASE``, set by tests/settings.py from ``LISTEN_DATABASE_URL``). The
guarantee tests are test_processes.py's own bodies, collected here again with this module's ``workers``.
The test process itself (scheduling, checking) talks to PostgreSQL directly.
"""

from __future__ import annotations

import signal
from pathlib import Path

import psycopg
import pytest
from django.db import connection

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import State
from tests.app import process_functions as pf
from tests.process.test_processes import (  # the guarantee tests, run again behind the bouncer
    Workers,
    _latencies,
    _ms,
    finished,
    test_action_killed_mid_run_fails_as_worker_lost_and_never_reruns,  # noqa: F401
    test_mutation_killed_mid_transaction_takes_effect_exactly_once,  # noqa: F401
    test_paused_mutation_whose_lease_was_taken_over_takes_effect_once,  # noqa: F401
    test_three_workers_run_each_of_600_jobs_exactly_once,  # noqa: F401
    test_workers_killed_and_stopped_mid_flow_lose_nothing_and_run_mutations_once,  # noqa: F401
    wait_for_exit,
    wait_until,
)
from tests.support import database_url
from tests.support.pgbouncer import PgBouncer, available

pytestmark = [
    pytest.mark.process,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(connection.vendor != "postgresql", reason="PgBouncer pools PostgreSQL connections only"),
    pytest.mark.skipif(not available(), reason="pgbouncer is not installed (scripts/bootstrap.sh installs it)"),
]
POLLING = "SCHEDULED_ACTIONS_LISTEN_DATABASE to the alias of a direct connection"  # in the one warning


@pytest.fixture(scope="module")
def bouncer():
    settings = connection.settings_dict
    pgbouncer = PgBouncer(settings["HOST"] or "127.0.0.1", int(settings["PORT"] or 5432), settings["USER"]).start()
    yield pgbouncer
    pgbouncer.stop()


class BouncedWorkers(Workers):
    """Worker processes whose database is the test database through ``bouncer``; ``direct_listen``: with
    ``SCHEDULED_ACTIONS_LISTEN_DATABASE`` a direct connection to it."""

    def __init__(self, tmp_path: Path, bouncer: PgBouncer, direct_listen: bool = True):
        super().__init__(tmp_path)
        self.bouncer = bouncer
        self.env = {"DATABASE_URL": bouncer.url(connection.settings_dict["NAME"])}
        if direct_listen:
            self.env["LISTEN_DATABASE_URL"] = database_url()

    def start(self, *args: str, ready: bool = False, **env: str):
        return super().start(*args, ready=ready, **{**self.env, **env})

    def __str__(self) -> str:
        return f"{super().__str__()}\n--- pgbouncer log (last lines):\n    " + "\n    ".join(
            self.bouncer.log_text().splitlines()[-10:]
        )


@pytest.fixture
def workers(transactional_db, tmp_path: Path, bouncer):
    before = logins(bouncer)
    group = BouncedWorkers(tmp_path, bouncer)
    yield group
    group.kill_all()
    assert not group.procs or logins(bouncer) > before, "the workers did not connect through the bouncer"


def warnings_about_polling(log: Path) -> list[str]:
    return [line for line in log.read_text(errors="replace").splitlines() if POLLING in line]


def logins(bouncer: PgBouncer) -> int:
    """Client logins the bouncer logged to the test database."""
    return bouncer.log_text().count(f"login attempt: db={connection.settings_dict['NAME']} ")


def stop(proc, workers: Workers) -> None:
    proc.send_signal(signal.SIGTERM)
    assert wait_for_exit(proc, 30, workers) == 0, workers.describe()


def test_listen_over_the_direct_alias_wakes_a_worker_behind_the_bouncer_at_once(workers):
    proc = workers.start("--concurrency", "1", "--poll-interval", "30", ready=True)
    latencies = _latencies(3, 0.5)
    print(f"\nNOTIFY wake-up latencies behind PgBouncer: {_ms(latencies)}")
    # polling alone would take up to the 30 s poll interval; a NOTIFY wakes it in milliseconds
    assert max(latencies) < 10, f"samples {_ms(latencies)} with --poll-interval 30\n{workers}"
    stop(proc, workers)
    assert warnings_about_polling(workers.logs[0]) == [], workers


def test_without_a_direct_alias_the_worker_polls_and_warns_once(tmp_path, bouncer, transactional_db):
    workers = BouncedWorkers(tmp_path, bouncer, direct_listen=False)
    try:
        proc = workers.start("--concurrency", "1", "--poll-interval", "0.5", ready=True)
        latencies = _latencies(3, 0.3)
        print(f"\nwake-up latencies behind PgBouncer, polling every 0.5 s: {_ms(latencies)}")
        stop(proc, workers)
    finally:
        workers.kill_all()
    warned = warnings_about_polling(workers.logs[0])
    assert len(warned) == 1, workers
    assert "polling every --poll-interval" in warned[0]
    text = workers.logs[0].read_text(errors="replace")
    assert text.count("prepared statements do not work") <= 1, "that warning is given once per process"


def server_settings_through(bouncer: PgBouncer, clients: int) -> set[tuple[str, str]]:
    """The bounds on each of the bouncer's server connections to the test database: ``clients`` open
    transactions at once each hold one of them (the pool has no more)."""
    url = bouncer.url(connection.settings_dict["NAME"]).replace("postgres://", "postgresql://")
    held = [psycopg.connect(url) for _ in range(clients)]
    try:
        return {
            tuple(
                db.execute(
                    "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('lock_timeout')"
                ).fetchone()
            )
            for db in held
        }
    finally:
        for db in held:
            db.close()


def test_the_session_bounds_hold_in_the_workers_transactions_and_stay_off_the_pools_connections(workers, bouncer):
    proc = workers.start("--concurrency", "2", ready=True)
    job_ids = [scheduler.run_after(0, pf.session_bounds, {}) for _ in range(4)]
    wait_until(lambda: all(finished(pk) for pk in job_ids), 30, workers.describe)
    half_a_lease = "30s"  # tests/settings.py: a 60 s lease
    for pk in job_ids:
        done = finished(pk)
        assert done.state == State.SUCCESS, workers.describe()
        assert done.result == {"idle_in_transaction_session_timeout": half_a_lease, "lock_timeout": half_a_lease}
    stop(proc, workers)
    # a session SET would have stayed on the server connections, for the bouncer's next clients
    assert server_settings_through(bouncer, bouncer.pool_size) == {("0", "0")}
