"""The basic admin registration: pages render, jobs are read-only, cancel needs its permission."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Permission, User
from django.urls import reverse

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import functions as f

pytestmark = pytest.mark.django_db
CHANGELIST = "admin:django_scheduled_actions_scheduledfunction_changelist"


@pytest.fixture
def staff(client):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    for codename in ("view_scheduledfunction", "change_scheduledfunction"):
        user.user_permissions.add(Permission.objects.get(codename=codename))
    client.force_login(user)
    return user


@pytest.mark.parametrize("model", ["scheduledfunction", "cronjob", "idempotencykey"])
def test_changelists_render(admin_client, model):
    scheduler.run_after(0, f.bump, {"name": "x"}, idempotency_key="k")
    response = admin_client.get(reverse(f"admin:django_scheduled_actions_{model}_changelist"))
    assert response.status_code == 200


def test_job_detail_is_read_only_and_jobs_cannot_be_added(admin_client):
    job_id = scheduler.run_after(0, f.bump, {"name": "x"})
    page = admin_client.get(reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[job_id]))
    assert page.status_code == 200 and b'name="name"' not in page.content
    add = admin_client.get(reverse("admin:django_scheduled_actions_scheduledfunction_add"))
    assert add.status_code == 403


def test_search_by_function_name_and_filter_by_state(admin_client):
    scheduler.run_after(0, f.bump, {"name": "x"})
    scheduler.cancel(scheduler.run_after(0, f.record, {"key": "x"}))
    page = admin_client.get(reverse(CHANGELIST), {"q": "record", "state__exact": "canceled"})
    assert page.context["cl"].result_count == 1


def test_cancel_action_cancels_open_jobs_and_reports_skipped(admin_client):
    pending = scheduler.run_after(60, f.bump, {"name": "x"})
    done = scheduler.run_after(0, f.bump, {"name": "x"})
    ScheduledFunction.objects.filter(pk=done).update(state=State.SUCCESS)
    response = admin_client.post(reverse(CHANGELIST), {"action": "cancel_jobs", "_selected_action": [pending, done]},
                                 follow=True)
    assert "Canceled 1 job(s); skipped 1 already finished." in response.content.decode()
    assert dict(ScheduledFunction.objects.values_list("pk", "state")) == {pending: State.CANCELED,
                                                                         done: State.SUCCESS}


def test_cancel_needs_the_cancel_permission(client, staff):
    job_id = scheduler.run_after(60, f.bump, {"name": "x"})
    page = client.get(reverse(CHANGELIST))
    assert page.context["action_form"] is None  # no action this user may take
    client.post(reverse(CHANGELIST), {"action": "cancel_jobs", "_selected_action": [job_id]})
    assert ScheduledFunction.objects.get(pk=job_id).state == State.PENDING
    staff.user_permissions.add(Permission.objects.get(codename="cancel_scheduledfunction"))
    client.post(reverse(CHANGELIST), {"action": "cancel_jobs", "_selected_action": [job_id]})
    assert ScheduledFunction.objects.get(pk=job_id).state == State.CANCELED
