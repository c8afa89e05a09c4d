"""Concurrency limits: ``max_concurrency=N`` on a function, ``SCHEDULED_ACTIONS_QUEUE_CONCURRENCY`` per queue."""

from __future__ import annotations

import signal
from datetime import timedelta
from pathlib import Path

import pytest
from django.core.management import call_command
from django.test import override_settings
from django.utils import timezone

from django_scheduled_actions import internal_action, internal_query, scheduler, workflows
from django_scheduled_actions.checks import check_settings
from django_scheduled_actions.models import ConcurrencyLimit, ScheduledFunction, State
from django_scheduled_actions.store.leases import claim, next_due_time
from django_scheduled_actions.testing import run_job
from django_scheduled_actions.worker.maintenance import recover_expired
from tests.app import functions as f
from tests.app import orchestration_functions as of
from tests.app import workflow_functions as wf
from tests.support import start_worker, wait_until
from tests.support.threads import at_once

pytestmark = pytest.mark.django_db
LEASE = timedelta(minutes=1)
QUEUE = of.LIMITED_QUEUE


def claim_now(limit: int = 20, queues: list[str] | None = None, worker: str = "w") -> list[ScheduledFunction]:
    return claim(worker, limit, timezone.now(), LEASE, queues)[1]


def names(jobs: list[ScheduledFunction]) -> list[str]:
    return sorted(job.name.rsplit(":", 1)[1] for job in jobs)


def finish(jobs: list[ScheduledFunction]) -> None:
    ScheduledFunction.objects.filter(pk__in=[j.pk for j in jobs]).update(state=State.SUCCESS)


def test_a_function_limit_caps_its_running_jobs_and_leaves_others_alone(limited):
    for i in range(5):
        scheduler.run_after(0, limited.limited_mutation, {"i": i})
    for i in range(3):
        scheduler.run_after(0, f.noop_mutation, {"i": i})
    first = claim_now()
    assert names(first) == ["limited_mutation"] * 2 + ["noop_mutation"] * 3
    assert claim_now() == []
    finish([j for j in first if j.name == limited.limited_mutation.name][:1])
    assert names(claim_now()) == ["limited_mutation"]
    assert claim_now() == []


def test_a_queue_limit_caps_the_running_jobs_of_the_queue(limited):
    for _ in range(5):
        scheduler.run_after(0, limited.queued_run, {"path": "-", "seconds": 0})
    scheduler.run_after(0, f.noop_mutation, {"i": 1}, queue=QUEUE)
    with override_settings(SCHEDULED_ACTIONS_QUEUE_CONCURRENCY={QUEUE: 3}):
        assert len(claim_now()) == 3
        assert claim_now() == []
        assert claim_now(queues=["default"]) == []  # the queue's jobs are not served there anyway
    assert len(claim_now()) == 3  # without the setting: no limit


def test_a_job_under_two_limits_waits_for_both(limited):
    for i in range(3):
        scheduler.run_after(0, limited.limited_in_limited_queue, {"i": i}, priority=1)  # function limit 1
    for _ in range(4):
        scheduler.run_after(0, limited.queued_run, {"path": "-", "seconds": 0})
    with override_settings(SCHEDULED_ACTIONS_QUEUE_CONCURRENCY={QUEUE: 3}):
        first = claim_now()
        assert names(first) == ["limited_in_limited_queue", "queued_run", "queued_run"]
        assert first[0].name == limited.limited_in_limited_queue.name  # the higher priority first
        finish([j for j in first if j.name == limited.queued_run.name])
        assert names(claim_now()) == ["queued_run", "queued_run"]  # the function is still at its limit


def test_claims_of_limited_and_unlimited_jobs_come_back_in_priority_order(limited):
    scheduler.run_after(0, f.noop_mutation, {"i": 1}, priority=1)
    scheduler.run_after(0, limited.limited_mutation, {"i": 2}, priority=3)
    scheduler.run_after(0, f.noop_mutation, {"i": 3}, priority=2)
    assert [j.args["i"] for j in claim_now()] == [2, 3, 1]


def test_lease_recovery_frees_the_slots_of_a_lost_worker(limited):
    for i in range(3):
        scheduler.run_after(0, limited.limited_mutation, {"i": i})
    lost = claim_now(worker="lost")
    ScheduledFunction.objects.filter(worker_id="lost").update(lease_expires_at=timezone.now() - timedelta(seconds=1))
    assert len(lost) == 2 and claim_now() == []
    assert recover_expired(timezone.now()) == 2
    assert len(claim_now()) == 2


def test_limited_claims_lock_one_row_per_limit(limited):
    scheduler.run_after(0, limited.limited_mutation, {"i": 1})
    with override_settings(SCHEDULED_ACTIONS_QUEUE_CONCURRENCY={QUEUE: 3}):
        claim_now()
    assert sorted(ConcurrencyLimit.objects.values_list("key", flat=True)) == [
        f"function:{limited.limited_in_limited_queue.name}",
        f"function:{limited.limited_mutation.name}",
        f"function:{limited.limited_run.name}",
        f"queue:{QUEUE}",
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_claims_never_exceed_the_limit(limited):
    """Eight threads claim at the same moment, again and again; none may take the limit's third slot."""
    for round_ in range(5):
        for i in range(10):
            scheduler.run_after(0, limited.limited_mutation, {"i": i})
        claimed: list[ScheduledFunction] = []
        assert (
            at_once([lambda n=n, into=claimed: into.extend(claim_now(limit=3, worker=f"t{n}")) for n in range(8)]) == []
        )
        assert len(claimed) == 2, f"round {round_}: {len(claimed)} jobs claimed under a limit of 2"
        ScheduledFunction.objects.all().delete()


def test_a_worker_waits_for_a_slot_instead_of_spinning(limited):
    for i in range(3):
        scheduler.run_after(0, limited.limited_mutation, {"i": i})
    claim_now()
    now = timezone.now()
    assert next_due_time(None, now, "default") is None  # the one due is waiting for a slot
    later = scheduler.run_after(30, limited.limited_mutation, {"i": 9})
    unlimited = scheduler.run_after(60, f.noop_mutation, {"i": 9})
    jobs = ScheduledFunction.objects.in_bulk([later, unlimited])
    assert next_due_time(None, now, "default") == jobs[later].scheduled_time
    assert next_due_time(["default"], now, "default") == jobs[later].scheduled_time


@pytest.mark.django_db(transaction=True)
def test_a_burst_worker_runs_every_limited_job(limited, tmp_path):
    log = tmp_path / "runs.log"
    for _ in range(6):
        scheduler.run_after(0, limited.limited_run, {"path": str(log), "seconds": 0.05})
    call_command("runworker", burst=True, concurrency=4)
    assert set(ScheduledFunction.objects.values_list("state", flat=True)) == {State.SUCCESS}
    assert peak(log, "limited_run") == 2


def test_max_concurrency_is_a_positive_int_on_mutations_and_actions():
    for bad in (0, -1, True, 1.5, "2"):
        with pytest.raises(ValueError, match="max_concurrency= must be a positive int"):
            internal_action(max_concurrency=bad)(lambda ctx: None)
    with pytest.raises(TypeError, match="not to a query"):
        internal_query(max_concurrency=2)(lambda ctx: None)


def test_the_queue_setting_is_checked():
    assert check_settings() == []
    with override_settings(SCHEDULED_ACTIONS_QUEUE_CONCURRENCY={"emails": 2, "reports": 1}):
        assert check_settings() == []
    cases = [
        ([("emails", 2)], "must be a dict of queue names to positive ints"),
        ({"emails": 0}, "must map each queue to a positive int, got 0 for 'emails'"),
        ({"": 1}, "has a bad queue name '' (a non-empty string of at most 100 characters)"),
    ]
    for value, problem in cases:
        with override_settings(SCHEDULED_ACTIONS_QUEUE_CONCURRENCY=value):
            errors = check_settings()
        assert [(e.id, e.msg) for e in errors] == [
            ("scheduled_actions.E010", f"SCHEDULED_ACTIONS_QUEUE_CONCURRENCY {problem}, got {value!r}.")
        ]
        assert "most jobs of a queue running at once" in errors[0].hint


# --- three real workers: every run logs its start and end; the overlap never exceeds the limit ---


def peak(log: Path, *tags: str) -> int:
    """The most runs of ``tags`` in progress at once; a start at the same instant as an end counts as overlap."""
    events = []
    for line in log.read_text().splitlines():
        kind, at, _job, tag = line.split()
        if tag in tags:
            events.append((float(at), 0 if kind == "start" else 1))
    running = most = 0
    for _, kind in sorted(events):
        running += 1 if kind == 0 else -1
        most = max(most, running)
    return most


def run_with_three_workers(tmp_path: Path, jobs: list[int]) -> None:
    workers = [
        start_worker(
            "--concurrency",
            "4",
            "--no-crons",
            log=tmp_path / f"worker-{n}.log",
            SA_TEST_LIMITS="1",
            DJANGO_SETTINGS_MODULE="tests.limits_settings",
        )
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


@pytest.mark.django_db(transaction=True)
def test_workflow_steps_obey_their_functions_limit_and_queue(limited):
    for i in range(4):
        workflows.start(wf.limited_step, {"function": limited.limited_mutation.name, "args": {"i": i}})
        args = {"path": "-", "seconds": 0}
        workflows.start(wf.limited_step, {"function": limited.limited_run.name, "args": args, "retried": True})
    for _ in range(3):
        workflows.start(wf.limited_step, {"function": limited.queued_run.name, "args": {"path": "-", "seconds": 0}})
    with override_settings(SCHEDULED_ACTIONS_QUEUE_CONCURRENCY={QUEUE: 2}):
        replays = list(ScheduledFunction.objects.filter(state=State.PENDING).values_list("pk", flat=True))
        assert len(replays) == 11
        for job_id in replays:  # each replay schedules its run's step
            run_job(job_id)
        steps = ScheduledFunction.objects.filter(name__startswith="workflow-step:")
        assert set(steps.values_list("queue", flat=True)) == {"default", QUEUE}
        assert steps.filter(queue=QUEUE).count() == 3
        first = claim_now()
        assert (
            names(first)
            == ["limited_mutation"] * 2 + ["limited_run#retry=2,0.25,2.0,3600.0,0"] * 2 + ["queued_run"] * 2
        )
        assert claim_now() == []
        finish([j for j in first if j.name.startswith(f"workflow-step:{limited.limited_run.name}#")][:1])
        assert names(claim_now()) == ["limited_run#retry=2,0.25,2.0,3600.0,0"]
        assert claim_now() == []
