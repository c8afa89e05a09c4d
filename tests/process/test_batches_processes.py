"""The real-worker-process tests of tests/db/test_batches.py (same fixtures and helpers)."""

from __future__ import annotations

from collections import Counter as Tally

import pytest

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import Batch, ScheduledFunction
from tests.app import orchestration_functions as of
from tests.app.models import Effect
from tests.db.test_batches import done_notes, items, on_complete_runs_total, open_jobs
from tests.support import start_worker, wait_until

pytestmark = pytest.mark.django_db


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_three_workers_count_every_item_once_and_fire_each_on_complete_once(tmp_path):
    sizes = [1, 2, 3, 50, 400, 1500]  # 10,000 items work too (35-60 s through three workers): too slow for CI
    batch_ids = {
        scheduler.batch(
            of.item_mutation, items(n, failing=(0,)), on_complete=of.batch_done, on_complete_args={"label": f"size {n}"}
        ): n
        for n in sizes
    }
    workers = [start_worker("--concurrency", "4", "--no-crons", log=tmp_path / f"w{n}.log") for n in range(3)]
    try:
        wait_until(
            lambda: on_complete_runs_total() == len(sizes) and not open_jobs(),
            timeout=240,
            message="every batch to finish and its on_complete to run",
        )
    finally:
        for worker in workers:
            worker.terminate()
        for worker in workers:
            worker.wait(30)
    for batch_id, n in batch_ids.items():
        batch = Batch.objects.get(pk=batch_id)
        assert (batch.succeeded, batch.failed, batch.canceled) == (n - 1, 1, 0)
        assert f"size {n} batch={batch_id} succeeded={n - 1} failed=1 canceled=0" in done_notes()
    assert Tally(Effect.objects.values_list("key", flat=True)) == {f"done size {n}": 1 for n in sizes}
    assert not ScheduledFunction.objects.filter(batch__isnull=False, batch_counted=False).exists()
