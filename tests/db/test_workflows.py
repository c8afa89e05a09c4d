"""Durable workflows (DESIGN.md section 12): steps run as jobs and journaled, the body replayed from the
journal, durable sleeps and event waits, parallel steps, failures, starts atomic with their transaction,
idempotency keys, cancel, and ``ctx.workflows``; driven by ``run_due_jobs`` as a project's tests would."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import transaction
from django.utils import timezone

from django_scheduled_actions import (
    ArgumentValidationError,
    RetryPolicy,
    StepFailed,
    WorkflowNondeterminism,
    run_action,
    run_mutation,
    signals,
    workflows,
)
from django_scheduled_actions.models import ScheduledFunction, State, WorkflowRun, WorkflowStep
from django_scheduled_actions.testing import (
    assert_workflow_steps,
    run_due_jobs,
    run_job,
    send_workflow_event,
    workflow_steps,
)
from django_scheduled_actions.worker.maintenance import prune, recover_expired
from django_scheduled_actions.workflows import journal
from tests.app import workflow_functions as wf
from tests.app.models import Note
from tests.app.orchestration_functions import tally

pytestmark = pytest.mark.django_db(transaction=True)  # each step commits on its own, as in a worker

RUN, MUT, ACT = "query", "mutation", "action"


def notes() -> list[str]:
    return list(Note.objects.order_by("id").values_list("text", flat=True))


def run_of(run_id: int) -> WorkflowRun:
    return workflows.status(run_id)


def test_the_example_of_the_design_runs_every_line():
    run_id = workflows.start(wf.onboard, {"user_id": 7})
    assert isinstance(run_id, int) and run_of(run_id).state == "pending"
    run_due_jobs()
    assert run_of(run_id).state == "waiting"  # asleep for a day: a row and a due job
    assert_workflow_steps(run_id, [(RUN, wf.get_user, "success"), (ACT, wf.send, "success"), ("sleep", "", "waiting")])
    assert wf.count("sent user7@example.com") == 1
    run_due_jobs(advance=timedelta(days=1, minutes=1))
    assert run_of(run_id).state == "waiting"  # now for the survey
    assert workflow_steps(run_id)[-1] == ("event", "survey", "waiting")
    assert workflows.send_event(run_id, "survey", {"score": 9}) is True
    run_due_jobs(advance=timedelta(days=1, minutes=1))
    run = run_of(run_id)
    assert (run.state, run.result, run.error) == ("success", "onboarded", "")
    assert_workflow_steps(
        run_id,
        [
            (RUN, wf.get_user, "success"),
            (ACT, wf.send, "success"),
            ("sleep", "", "success"),
            ("event", "survey", "success"),
            (ACT, wf.quote, "success"),
            (ACT, wf.quote, "success"),
            (ACT, wf.refuse, "failed"),
            (MUT, wf.note, "success"),
            (MUT, wf.note, "success"),
        ],
    )
    assert notes() == ["unpaid 7", "onboarded 7 {'score': 9}"]
    assert run.steps.get(index=3).result == {"score": 9}
    assert [wf.count("quote a"), wf.count("quote b"), wf.count("refused 7 20")] == [1, 1, 1]


def run_next() -> ScheduledFunction:
    """Run the oldest pending job, due or not (one replay or one step), and return it."""
    job = ScheduledFunction.objects.filter(state=State.PENDING).order_by("id").first()
    assert job is not None, "no pending job"
    run_job(job.pk)
    return job


def test_steps_run_once_as_jobs_and_the_replay_returns_their_journaled_results():
    run_id = workflows.start(wf.chain, {"key": "k", "n": 2})
    assert run_next().name == "django_scheduled_actions.workflows:resume"
    assert run_of(run_id).state == "running"
    step_job = ScheduledFunction.objects.get(pk=run_of(run_id).steps.get(index=0).job_id)
    assert (step_job.name, step_job.kind, step_job.state) == (f"workflow-step:{tally.name}", "mutation", "pending")
    run_due_jobs()
    run = run_of(run_id)
    assert (run.state, run.result) == ("success", [1, "sent k a0", 1, "sent k a1"])
    assert_workflow_steps(
        run_id, [(MUT, tally, "success"), (ACT, wf.send, "success"), (MUT, tally, "success"), (ACT, wf.send, "success")]
    )
    assert [wf.count(n) for n in ("chain k m0", "sent k a0", "chain k m1", "sent k a1")] == [1, 1, 1, 1]
    replays = ScheduledFunction.objects.filter(name="django_scheduled_actions.workflows:resume", state=State.SUCCESS)
    assert replays.count() == 5  # the start, then one after each step: every replay ran the body from the top
    assert [s.result for s in run.steps.order_by("index")] == [1, "sent k a0", 1, "sent k a1"]


def test_an_action_step_is_retried_by_its_step_policy_and_a_step_out_of_retries_fails_the_run():
    ok = workflows.start(wf.retried, {"key": "ok", "failures": 2, "attempts": 3})
    out = workflows.start(wf.retried, {"key": "out", "failures": 3, "attempts": 2})
    for _ in range(4):  # backoff 0: each pass runs the retries due
        run_due_jobs(advance=timedelta(seconds=1))
    assert (run_of(ok).state, run_of(ok).result, wf.count("attempt ok")) == ("success", 3, 3)
    failed = run_of(out)
    assert (failed.state, wf.count("attempt out")) == ("failed", 2)
    assert "StepFailed" in failed.error and f"step {wf.flaky.name} failed" in failed.error
    assert "out attempt 2 fails" in failed.error
    assert_workflow_steps(out, [(ACT, wf.flaky, "failed")])


def test_a_failed_step_raises_step_failed_in_the_body_which_compensates():
    run_id = workflows.start(wf.compensated, {"key": "c1"})
    run_due_jobs()
    assert (run_of(run_id).state, run_of(run_id).result) == ("success", "compensated")
    assert notes() == [f"undo c1: {wf.refuse.name}"]
    assert "card c1 declined" in run_of(run_id).steps.get(index=0).error
    assert wf.count("refused c1") == 1
    failed = StepFailed("app:charge", "Traceback...\nConnectionError: down")
    assert (failed.function, str(failed)) == ("app:charge", "step app:charge failed: ConnectionError: down")


def test_an_uncaught_error_fails_the_run_and_no_later_step_runs():
    stepped = workflows.start(wf.uncaught, {"key": "u"})
    raised = workflows.start(wf.raises, {"key": "r"})
    run_due_jobs()
    assert run_of(stepped).state == "failed" and "card u declined" in run_of(stepped).error
    assert run_of(raised).state == "failed" and "ValueError: no r" in run_of(raised).error
    assert notes() == ["before u", "before r"]
    assert run_of(stepped).result is None and run_of(stepped).finished_at is not None


def test_a_replay_that_asks_for_another_step_than_the_journal_fails_the_run_naming_both():
    first, swallowed = (workflows.start(w, {"key": k}) for w, k in ((wf.nondeterministic, "n"), (wf.swallows, "s")))
    for _ in range(6):  # each run: its replay, its first step, the replay that journals the second step
        run_next()
    assert [workflow_steps(r)[1] for r in (first, swallowed)] == [(MUT, wf.note.name, "running")] * 2
    wf.SWITCH["second"] = "action"  # the code changed while the runs were in flight
    try:
        run_due_jobs()
    finally:
        wf.SWITCH["second"] = "mutation"
    for run_id in (first, swallowed):  # the second swallows every Exception around the step: it fails too
        run = run_of(run_id)
        assert run.state == "failed" and "WorkflowNondeterminism" in run.error
        assert (
            f"asks for step 1 action {wf.send.name}, but the journal holds step 1 mutation {wf.note.name}" in run.error
        )
    assert issubclass(WorkflowNondeterminism, Exception)
    assert wf.count("sent n") == wf.count("sent s") == 0


def test_a_thirty_day_sleep_is_a_row_and_a_due_job_and_takes_no_real_time():
    run_id = workflows.start(wf.sleeper, {"key": "z", "days": 30})
    run_due_jobs()
    assert (run_of(run_id).state, notes()) == ("waiting", ["asleep z"])
    sleep = run_of(run_id).steps.get(index=1)
    wake = ScheduledFunction.objects.get(pk=sleep.job_id)
    assert (wake.state, wake.args) == (State.PENDING, {"run_id": run_id, "wake": 1})
    assert wake.scheduled_time == sleep.wake_at and timedelta(days=29) < sleep.wake_at - sleep.created_at <= timedelta(
        days=30
    )
    assert ScheduledFunction.objects.exclude(state__in=(State.SUCCESS, State.PENDING)).count() == 0
    assert run_due_jobs(advance=timedelta(days=29)) == 0  # not yet
    assert run_of(run_id).state == "waiting"
    run_due_jobs(advance=timedelta(days=30, minutes=1))
    assert (run_of(run_id).state, run_of(run_id).result, notes()) == ("success", 2, ["asleep z", "awake z"])


def test_an_event_sent_before_the_run_waits_is_kept_for_it():
    run_id = workflows.start(wf.waiter, {"name": "go"})
    assert workflows.send_event(run_id, "other", 1) and workflows.send_event(run_id, "go", {"n": 1})
    assert [e["name"] for e in run_of(run_id).inbox] == ["other", "go"]
    run_due_jobs()
    run = run_of(run_id)
    assert (run.state, run.result, run.inbox) == ("success", {"payload": {"n": 1}}, [{"name": "other", "payload": 1}])


def test_an_event_sent_while_the_run_waits_resumes_it_and_ends_its_timeout():
    run_id = workflows.start(wf.waiter, {"name": "go", "timeout": 3600})
    run_due_jobs()
    assert run_of(run_id).state == "waiting"
    timeout_job = run_of(run_id).steps.get(index=0).job_id
    assert send_workflow_event(run_id, "go", [1, 2]) is True
    assert (run_of(run_id).state, run_of(run_id).result) == ("success", {"payload": [1, 2]})
    assert ScheduledFunction.objects.get(pk=timeout_job).state == State.CANCELED
    assert send_workflow_event(run_id, "go", 3) is False  # finished: dropped
    assert_workflow_steps(run_id, [("event", "go", "success"), (MUT, wf.note, "success")])


def test_a_wait_that_times_out_returns_none():
    run_id = workflows.start(wf.waiter, {"name": "go", "timeout": 3600})
    run_due_jobs(advance=timedelta(minutes=30))
    assert run_of(run_id).state == "waiting"
    run_due_jobs(advance=timedelta(hours=2))
    assert (run_of(run_id).state, run_of(run_id).result, notes()) == ("success", {"payload": None}, ["got None"])


def test_parallel_items_run_as_concurrent_jobs_and_return_their_results_in_order():
    run_id = workflows.start(wf.fan, {"vendors": ["c", "a", "b"]})
    run_next()  # the first replay schedules every item at once; the query item runs in it
    items = list(run_of(run_id).steps.order_by("index"))
    assert [(s.kind, s.group, s.state) for s in items] == [(ACT, 0, "running")] * 3 + [(RUN, 0, "success")]
    assert ScheduledFunction.objects.filter(pk__in=[s.job_id for s in items[:3]], state=State.PENDING).count() == 3
    run_due_jobs()
    assert (run_of(run_id).state, run_of(run_id).result) == ("success", [10, 30, 20, 0])


def test_a_retry_of_a_failed_parallel_keeps_its_succeeded_items_and_runs_only_the_failed_ones():
    wf.DECLINING.update({"p b", "p d"})
    run_id = workflows.start(wf.fan_declined, {"key": "p"})
    run_due_jobs()
    run = run_of(run_id)
    assert run.state == "failed" and "p b declined" in run.error  # the first failed item, in order
    assert [s.state for s in run.steps.order_by("index")] == [
        "success",
        "success",
        "failed",
        "success",
        "failed",
        "success",
    ]
    wf.DECLINING.clear()
    assert workflows.retry(run_id) is True
    assert [s.index for s in run.steps.order_by("index")] == [0, 1, 3, 5]  # the failed items dropped, the rest kept
    run_due_jobs()
    run = run_of(run_id)
    assert (run.state, run.result) == ("success", [30, "accepted p b", 10, "accepted p d", 0])
    counts = [
        wf.count(n) for n in ("fan p before", "quote a", "quote c", "declines p b", "declines p d", "fan p after")
    ]
    assert counts == [1, 1, 1, 2, 2, 1]  # no succeeded sibling ran twice; the query item kept its result too
    assert [(s.index, s.group, s.state) for s in run.steps.order_by("index")] == [
        (0, None, "success"),
        *[(i, 1, "success") for i in range(1, 6)],
        (6, None, "success"),
    ]


def test_start_is_atomic_with_the_callers_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        workflows.start(wf.chain, {"key": "rolled back"})
        raise RuntimeError("roll back")
    with pytest.raises(ValueError, match="after starting"):
        run_mutation(wf.start_chain, {"key": "m", "fail": True})
    assert (WorkflowRun.objects.count(), ScheduledFunction.objects.count(), notes()) == (0, 0, [])
    run_id = run_mutation(wf.start_chain, {"key": "m"})
    run_due_jobs()
    assert (run_of(run_id).state, run_of(run_id).result, notes()) == ("success", [1, "sent m a0"], ["started m"])


def test_start_validates_its_arguments_and_takes_an_idempotency_key():
    with pytest.raises(ArgumentValidationError):
        workflows.start(wf.chain, {"key": "k", "n": "three"})
    with pytest.raises(TypeError, match="@workflow"):
        workflows.start(wf.note, {"text": "x"})
    first = workflows.start(wf.chain, {"key": "k", "n": 1}, idempotency_key="order-1")
    assert workflows.start(wf.chain, {"key": "k", "n": 1}, idempotency_key="order-1") == first
    with pytest.raises(ValueError, match="held by a run of tests.chain"):
        workflows.start(wf.sleeper, {"key": "k", "days": 1}, idempotency_key="order-1")
    assert workflows.start(wf.chain, {"key": "k", "n": 1}) != first
    assert WorkflowRun.objects.count() == 2


def test_cancel_ends_the_run_and_its_pending_steps_never_run():
    run_id = workflows.start(wf.chain, {"key": "x"})
    run_next()
    step_job = run_of(run_id).steps.get(index=0).job_id
    assert workflows.cancel(run_id) is True
    run_due_jobs()
    assert (run_of(run_id).state, wf.count("chain x m0")) == ("canceled", 0)
    assert ScheduledFunction.objects.get(pk=step_job).state == State.CANCELED
    assert_workflow_steps(run_id, [(MUT, tally, "canceled")])
    assert workflows.cancel(run_id) is False


def test_cancel_lets_a_running_action_step_finish_and_nothing_runs_after_it():
    run_id = workflows.start(wf.canceled_midway, {"key": "cm"}, idempotency_key="cm")
    run_due_jobs()
    assert (run_of(run_id).state, wf.count("finished cm"), notes()) == ("canceled", 1, [])
    job = ScheduledFunction.objects.get(pk=run_of(run_id).steps.get(index=0).job_id)
    assert (job.state, job.result) == (State.CANCELED, "finished")  # its result kept, its state canceled
    assert_workflow_steps(run_id, [(ACT, wf.cancel_own_run, "canceled")])


def test_ctx_workflows_starts_and_signals_from_an_action():
    run_id = run_action(wf.start_and_signal, {"key": "ping"})
    run_due_jobs()
    assert (run_of(run_id).state, run_of(run_id).result) == ("success", {"payload": {"from": "action"}})


def test_a_step_whose_worker_died_before_journaling_it_is_journaled_by_recovery():
    run_id = workflows.start(wf.chain, {"key": "lost", "n": 1})
    run_due_jobs()  # both steps and the run finish
    run_id = workflows.start(wf.compensated, {"key": "lost"})
    run_next()
    step = run_of(run_id).steps.get(index=0)
    ScheduledFunction.objects.filter(pk=step.job_id).update(state=State.FAILED, error="WorkerLost: gone")
    assert recover_expired() == 0  # no lease to recover; the step is journaled all the same
    assert run_of(run_id).steps.get(index=0).state == "failed"
    run_due_jobs()
    assert (run_of(run_id).state, run_of(run_id).result) == ("success", "compensated")
    assert wf.count("refused lost") == 0  # the action never ran here: its job was failed for it


def test_finished_runs_are_pruned_with_the_jobs_retention():
    done = workflows.start(wf.raises, {"key": "p"})
    asleep = workflows.start(wf.sleeper, {"key": "p", "days": 90})
    run_due_jobs()
    later = timezone.now() + timedelta(days=40)
    prune(later, timedelta(days=30))
    assert list(WorkflowRun.objects.values_list("pk", flat=True)) == [asleep]
    assert not WorkflowStep.objects.filter(run_id=done).exists()
    assert WorkflowStep.objects.filter(run_id=asleep).count() == 2


def test_a_replay_failed_on_a_database_error_is_retried_and_never_leaves_the_run_running(monkeypatch):
    # backoff from a minute (1 s in the product): a pass of run_due_jobs on a loaded machine can take a second
    monkeypatch.setattr(journal, "REPLAY_RETRY", RetryPolicy(max_attempts=5, initial_backoff=60.0, max_backoff=600.0))
    wf.DATABASE_FAILURES.clear()
    mended = workflows.start(wf.db_flaky, {"key": "m", "failures": 2})
    broken = workflows.start(wf.db_flaky, {"key": "b", "failures": 99})
    run_due_jobs()  # the first step of each; then their replays fail, undone, and are due again later
    assert [run_of(r).state for r in (mended, broken)] == ["running", "running"]
    retries = ScheduledFunction.objects.filter(name="django_scheduled_actions.workflows:resume", state=State.PENDING)
    assert sorted(j.args["failures"] for j in retries) == [1, 1]
    assert ScheduledFunction.objects.filter(state=State.FAILED).count() == 0  # each replay's job succeeded
    for _ in range(6):  # backoff 60, 120, 240, 480 s (with jitter): each pass runs the replays due by then
        run_due_jobs(advance=timedelta(hours=1))
    run = run_of(mended)
    assert (run.state, run.result, wf.DATABASE_FAILURES["m"]) == ("success", 1 + 3, 2)  # the notes' counts
    run = run_of(broken)
    assert (run.state, wf.DATABASE_FAILURES["b"]) == ("failed", 5)
    assert "the replay failed 5 times on a database error" in run.error and "sa_no_such_table" in run.error
    assert notes() == ["first m", "first b", "second m"]  # nothing of a failed replay stayed
    assert not ScheduledFunction.objects.filter(state=State.PENDING).exists()


RESUME = "django_scheduled_actions.workflows:resume"


@pytest.mark.parametrize("what", ["SystemExit", "GeneratorExit", "Halt"])
def test_a_body_raising_a_base_exception_fails_the_run_as_an_exception_does(what):
    run_id = workflows.start(wf.halts, {"key": what, "what": what})
    run_due_jobs()
    run = run_of(run_id)
    assert (run.state, run.finished_at is not None) == ("failed", True)
    assert f"{what} from the body of {what}" in run.error
    assert_workflow_steps(run_id, [(MUT, wf.note, "success")])
    assert notes() == [f"before {what}"]
    assert not ScheduledFunction.objects.exclude(state=State.SUCCESS).exists()  # its replay's job succeeded
    assert workflows.retry(run_id) is True  # and a retry replays it, as after an uncaught exception
    run_due_jobs()
    assert run_of(run_id).state == "failed" and notes() == [f"before {what}"]


def test_a_replay_interrupted_by_keyboard_interrupt_is_undone_and_replayed_later(monkeypatch):
    monkeypatch.setattr(journal, "REPLAY_RETRY", RetryPolicy(max_attempts=5, initial_backoff=60.0, max_backoff=600.0))
    wf.RAISED.discard("ctrl-c")
    run_id = workflows.start(wf.halts, {"key": "ctrl-c", "what": "KeyboardInterrupt", "once": True})
    with pytest.raises(KeyboardInterrupt):
        run_due_jobs()
    assert run_of(run_id).state == "running" and notes() == ["before ctrl-c"]
    assert ScheduledFunction.objects.filter(name=RESUME, state=State.FAILED).count() == 1  # the interrupted one
    [again] = ScheduledFunction.objects.filter(name=RESUME, state=State.PENDING)
    assert again.args == {"run_id": run_id, "failures": 1} and again.scheduled_time > timezone.now()
    run_due_jobs(advance=timedelta(hours=1))
    run = run_of(run_id)
    assert (run.state, run.result, notes()) == ("success", "done", ["before ctrl-c", "after ctrl-c"])


def test_a_replay_interrupted_every_time_fails_the_run_once_its_attempts_are_spent(monkeypatch):
    monkeypatch.setattr(journal, "REPLAY_RETRY", RetryPolicy(max_attempts=3, initial_backoff=60.0, max_backoff=600.0))
    run_id = workflows.start(wf.halts, {"key": "always", "what": "KeyboardInterrupt"})
    for _ in range(3):
        with pytest.raises(KeyboardInterrupt):
            run_due_jobs(advance=timedelta(hours=1))
    run = run_of(run_id)
    assert (run.state, "the replay's job failed 3 times" in run.error) == ("failed", True)
    assert not ScheduledFunction.objects.filter(state=State.PENDING).exists()
    run_due_jobs(advance=timedelta(hours=2))
    assert run_of(run_id).state == "failed" and notes() == ["before always"]


@pytest.fixture
def announced():
    seen: list[tuple] = []

    def receiver(sender, signal, **payload):
        name = "started" if signal is signals.workflow_started else "finished"
        seen.append((name, sender, payload))

    signals.workflow_started.connect(receiver)
    signals.workflow_finished.connect(receiver)
    yield seen
    signals.workflow_started.disconnect(receiver)
    signals.workflow_finished.disconnect(receiver)


def test_runs_announce_their_start_and_their_end_on_commit(announced):
    with pytest.raises(RuntimeError), transaction.atomic():
        workflows.start(wf.chain, {"key": "gone"})
        raise RuntimeError("roll back")
    with transaction.atomic():
        done = workflows.start(wf.chain, {"key": "s", "n": 1})
        assert announced == []  # not before the commit
    failed, canceled = workflows.start(wf.raises, {"key": "f"}), workflows.start(wf.sleeper, {"key": "c", "days": 1})
    assert workflows.start(wf.chain, {"key": "s", "n": 1}, idempotency_key="k") == workflows.start(
        wf.chain, {"key": "s", "n": 1}, idempotency_key="k"
    )
    keyed = WorkflowRun.objects.get(idempotency_key="k").pk
    run_due_jobs()
    workflows.cancel(canceled)
    workflows.cancel(canceled)  # finished already: nothing to announce
    started = [
        (p["run_id"], p["workflow"], p["state"], p["result"], p["error"]) for n, _, p in announced if n == "started"
    ]
    assert started == [
        (r, name, "pending", None, "")
        for r, name in (
            (done, wf.chain.name),
            (failed, wf.raises.name),
            (canceled, wf.sleeper.name),
            (keyed, wf.chain.name),
        )
    ]
    finished = {p["run_id"]: (p["workflow"], p["state"], p["result"]) for n, _, p in announced if n == "finished"}
    assert finished == {
        done: (wf.chain.name, "success", [1, "sent s a0"]),
        keyed: (wf.chain.name, "success", [2, "sent s a0"]),
        failed: (wf.raises.name, "failed", None),
        canceled: (wf.sleeper.name, "canceled", None),
    }
    errors = {p["run_id"]: p["error"] for n, _, p in announced if n == "finished"}
    assert "ValueError: no f" in errors[failed] and errors[done] == errors[canceled] == ""
    assert {sender for _, sender, _ in announced} == {WorkflowRun}


def test_a_retried_run_is_announced_as_started_again_and_finishes_once_more(announced):
    run_id = workflows.start(wf.uncaught, {"key": "again"})
    run_due_jobs()
    assert workflows.retry(run_id) is True and workflows.retry(run_id) is False  # running now: not failed
    run_due_jobs()
    seen = [(name, p["state"]) for name, _, p in announced if p["run_id"] == run_id]
    assert seen == [("started", "pending"), ("finished", "failed"), ("started", "running"), ("finished", "failed")]
    assert wf.count("refused again") == 2 and notes() == ["before again"]


def test_concurrent_runs_replay_without_conflicting():
    """A worker of 4 threads drives 40 runs at once: each replay locks its run and reads its journal, and
    the runs' journals share index pages; under serializable isolation the replays conflicted (a
    rollback per step, each replay run again). Each run replays 4 times (start, after each of its 3
    steps), with under 5% more in all, and every step's row exists once."""
    wf.REPLAYS.clear()
    for n in range(40):
        workflows.start(wf.three_notes, {"n": n})
    call_command("runworker", burst=True, concurrency=4)
    assert set(WorkflowRun.objects.values_list("state", flat=True)) == {WorkflowRun.State.SUCCESS}
    expected = sorted(f"{n}:{k}" for n in range(40) for k in range(3))
    assert sorted(Note.objects.values_list("text", flat=True)) == expected
    replays = sum(wf.REPLAYS.values())
    assert replays <= 40 * 4 * 1.05, f"{replays} replays for 160 resumes"
