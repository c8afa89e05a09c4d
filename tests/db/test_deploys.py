"""Rolling deploys (deploys.py), in-process on every database: a worker leaves the jobs of functions it does
not know to a worker that does, claims them once, and fails them with FunctionNotFound only when no live
worker serving their queue has known them for SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE since they fell due.
The same with real worker processes of two releases: tests/process/test_processes.py."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions import scheduler, signals
from django_scheduled_actions.models import ScheduledFunction, State, WorkerProcess
from django_scheduled_actions.worker.worker import Worker
from tests.app import functions as f

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects
NEW = "tests.release3.functions:not_deployed_yet"  # a function of a release no process here runs
JOBS = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
DASHBOARD = reverse("admin:django_scheduled_actions_dashboard")


def unknown_job(kind: str = "mutation", due_ago: float = 0, **fields) -> ScheduledFunction:
    at = timezone.now() - timedelta(seconds=due_ago)
    return Jobs.create(**{"name": NEW, "kind": kind, "args": {}, "scheduled_time": at, "created_at": at, **fields})


def other_worker(
    worker_id: str,
    *,
    knows: bool = True,
    beat_ago: float = 1,
    lease: float = 60,
    queues: list[str] | None = None,
    unknown: list[str] | None = None,
) -> WorkerProcess:
    """A worker row as another release's worker writes it."""
    now = timezone.now()
    beat = now - timedelta(seconds=beat_ago)
    return WorkerProcess.objects.create(
        worker_id=worker_id,
        hostname="h",
        pid=1,
        concurrency=1,
        queues=queues or [],
        started_at=beat,
        heartbeat_at=beat,
        expires_at=beat + timedelta(seconds=lease),
        functions={NEW: "mutation"} if knows else {},
        unknown=unknown or [],
    )


def burst() -> Worker:
    worker = Worker(burst=True, worker_id="old")
    assert worker.run() == 0
    return worker


def row(job: ScheduledFunction) -> tuple:
    job.refresh_from_db()
    return job.state, job.attempts, job.started_at, job.token, job.worker_id


def test_a_job_of_an_unknown_function_is_handed_back_once_and_the_worker_goes_on():
    left = [unknown_job("mutation"), unknown_job("action"), unknown_job("action")]
    known = scheduler.run_after(0, f.bump, {"name": "known"})
    worker = burst()  # a burst worker ends: it does not claim the left jobs again and again
    assert [row(job) for job in left] == [(State.PENDING, 0, None, "", "")] * 3  # as their claim found them
    assert Jobs.get(pk=known).state == State.SUCCESS
    assert worker.claims.claimed_total == 4  # each claimed once
    assert worker.repertoire.skip() == {NEW}
    published = WorkerProcess.objects.get(worker_id="old")
    assert published.unknown == [NEW] and published.functions[f.bump.name] == "mutation"
    assert published.functions[f.failing_action.name] == "action"
    assert f.count.name not in published.functions  # a query is never a job


def test_a_job_that_no_release_can_run_fails_at_once():
    bad_kind = unknown_job("banana")
    burst()
    assert row(bad_kind)[0] == State.FAILED


@override_settings(SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=0)
def test_a_grace_of_zero_fails_it_at_once():
    job = unknown_job()
    burst()
    assert row(job)[0] == State.FAILED and f"no function is registered as '{NEW}'" in job.error


@pytest.mark.parametrize(
    ("knower", "state"),
    [
        (None, State.FAILED),  # nobody knew it for the grace
        ({"beat_ago": 1}, State.PENDING),  # a live worker knows it
        ({"beat_ago": 1, "queues": ["elsewhere"]}, State.FAILED),  # ... but does not serve its queue
        ({"beat_ago": 100, "lease": 60}, State.PENDING),  # lost 100 s ago: within the grace
        ({"beat_ago": 700, "lease": 60}, State.FAILED),  # lost 700 s ago
        ({"beat_ago": 1, "knows": False}, State.FAILED),  # alive, of the old release
    ],
)
def test_past_the_grace_it_fails_unless_a_worker_serving_its_queue_knew_it_meanwhile(knower, state):
    if knower is not None:
        other_worker("other", **knower)
    job = unknown_job(due_ago=700)  # the grace (600 s) is over, counted from when it fell due
    burst()
    assert row(job)[0] == state
    if state == State.FAILED:
        assert "FunctionNotFound" in job.error


def test_a_left_job_fails_when_the_grace_is_over_counted_from_when_it_fell_due():
    failures = []
    receiver = lambda sender, job, error, will_retry, **kw: failures.append((job.pk, type(error).__name__, will_retry))  # noqa: E731
    signals.job_failed.connect(receiver)
    try:
        job = unknown_job()
        worker = burst()
        due = job.scheduled_time
        assert worker.repertoire.fail_past_grace(due + timedelta(seconds=599)) == 0
        assert row(job)[0] == State.PENDING
        assert worker.repertoire.fail_past_grace(due + timedelta(seconds=601)) == 1
    finally:
        signals.job_failed.disconnect(receiver)
    assert row(job)[0] == State.FAILED and "no live worker has known the mutation" in job.error
    assert failures == [(job.pk, "FunctionNotFound", False)]


def test_the_admin_shows_jobs_no_live_worker_knows(admin_client):
    other_worker("old", knows=False, unknown=[NEW])  # an old worker met it
    waiting = unknown_job()
    page = admin_client.get(JOBS).content.decode()
    assert page.count("no live worker knows this function") == 1 and "sa-badge-unrunnable" in page
    detail = admin_client.get(reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[waiting.pk]))
    assert "no live worker knows this function" in detail.content.decode()
    dashboard = admin_client.get(DASHBOARD)
    assert dashboard.context["unrunnable"] == [{"name": NEW, "kind": "mutation", "queue": "default", "count": 1}]
    assert "no live worker knows this function" in dashboard.content.decode()

    other_worker("new", knows=True)  # the new release's worker is up
    assert "no live worker knows this function" not in admin_client.get(JOBS).content.decode()
    assert admin_client.get(DASHBOARD).context["unrunnable"] == []
