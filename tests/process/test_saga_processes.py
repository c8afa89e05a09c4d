"""The real-worker-process tests of tests/db/test_saga.py (same fixtures and helpers)."""

from __future__ import annotations

import pytest

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import orchestration_functions as of
from tests.db.test_saga import runs, saga, steps

pytestmark = pytest.mark.django_db(transaction=True)  # each step commits on its own, as in a worker


@pytest.mark.process
def test_a_worker_killed_while_undoing_a_step_never_undoes_it_twice(tmp_path):
    import os
    import signal

    from tests.support import start_worker, wait_until

    marker = tmp_path / "undoing-b"
    job_id = scheduler.run_after(0, of.saga_killed_while_undoing, {"marker": str(marker)})
    workers = []

    def start(log: str) -> None:
        workers.append(
            start_worker("--concurrency", "1", "--no-crons", log=tmp_path / log, SCHEDULED_ACTIONS_LEASE_SECONDS="2")
        )

    def kill_all() -> None:
        for worker in workers:
            if worker.poll() is None:
                os.killpg(worker.pid, signal.SIGKILL)
                worker.wait(30)

    try:
        start("first.log")
        wait_until(marker.exists, timeout=60, message="the compensation of step b to start")
        kill_all()  # kill -9 while undoing b
        start("second.log")
        wait_until(
            lambda: ScheduledFunction.objects.get(pk=job_id).state == State.FAILED,
            timeout=60,
            message="the retried saga to finish its rollback",
        )
    finally:
        kill_all()
    job = ScheduledFunction.objects.get(pk=job_id)
    assert job.attempts == 2 and "SagaRolledBack" in job.error
    name = f"killed {job_id}"
    assert (runs(f"undo {name} b"), runs(f"undo {name} a")) == (1, 1)  # b's undo was not run again
    assert [runs(f"run {name} {n}") for n in "abc"] == [1, 1, 1]
    assert (saga(f"job:{job_id}").state, steps(f"job:{job_id}")) == (
        "failed",
        [("a", "compensated"), ("b", "compensating")],
    )
