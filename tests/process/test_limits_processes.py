"""The real-worker-process tests of tests/db/test_limits.py (same fixtures and helpers)."""

from __future__ import annotations

import pytest

from django_scheduled_actions import scheduler
from tests.app import orchestration_functions as of
from tests.db.test_limits import QUEUE, peak, run_with_three_workers

pytestmark = pytest.mark.django_db


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_three_workers_never_run_more_than_max_concurrency(limited, tmp_path):
    log = tmp_path / "runs.log"
    jobs = [
        scheduler.run_after(0, fn, {"path": str(log), "seconds": 0.3})
        for _ in range(12)
        for fn in (limited.limited_run, of.unlimited_run)
    ]
    run_with_three_workers(tmp_path, jobs)
    assert peak(log, "limited_run") == 2
    assert peak(log, "unlimited_run") >= 3, "the workers ran the unlimited jobs side by side"


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_three_workers_never_run_more_of_a_queue_than_its_limit(limited, tmp_path):
    log = tmp_path / "runs.log"
    jobs = [scheduler.run_after(0, limited.queued_run, {"path": str(log), "seconds": 0.3}) for _ in range(12)]
    jobs += [
        scheduler.run_after(0, limited.limited_run, {"path": str(log), "seconds": 0.3}, queue=QUEUE) for _ in range(6)
    ]
    run_with_three_workers(tmp_path, jobs)
    assert peak(log, "queued_run", "limited_run") == 3  # SCHEDULED_ACTIONS_QUEUE_CONCURRENCY in limits_settings
    assert peak(log, "limited_run") <= 2
