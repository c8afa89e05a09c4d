"""Workflows under real worker processes killed with ``kill -9`` at random moments: every run ends
``success``, each mutation step's effect is there once, each action step ran at most as often as its job
was started (its retry policy), and no step or job is left behind."""

from __future__ import annotations

import collections
import os
import random
import signal
import subprocess
import time

import pytest

from django_scheduled_actions import workflows
from django_scheduled_actions.models import ScheduledFunction, State, WorkflowRun, WorkflowStep
from tests.app import workflow_functions as wf

pytestmark = pytest.mark.django_db(transaction=True)

RUNS, STEPS_PER_KIND = 12, 3


def _kill(worker: subprocess.Popen) -> None:
    if worker.poll() is None:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(30)


def _states() -> str:
    runs = collections.Counter(WorkflowRun.objects.values_list("state", flat=True))
    steps = list(WorkflowStep.objects.exclude(state="success").values_list("run_id", "index", "state"))
    return f"runs: {runs}; unfinished steps: {steps}"


@pytest.mark.process
def test_workflows_survive_workers_killed_at_random_moments(tmp_path):
    from tests.support import start_worker, wait_until

    run_ids = [workflows.start(wf.durable, {"key": f"r{i}", "n": STEPS_PER_KIND}) for i in range(RUNS)]
    rng = random.Random(18)
    workers: list[subprocess.Popen] = []
    kills = 0

    def start(n: int) -> None:
        log = tmp_path / f"worker-{n}.log"
        workers.append(start_worker("--concurrency", "2", "--no-crons", log=log, SCHEDULED_ACTIONS_LEASE_SECONDS="2"))

    def finished() -> bool:
        return not WorkflowRun.objects.exclude(state__in=("success", "failed", "canceled")).exists()

    try:
        start(0)
        start(1)
        for n in range(2, 8):  # six kills, each of a random live worker, each replaced
            time.sleep(rng.uniform(0.5, 2.0))
            if finished():
                break
            victim = rng.choice([w for w in workers if w.poll() is None])
            _kill(victim)
            kills += 1
            start(n)
        wait_until(finished, timeout=240, message="every run to finish", describe=_states)
    finally:
        for worker in workers:
            _kill(worker)

    assert kills >= 2  # the kills landed while runs were in flight
    for run in WorkflowRun.objects.filter(pk__in=run_ids):
        assert (run.state, run.error) == ("success", "")
        key = run.args["key"]
        expected = [1, f"sent dur {key} a0", 1, f"sent dur {key} a1", 1, f"sent dur {key} a2"]
        assert run.result == expected
        assert [wf.count(f"dur {key} m{i}") for i in range(STEPS_PER_KIND)] == [1] * STEPS_PER_KIND
        steps = list(run.steps.order_by("index"))
        assert [s.state for s in steps] == ["success"] * (2 * STEPS_PER_KIND + 1)
        for s in steps:
            if s.kind == "action":
                job = ScheduledFunction.objects.get(pk=s.job_id)
                assert 1 <= wf.count(f"sent {s.args['key']}") <= job.attempts, (s, job.attempts)
    assert not ScheduledFunction.objects.exclude(state__in=(State.SUCCESS, State.CANCELED)).exists()
