"""Rate limits across real worker processes: three workers share one bucket per function."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import orchestration_functions as of
from tests.db.test_limits import peak
from tests.support import start_worker, wait_until

JITTER = 2  # starts one claim's jobs may drift into the next window: their threads take them a little later


def starts(log: Path, tag: str) -> list[float]:
    return sorted(
        float(at)
        for kind, at, _job, t in (line.split() for line in log.read_text().splitlines())
        if kind == "start" and t == tag
    )


def most_in_a_second(times: list[float]) -> int:
    """The most starts within any window of one second."""
    most, first = 0, 0
    for last, at in enumerate(times):
        while at - times[first] > 1.0:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_with_three_workers(tmp_path: Path, jobs: list[int]) -> None:
    workers = [
        start_worker("--concurrency", "4", "--no-crons", log=tmp_path / f"worker-{n}.log", SA_TEST_RATES="1")
        for n in range(3)
    ]
    try:
        wait_until(
            lambda: ScheduledFunction.objects.filter(pk__in=jobs, state=State.SUCCESS).count() == len(jobs),
            timeout=120,
            message=f"{len(jobs)} jobs to succeed",
        )
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        codes = [worker.wait(30) for worker in workers]
    assert codes == [0, 0, 0]


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_three_workers_start_a_rate_limited_functions_jobs_at_its_rate(rated, tmp_path):
    log = tmp_path / "runs.log"
    jobs = [scheduler.run_after(0, rated.rated_run, {"path": str(log)}) for _ in range(60)]  # 10/s
    jobs += [scheduler.run_after(0, of.unlimited_run, {"path": str(log), "seconds": 0}) for _ in range(30)]
    run_with_three_workers(tmp_path, jobs)
    rated_starts, other_starts = starts(log, "rated_run"), starts(log, "unlimited_run")
    assert len(rated_starts) == 60  # none failed, none lost
    assert rated_starts[-1] - rated_starts[0] >= 5.0 - 0.2  # 10 at once (the burst), then 50 at 10/s
    assert most_in_a_second(rated_starts) <= 10 + 10 + JITTER  # the burst and a second's refill
    assert other_starts[-1] < rated_starts[0] + 2.0, "the other function's jobs did not wait behind the limited one"


@pytest.mark.process
@pytest.mark.django_db(transaction=True)
def test_a_rate_and_max_concurrency_hold_together_across_workers(rated, tmp_path):
    log = tmp_path / "runs.log"
    jobs = [scheduler.run_after(0, rated.rated_and_limited_run, {"path": str(log), "seconds": 0.05}) for _ in range(40)]
    run_with_three_workers(tmp_path, jobs)
    times = starts(log, "rated_and_limited_run")
    assert len(times) == 40
    assert times[-1] - times[0] >= 3.0 - 0.2  # 10/s: a burst of 10, then 30 more
    assert most_in_a_second(times) <= 10 + 10 + JITTER
    assert peak(log, "rated_and_limited_run") <= 2
