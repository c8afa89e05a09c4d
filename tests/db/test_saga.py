"""Sagas: steps with compensations, journaled; a failed step undoes the finished ones newest first, each at
most once, also when a crash interrupts the saga or its rollback and it runs again."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions import NonRetryableError, Saga, SagaRolledBack, run_action, scheduler
from django_scheduled_actions.models import Saga as SagaRow
from django_scheduled_actions.models import SagaStep, ScheduledFunction, State
from django_scheduled_actions.scheduling import changes
from django_scheduled_actions.testing import run_due_jobs
from django_scheduled_actions.worker.maintenance import recover_expired
from tests.app import functions as f
from tests.app import orchestration_functions as of
from tests.app.models import Counter, Note

pytestmark = pytest.mark.django_db(transaction=True)  # each step commits on its own, as in a worker


def runs(name: str) -> int:
    return Counter.objects.filter(name=name).values_list("value", flat=True).first() or 0


def undone() -> list[str]:
    return list(Note.objects.order_by("id").values_list("text", flat=True))


def saga(key: str) -> SagaRow:
    return SagaRow.objects.get(key=key)


def steps(key: str) -> list[tuple[str, str]]:
    return list(SagaStep.objects.filter(saga__key=key).order_by("position").values_list("name", "state"))


def three(key: str, **kwargs):
    return run_action(of.three_steps, {"key": key, **kwargs})


@pytest.mark.parametrize("mutations", [False, True], ids=["action steps", "mutation steps"])
def test_a_saga_runs_its_steps_once_and_a_rerun_returns_the_journal(mutations):
    assert three("s", mutations=mutations) == [1, 2, 3]
    assert (saga("s").state, steps("s")) == ("completed", [("a", "done"), ("b", "done"), ("c", "done")])
    assert three("s", mutations=mutations) == [1, 2, 3]
    assert [runs(f"run s {n}") for n in "abc"] == [1, 1, 1]
    assert undone() == []


@pytest.mark.parametrize("undo", ["action", "mutation"])
def test_a_failed_step_undoes_the_finished_ones_newest_first(undo):
    with pytest.raises(ConnectionError, match="step s c fails"):
        three("s", fail_step="c", undo={"a": undo, "b": undo})
    assert undone() == ["undo s b 2", "undo s a 1"]
    assert (saga("s").state, steps("s")) == ("rolled_back", [("a", "compensated"), ("b", "compensated")])
    assert "step s c fails" in saga("s").error

    with pytest.raises(SagaRolledBack, match="rolled back"):  # final: a retry does not run it again
        three("s")
    assert issubclass(SagaRolledBack, NonRetryableError)
    assert [runs(f"run s {n}") for n in "abc"] == [1, 1, 1] and undone() == ["undo s b 2", "undo s a 1"]


def test_a_failing_mutation_step_rolls_back_and_is_not_journaled():
    with pytest.raises(ValueError, match="step s b fails"):
        three("s", fail_step="b", mutations=True)
    assert runs("run s b") == 0  # its transaction rolled back, journal entry included
    assert steps("s") == [("a", "compensated")] and undone() == ["undo s a 1"]


def test_a_crash_after_a_step_resumes_after_the_journaled_steps():
    with pytest.raises(of.Crash):
        three("s", crash_after="b", mutations=True)
    assert saga("s").state == "running" and steps("s") == [("a", "done"), ("b", "done")]
    assert three("s", mutations=True) == [1, 2, 3]
    assert [runs(f"run s {n}") for n in "abc"] == [1, 1, 1]


def test_an_action_compensation_interrupted_by_a_crash_never_runs_again():
    with pytest.raises(of.Crash):
        three("s", fail_step="c", undo={"b": "crash"})
    assert saga("s").state == "rolling_back"
    assert steps("s") == [("a", "done"), ("b", "compensating")]

    with pytest.raises(SagaRolledBack, match="failed"):  # the retry finishes the rollback without b's
        three("s", fail_step="c", undo={"b": "crash"})
    assert runs("undo s b") == 1 and runs("undo s a") == 1
    assert (saga("s").state, steps("s")) == ("failed", [("a", "compensated"), ("b", "compensating")])


def test_a_mutation_compensation_interrupted_by_a_crash_runs_once_in_the_retry():
    of.CRASHED.discard("s b")
    with pytest.raises(of.Crash):
        three("s", fail_step="c", undo={"b": "crash mutation"})
    assert runs("undo s b") == 0 and steps("s") == [("a", "done"), ("b", "done")]  # rolled back with it
    with pytest.raises(SagaRolledBack):
        three("s", fail_step="c")
    assert undone() == ["undo s b 2", "undo s a 1"] and runs("undo s b") == 1
    assert saga("s").state == "rolled_back"


def test_a_failing_compensation_does_not_stop_the_others():
    with pytest.raises(ConnectionError, match="step s c fails"):
        three("s", fail_step="c", undo={"b": "fail"})
    assert undone() == ["undo s a 1"] and runs("undo s b") == 1
    assert (saga("s").state, steps("s")) == ("failed", [("a", "compensated"), ("b", "comp_failed")])
    assert "cannot undo s b" in SagaStep.objects.get(name="b").error


def test_a_scheduled_saga_with_retries_keeps_one_journal_per_job():
    job_id = scheduler.run_after(0, of.three_steps_retried, {"fail_step": "c"})
    run_due_jobs()
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.state, job.attempts) == (State.FAILED, 2)  # the retry met a rolled-back saga: no third try
    assert "SagaRolledBack" in job.error
    assert saga(f"job:{job_id}").state == "rolled_back"
    assert [runs(f"run {job_id} {n}") for n in "abc"] == [1, 1, 1]
    assert undone() == [f"undo {job_id} b 2", f"undo {job_id} a 1"]


def test_misuse_is_refused():
    from django_scheduled_actions.calls.run import ActionCtx, MutationCtx

    with pytest.raises(TypeError, match="runs inside an action"):
        Saga(MutationCtx(None, "default"), key="k")
    with pytest.raises(TypeError, match="outside a job needs a key"):
        Saga(ActionCtx(None, "default"))
    with Saga(ActionCtx(None, "default"), key="k") as s:
        with pytest.raises(TypeError, match="a mutation or an action"):
            s.step("q", f.count, {"name": "x"})
        s.step("one", of.step_mutation, {"name": "k", "value": 1})
        with pytest.raises(ValueError, match="two steps named 'one'"):
            s.step("one", of.step_mutation, {"name": "k", "value": 1})
        with pytest.raises(ValueError, match="argument 'value'"):  # checked before the step runs
            s.step(
                "two",
                of.step_mutation,
                {"name": "k", "value": 2},
                compensate=of.undo_mutation,
                compensate_args={"name": "k", "value": "x"},
            )
    assert runs("run k") == 1 and saga("k").state == "completed"


def test_the_admin_shows_a_saga_and_its_steps(admin_client):
    with pytest.raises(ConnectionError):
        three("s", fail_step="c")
    page = admin_client.get(reverse("admin:django_scheduled_actions_saga_change", args=[saga("s").pk]))
    assert page.status_code == 200
    assert b"rolled back" in page.content and b"compensated" in page.content
    assert admin_client.get(reverse("admin:django_scheduled_actions_saga_changelist")).status_code == 200


def test_an_abandoned_saga_is_marked_so_and_a_retry_from_the_admin_resumes_its_journal():
    job_id = scheduler.run_after(0, of.three_steps_crashing_once, {"marker": "abandoned"})
    run_due_jobs()
    assert ScheduledFunction.objects.get(pk=job_id).state == State.FAILED  # no retry left
    assert (saga(f"job:{job_id}").state, steps(f"job:{job_id}")) == ("running", [("a", "done"), ("b", "done")])
    recover_expired()
    abandoned = saga(f"job:{job_id}")
    assert (abandoned.state, abandoned.job_id) == ("abandoned", job_id) and abandoned.finished_at is not None
    assert f"its job #{job_id} ended" in abandoned.error
    [outcome] = changes.retry(ScheduledFunction.objects.filter(pk=job_id))  # what the admin's retry calls
    assert saga(f"job:{job_id}").state == "abandoned"
    recover_expired()  # its retry is pending: not abandoned again
    run_due_jobs()
    retried = ScheduledFunction.objects.get(pk=outcome.new_job_id)
    assert (retried.state, retried.result) == (State.SUCCESS, [1, 2, 3])
    resumed = saga(f"job:{job_id}")  # one saga for the job and its retry
    assert (resumed.state, resumed.job_id, resumed.finished_at is not None) == ("completed", retried.pk, True)
    assert [runs(f"run {job_id} a"), runs(f"run {job_id} b"), runs(f"run {retried.pk} c")] == [1, 1, 1]
    assert runs(f"run {retried.pk} a") == runs(f"run {retried.pk} b") == 0  # never repeated
    assert SagaRow.objects.count() == 1


def test_a_running_saga_whose_job_runs_or_waits_for_a_retry_is_not_abandoned():
    job_id = scheduler.run_after(0, of.three_steps_crashing_once, {"marker": "waits"})
    run_due_jobs()
    ScheduledFunction.objects.filter(pk=job_id).update(state=State.PENDING)  # as a retry by its policy
    assert recover_expired() == 0 and saga(f"job:{job_id}").state == "running"
    run_due_jobs()
    assert saga(f"job:{job_id}").state == "completed"
    recover_expired()
    assert saga(f"job:{job_id}").state == "completed"


@pytest.mark.parametrize("key", ["", "order:7"], ids=["default key", "custom key"])
@pytest.mark.parametrize("ended", ["crashed", "worker lost", "canceled"])
def test_a_saga_whose_job_ended_for_good_is_abandoned_whatever_its_key(key, ended):
    """Abandonment follows the saga's job (``Saga.job_id``, the job that entered it last), not its key: a
    saga with a key of its own is abandoned as a default-keyed one is, and a retry of its job resumes it."""
    marker = f"{ended} {key}"
    job_id = scheduler.run_after(0, of.three_steps_crashing_once, {"marker": marker, "key": key})
    run_due_jobs()  # the body "dies" after step b: the job fails (no retry left), the saga stays running
    name = key or f"job:{job_id}"
    assert (saga(name).state, saga(name).job_id, steps(name)) == ("running", job_id, [("a", "done"), ("b", "done")])
    jobs = ScheduledFunction.objects.filter(pk=job_id)
    if ended == "worker lost":  # as if its worker had died while the body ran: the lease ran out
        long_ago = timezone.now() - timedelta(hours=1)
        jobs.update(
            state=State.IN_PROGRESS,
            worker_id="gone",
            lease_expires_at=long_ago,
            started_at=long_ago,
            completed_time=None,
        )
    elif ended == "canceled":
        jobs.update(state=State.CANCELED)
    recover_expired()
    job = jobs.get()
    assert job.state == {"crashed": State.FAILED, "worker lost": State.FAILED, "canceled": State.CANCELED}[ended]
    if ended == "worker lost":
        assert "worker lost" in job.error
    abandoned = saga(name)
    assert (abandoned.state, abandoned.job_id, abandoned.finished_at is not None) == ("abandoned", job_id, True)
    assert f"its job #{job_id} ended" in abandoned.error
    [outcome] = changes.retry(jobs)  # the admin's retry
    run_due_jobs()
    assert ScheduledFunction.objects.get(pk=outcome.new_job_id).result == [1, 2, 3]
    assert (saga(name).state, saga(name).job_id) == ("completed", outcome.new_job_id)
    prefix = key or job_id
    assert [runs(f"run {prefix} a"), runs(f"run {prefix} b")] == [1, 1]  # never repeated
    assert SagaRow.objects.count() == 1
