"""A worker process holds at most ``--db-connections`` database connections, whatever its concurrency: 60 sync
threads and 300 async actions in flight on 4 connections, counted by the server while the jobs drain. Each
job's effect is written once. PostgreSQL (pg_stat_activity) and MariaDB (the processlist); SQLite has no
server to count on."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest
from django.db.models import Count

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import async_functions as af
from tests.app import functions as f
from tests.app.models import Effect
from tests.support import start_worker
from tests.support.connections import other_connections

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]
LIMIT = 4
JOBS = 600  # of each kind


def drain_counting_connections(log: Path, *args: str, **env: str) -> tuple[int, int]:
    """Run a worker (``runworker *args``, logging to ``log``) until every job succeeded, it exits, or two
    minutes pass, then SIGTERM it; returns the most connections it held at once, and its exit code."""
    before = other_connections()
    worker = start_worker(*args, log=log, **env)
    peak, deadline = 0, time.monotonic() + 120
    try:
        while time.monotonic() < deadline and worker.poll() is None:
            peak = max(peak, other_connections() - before)
            if not ScheduledFunction.objects.exclude(state=State.SUCCESS).exists():
                break
            time.sleep(0.05)
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(30)
    return peak, code


def test_a_worker_holds_at_most_its_db_connections_whatever_its_concurrency(vendor, tmp_path):
    if vendor == "sqlite":
        pytest.skip("SQLite has no server whose connections could be counted")
    scheduler.run_many(af.waits_then_records_sync, [{"i": i, "wait": 0.05} for i in range(JOBS)])
    scheduler.run_many(af.waits_then_records, [{"i": i, "wait": 0.05} for i in range(JOBS)])
    log = tmp_path / "worker.log"
    peak, _code = drain_counting_connections(
        log, "--concurrency", "60", "--async-concurrency", "300", "--db-connections", str(LIMIT), "--no-crons"
    )
    outcomes = dict(ScheduledFunction.objects.values_list("state").annotate(n=Count("id")))
    assert outcomes == {State.SUCCESS: 2 * JOBS}, (outcomes, log.read_text()[-3000:])
    assert Effect.objects.count() == Effect.objects.values("key").distinct().count() == 2 * JOBS
    assert 0 < peak <= LIMIT, f"the worker held {peak} connections, more than --db-connections {LIMIT}"


def test_a_worker_whose_threads_have_lanes_holds_at_most_its_db_connections(vendor, tmp_path):
    """``--concurrency 4 --db-connections 8``: each executor thread keeps a connection of its own (a lane)
    for its mutations, the others stay with the worker's connections; together still at most 8."""
    if vendor == "sqlite":
        pytest.skip("SQLite has no server whose connections could be counted")
    scheduler.run_many(f.record, [{"key": f"m{i}"} for i in range(JOBS)])
    scheduler.run_many(af.waits_then_records_sync, [{"i": i, "wait": 0.01} for i in range(JOBS)])
    log = tmp_path / "worker.log"
    peak, _code = drain_counting_connections(log, "--concurrency", "4", "--db-connections", "8", "--no-crons")
    outcomes = dict(ScheduledFunction.objects.values_list("state").annotate(n=Count("id")))
    assert outcomes == {State.SUCCESS: 2 * JOBS}, (outcomes, log.read_text()[-3000:])
    assert Effect.objects.count() == Effect.objects.values("key").distinct().count() == 2 * JOBS
    assert 0 < peak <= 8, f"the worker held {peak} connections, more than --db-connections 8"
