"""Workflow runs in the admin: the changelist (filters, search), a run's steps as a timeline, the actions
cancel and retry from the failed step (what ``workflows.cancel`` / ``workflows.retry`` do, gated by the jobs'
cancel and retry permissions), and the dashboard's runs per state."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from django_scheduled_actions import scheduler, workflows
from django_scheduled_actions.models import ScheduledFunction, State, WorkflowRun
from django_scheduled_actions.testing import assert_workflow_steps, run_due_jobs
from tests.app import workflow_functions as wf

pytestmark = pytest.mark.django_db(transaction=True)  # the runs' steps commit on their own
CHANGELIST = reverse("admin:django_scheduled_actions_workflowrun_changelist")
DASHBOARD = reverse("admin:django_scheduled_actions_dashboard")


def run_url(pk: int) -> str:
    return reverse("admin:django_scheduled_actions_workflowrun_change", args=[pk])


def listed(client, params: dict | None = None) -> list[int]:
    response = client.get(CHANGELIST, params or {})
    assert response.status_code == 200
    return sorted(run.pk for run in response.context["cl"].result_list)


def act(client, action: str, *run_ids: int) -> list[str]:
    response = client.post(CHANGELIST, {"action": action, "_selected_action": list(run_ids)}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def actions(client) -> set[str]:
    response = client.get(CHANGELIST)
    assert response.status_code == 200
    form = response.context["action_form"]
    return set() if form is None else {name for name, _label in form.fields["action"].choices if name}


def state(run_id: int) -> str:
    return WorkflowRun.objects.get(pk=run_id).state


@pytest.fixture
def runs():
    """One run in each state but pending: success, failed (a step out of retries), waiting, canceled."""
    done = workflows.start(wf.chain, {"key": "a", "n": 1})
    # a key without digits: a search by a run's id must not match it too
    failed = workflows.start(wf.uncaught, {"key": "u"}, idempotency_key="order-seven")
    asleep = workflows.start(wf.sleeper, {"key": "z", "days": 3})
    canceled = workflows.start(wf.sleeper, {"key": "c", "days": 3})
    run_due_jobs()
    workflows.cancel(canceled)
    return {"success": done, "failed": failed, "waiting": asleep, "canceled": canceled}


def test_the_changelist_filters_by_state_and_workflow_and_searches_by_id_and_key(admin_client, runs):
    assert listed(admin_client) == sorted(runs.values())
    assert listed(admin_client, {"state__exact": "failed"}) == [runs["failed"]]
    assert listed(admin_client, {"name": wf.sleeper.name}) == [runs["waiting"], runs["canceled"]]
    assert listed(admin_client, {"q": str(runs["waiting"])}) == [runs["waiting"]]
    assert listed(admin_client, {"q": "order-seven"}) == [runs["failed"]]
    page = admin_client.get(CHANGELIST).content.decode()
    assert 'class="sa-badge sa-badge-waiting"' in page and 'class="sa-badge sa-badge-failed"' in page


def test_a_runs_page_shows_its_steps_as_a_timeline(admin_client, runs):
    page = admin_client.get(run_url(runs["failed"])).content.decode()
    rows = re.findall(r'<tr class="sa-step sa-step-(\w+)">(.*?)</tr>', page, re.S)
    assert [state for state, _row in rows] == ["success", "failed"]
    first, second = (row for _state, row in rows)
    assert wf.note.name in first and "<code>1</code>" in first  # the note's result: the count of notes
    assert wf.refuse.name in second and "NonRetryableError: card u declined" in second
    step_job = WorkflowRun.objects.get(pk=runs["failed"]).steps.get(index=1).job_id
    assert f'href="{reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[step_job])}"' in second
    assert "<td>1</td>" in second  # its job's attempts
    assert "StepFailed" in page  # the run's error, among its fields
    asleep = admin_client.get(run_url(runs["waiting"])).content.decode()
    assert re.search(r'sa-step-waiting">.*?until \d{4}-', asleep, re.S)


def test_cancel_calls_workflows_cancel_and_skips_finished_runs(admin_client, runs):
    messages = act(admin_client, "cancel_runs", runs["waiting"], runs["success"])
    assert messages == [
        f"Canceled 1 run(s): #{runs['waiting']}.",
        f"Skipped 1 run(s) already finished: #{runs['success']}.",
    ]
    assert (state(runs["waiting"]), state(runs["success"])) == ("canceled", "success")
    wake = WorkflowRun.objects.get(pk=runs["waiting"]).steps.get(index=1).job_id
    assert ScheduledFunction.objects.get(pk=wake).state == State.CANCELED


def test_retry_from_the_failed_step_keeps_the_finished_steps_and_runs_the_failed_one_again(admin_client, runs):
    failed = runs["failed"]
    messages = act(admin_client, "retry_runs", failed, runs["success"])
    assert messages == [
        f"Retried from the failed step 1 run(s): #{failed}.",
        f"Skipped 1 run(s) not failed: #{runs['success']}.",
    ]
    run = WorkflowRun.objects.get(pk=failed)
    assert (run.state, run.error, run.finished_at) == ("running", "", None)
    assert_workflow_steps(failed, [("mutation", wf.note, "success")])  # the failed step's entry is dropped
    run_due_jobs()
    assert state(failed) == "failed"  # the card is still declined: the step ran again, the note did not
    assert (wf.count("refused u"), wf.Note.objects.filter(text="before u").count()) == (2, 1)
    assert_workflow_steps(failed, [("mutation", wf.note, "success"), ("action", wf.refuse, "failed")])


def test_the_jobs_retry_refuses_a_workflow_steps_job_and_points_to_the_runs_retry(admin_client, runs):
    """A new job retrying a step's job would not be journaled as the step: the run would never learn its
    result. The jobs' retry skips it, naming the run and its own retry; other jobs it retries as before."""
    failed = runs["failed"]
    step_job = WorkflowRun.objects.get(pk=failed).steps.get(index=1).job_id
    plain = scheduler.run_after(0, wf.refuse, {"key": "plain"})
    run_due_jobs()
    assert ScheduledFunction.objects.get(pk=step_job).state == ScheduledFunction.objects.get(pk=plain).state == "failed"
    jobs = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
    response = admin_client.post(jobs, {"action": "retry_jobs", "_selected_action": [step_job, plain]}, follow=True)
    assert response.status_code == 200
    [retried] = ScheduledFunction.objects.filter(retry_of__isnull=False)
    assert retried.retry_of_id == plain  # the plain job only
    assert [str(m) for m in response.context["messages"]] == [
        f"Retried 1 job(s): #{plain} as #{retried.pk}.",
        f"Skipped 1 job(s): #{step_job} (it runs step 1 of workflow run #{failed}: retry the run from its "
        'failed step instead, with the workflow runs\' action "Retry selected workflow runs from their failed step").',
    ]
    run_due_jobs()
    assert (state(failed), wf.count("refused u")) == ("failed", 1)  # the step did not run again
    assert act(admin_client, "retry_runs", failed) == [f"Retried from the failed step 1 run(s): #{failed}."]
    run_due_jobs()
    assert wf.count("refused u") == 2 and state(failed) == "failed"


def test_retry_refuses_runs_not_failed_and_keeps_a_journal_without_a_failed_step():
    run_id = workflows.start(wf.compensated, {"key": "p"})
    run_due_jobs()  # refused, compensated by a note: the run succeeds; nothing to retry
    assert workflows.retry(run_id) is False
    run_id = workflows.start(wf.raises, {"key": "r"})
    run_due_jobs()
    assert state(run_id) == "failed"
    assert workflows.retry(run_id) is True  # no failed step: the whole journal is kept, the body replays
    run_due_jobs(advance=timedelta(seconds=1))
    assert state(run_id) == "failed" and wf.Note.objects.filter(text="before r").count() == 1


def test_cancel_and_retry_need_the_jobs_permissions(client, runs):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename="view_workflowrun"))
    client.force_login(user)
    assert actions(client) == set()
    user.user_permissions.add(*Permission.objects.filter(codename="cancel_scheduledfunction"))
    assert actions(client) == {"cancel_runs"}
    assert act(client, "retry_runs", runs["failed"]) == ["No action selected."]  # refused, as not offered
    assert state(runs["failed"]) == "failed"
    user.user_permissions.add(*Permission.objects.filter(codename="retry_scheduledfunction"))
    assert actions(client) == {"cancel_runs", "retry_runs"}


def test_runs_are_written_by_the_workflows_only(admin_client, runs):
    assert admin_client.get(reverse("admin:django_scheduled_actions_workflowrun_add")).status_code == 403
    response = admin_client.post(run_url(runs["failed"]), {"state": "success"})
    assert response.status_code == 403 and state(runs["failed"]) == "failed"


def test_the_dashboard_counts_runs_per_state(admin_client, runs):
    workflows.start(wf.chain, {"key": "p"})
    page = admin_client.get(DASHBOARD).content.decode()
    section = page[page.index('id="sa-runs"') :]
    found = dict(
        re.findall(
            r'sa-run-state-(\w+)".*?<span class="sa-number">(\d+)</span>', section[: section.index("</div>")], re.S
        )
    )
    assert found == {"pending": "1", "running": "0", "waiting": "1", "success": "1", "failed": "1", "canceled": "1"}
    assert f'href="{CHANGELIST}?state__exact=failed"' in section
