"""Crons with real ``runworker`` processes: three workers, a one-second cron, each tick fired once."""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter as Tally
from datetime import timedelta
from pathlib import Path

import pytest

from django_scheduled_actions.models import CronJob, ScheduledFunction, State
from tests.app.crons import EVERY_SECOND
from tests.app.models import Effect
from tests.support import start_worker

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]
WORKERS = 3
TICKS = 8  # seconds of one-second ticks to observe


def wait_until(predicate, timeout: float, what: str, logs: list[Path]):
    deadline = time.monotonic() + timeout
    while not (value := predicate()):
        if time.monotonic() > deadline:
            output = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs)
            pytest.fail(f"timed out after {timeout:g}s waiting for {what}\n{output}")
        time.sleep(0.05)
    return value


def stop(workers: list[subprocess.Popen]) -> list[int | None]:
    for worker in workers:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
    codes = []
    for worker in workers:
        try:
            codes.append(worker.wait(30))
        except subprocess.TimeoutExpired:
            worker.kill()
            codes.append(worker.wait())
    return codes


def test_three_workers_fire_each_tick_of_a_one_second_cron_exactly_once(tmp_path):
    logs = [tmp_path / f"worker-{n}.log" for n in range(WORKERS)]
    workers = [start_worker("--concurrency", "2", log=log, SA_TEST_CRONS="1") for log in logs]
    try:
        cron = wait_until(lambda: CronJob.objects.filter(name=EVERY_SECOND).first(), 60, "the workers to sync", logs)
        runs = ScheduledFunction.objects.filter(cron=cron)
        wait_until(lambda: runs.count() >= TICKS + 1, TICKS + 30, f"{TICKS + 1} runs of the cron", logs)
        CronJob.objects.filter(pk=cron.pk).update(enabled=False)
        wait_until(lambda: not runs.exclude(state=State.SUCCESS).exists(), 30, "every run to finish", logs)
        ticks_before = runs.count()
        time.sleep(1.5)  # disabled: no cron loop may fire another tick (a real second has to pass to show it)
        assert runs.count() == ticks_before
    finally:
        codes = stop(workers)
    assert codes == [0] * WORKERS

    fired = list(runs.order_by("cron_tick").values_list("pk", "cron_tick", "scheduled_time"))
    ticks = [tick for _, tick, _ in fired]
    assert len(ticks) == len(set(ticks)) >= TICKS + 1
    assert all(tick.microsecond == 0 for tick in ticks)
    gaps = [b - a for a, b in zip(ticks, ticks[1:], strict=False)]
    assert gaps == [timedelta(seconds=1)] * len(gaps), "a tick was skipped or fired twice"
    cron.refresh_from_db()
    assert cron.skipped_count == 0
    effects = Tally(Effect.objects.filter(key=EVERY_SECOND).values_list("job_id", flat=True))
    assert effects == {pk: 1 for pk, _, _ in fired}, "each run's body committed exactly once"
    for log in logs:
        text = log.read_text()
        assert "Traceback" not in text and "skipped" not in text, text
