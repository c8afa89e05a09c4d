"""The test helpers shipped for users (django_scheduled_actions.testing), used as a user would."""

from __future__ import annotations

from contextlib import contextmanager
from datetime import timedelta

import pytest

from django_scheduled_actions import run_mutation, scheduler
from django_scheduled_actions.models import ScheduledFunction
from django_scheduled_actions.testing import (
    assert_not_scheduled,
    assert_scheduled,
    run_due_jobs,
    run_scheduled_immediately,
)
from tests.app import functions as f
from tests.app.models import Counter, Effect, Note


@pytest.mark.django_db  # inside one transaction per test, as Django's TestCase does
def test_run_due_jobs_runs_jobs_and_their_children_in_a_test_transaction():
    run_mutation(f.add_note_and_schedule, {"text": "hi"})
    assert_scheduled(f.record, {"key": "hi"})
    assert run_due_jobs() == 1
    assert_not_scheduled(f.record, {"key": "hi"})
    assert list(Effect.objects.values_list("key", flat=True)) == ["hi"]
    assert Note.objects.count() == 1


@pytest.mark.django_db
def test_run_due_jobs_advances_a_fake_clock():
    scheduler.run_after(timedelta(hours=2), f.bump, {"name": "later"})
    assert run_due_jobs() == 0
    assert run_due_jobs(advance=timedelta(hours=1)) == 0
    assert run_due_jobs(advance=timedelta(hours=2, seconds=1)) == 1
    assert Counter.objects.get(name="later").value == 1


@pytest.mark.django_db
def test_run_due_jobs_runs_actions_with_their_guarantees():
    job_id = scheduler.run_after(0, f.flaky_action, {"name": "fl", "fail_times": 1})
    assert run_due_jobs() == 2  # the retry (no backoff) is due again at once
    assert ScheduledFunction.objects.get(pk=job_id).attempts == 2


@pytest.mark.django_db
def test_assert_scheduled_reports_what_is_there():
    scheduler.run_after(0, f.bump, {"name": "a"})
    assert len(assert_scheduled(f.bump, count=1)) == 1
    with pytest.raises(
        AssertionError,
        match=r"expected a job of tests.app.functions:record .* found 0; "
        r"scheduled: \[\('tests.app.functions:bump', \{'name': 'a'\}",
    ):
        assert_scheduled(f.record)
    with pytest.raises(AssertionError, match="expected 0 job"):
        assert_not_scheduled(f.bump, {"name": "a"})


@pytest.mark.django_db(transaction=True)
def test_run_scheduled_immediately_runs_each_job_on_commit():
    with run_scheduled_immediately():
        run_mutation(f.add_note_and_schedule, {"text": "now", "delay": 3600})
        assert list(Effect.objects.values_list("key", flat=True)) == ["now"]
    run_mutation(f.add_note_and_schedule, {"text": "after"})
    assert Effect.objects.count() == 1  # the mode ended with the block
    assert_scheduled(f.record, {"key": "after"})


@pytest.mark.django_db(transaction=True)
def test_run_scheduled_immediately_can_leave_delayed_jobs():
    with run_scheduled_immediately(include_delayed=False):
        run_mutation(f.add_note_and_schedule, {"text": "later", "delay": 3600})
    assert_scheduled(f.record, {"key": "later"})


@contextmanager
def eager_inside_capture(capture):
    with capture(execute=True), run_scheduled_immediately():
        yield


@contextmanager
def capture_inside_eager(capture):
    with run_scheduled_immediately(), capture(execute=True):
        yield


@pytest.mark.django_db  # a TestCase transaction: nothing commits, captureOnCommitCallbacks runs the callbacks
@pytest.mark.parametrize("nesting", [capture_inside_eager, eager_inside_capture])
def test_run_scheduled_immediately_runs_the_jobs_in_a_test_case_whatever_the_nesting(
    nesting, django_capture_on_commit_callbacks
):
    with nesting(django_capture_on_commit_callbacks):
        run_mutation(f.add_note_and_schedule, {"text": "now"})
        scheduler.run_after(0, f.schedule_after_sleep, {"seconds": 0, "name": "child"})
    assert list(Effect.objects.values_list("key", flat=True)) == ["now"]
    assert Counter.objects.get(name="child").value == 1, "the job a job scheduled ran too"
    assert not ScheduledFunction.objects.filter(state="pending").exists()
    with django_capture_on_commit_callbacks(execute=True):
        run_mutation(f.add_note_and_schedule, {"text": "after"})
    assert_scheduled(f.record, {"key": "after"})  # the mode ended with the block


# --- workflows, inside the test's transaction as in a user's TestCase ---


@pytest.mark.django_db  # one transaction for the whole test: nothing commits
def test_workflow_helpers_drive_a_thirty_day_sleep_and_an_event_in_a_test_transaction():
    from django_scheduled_actions import workflows
    from django_scheduled_actions.testing import assert_workflow_steps, send_workflow_event, workflow_steps
    from tests.app import workflow_functions as wf

    asleep = workflows.start(wf.sleeper, {"key": "t", "days": 30})
    waiting = workflows.start(wf.waiter, {"name": "go"})
    run_due_jobs()
    assert workflow_steps(asleep) == [("mutation", wf.note.name, "success"), ("sleep", "", "waiting")]
    assert run_due_jobs(advance=timedelta(days=29, hours=23)) == 0  # the clock is passed, nothing sleeps
    assert run_due_jobs(advance=timedelta(days=30, minutes=1)) == 3  # the wake-up, the last step, the end
    assert (workflows.status(asleep).state, workflows.status(asleep).result) == ("success", 2)
    assert_workflow_steps(
        asleep, [("mutation", wf.note, "success"), ("sleep", "", "success"), ("mutation", wf.note, "success")]
    )
    assert send_workflow_event(waiting, "go", {"n": 1}) is True
    assert workflows.status(waiting).result == {"payload": {"n": 1}}
    with pytest.raises(AssertionError, match=r"expected the steps \[\('event', 'go', 'waiting'\)\], found"):
        assert_workflow_steps(waiting, [("event", "go", "waiting")])
