"""Durable workflows (DESIGN.md section 12): steps run as jobs and journaled, the body replayed from the
journal, durable sleeps and event waits, parallel steps, failures, starts atomic with their transaction,
idempotency keys, cancel, and ``ctx.workflows``; driven by ``run_due_jobs`` as a project's tests would."""

from __future__ import annotations

from datetime import timedelta

import pytest

from django_scheduled_actions import workflows
from django_scheduled_actions.models import WorkflowRun
from django_scheduled_actions.testing import (
    assert_workflow_steps,
    run_due_jobs,
    workflow_steps,
)
from tests.app import workflow_functions as wf
from tests.app.models import Note

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
    assert_workflow_steps(
        run_id, [(RUN, wf.get_user, "success"), (ACT, wf.send, "success"), ("sleep", "", "waiting")]
    )
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
