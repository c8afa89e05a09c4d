"""A worker on PostgreSQL behind Django's own connection pool (``OPTIONS: {"pool": ...}``, psycopg_pool):
it starts (Django refuses persistent connections beside a pool), runs mutations, sync actions calling
``ctx`` and async actions, each once, holds no more than the pool's 8 connections, and stops cleanly."""

from __future__ import annotations

import pytest
from django.db.models import Count

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import async_functions as af
from tests.app import functions as f
from tests.app.models import Effect
from tests.process.test_connection_bounds import drain_counting_connections

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]
JOBS = 200  # of each kind


def test_a_worker_behind_djangos_pool_runs_every_job_once_within_the_pool(vendor, tmp_path):
    if vendor != "postgresql":
        pytest.skip("Django's connection pool is PostgreSQL's")
    scheduler.run_many(f.record, [{"key": f"m{i}"} for i in range(JOBS)])
    scheduler.run_many(af.waits_then_records_sync, [{"i": i, "wait": 0.01} for i in range(JOBS)])
    scheduler.run_many(af.waits_then_records, [{"i": i, "wait": 0.01} for i in range(JOBS)])
    log = tmp_path / "worker.log"
    peak, code = drain_counting_connections(log, "--concurrency", "4", "--no-crons", TEST_DJANGO_POOL="1")
    outcomes = dict(ScheduledFunction.objects.values_list("state").annotate(n=Count("id")))
    assert outcomes == {State.SUCCESS: 3 * JOBS}, (outcomes, log.read_text()[-3000:])
    assert Effect.objects.count() == Effect.objects.values("key").distinct().count() == 3 * JOBS
    assert 0 < peak <= 8, f"the worker held {peak} connections, more than its pool's 8"
    assert code == 0, log.read_text()[-3000:]
