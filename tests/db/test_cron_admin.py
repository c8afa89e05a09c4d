"""Crons in the admin: created from registered functions and validated like code-defined ones; code-defined
crons are read-only except ``enabled``."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions.admin.forms import CronJobForm
from django_scheduled_actions.cron import schedules
from django_scheduled_actions.models import CronJob, ScheduledFunction
from tests.app import cron_functions as cf

pytestmark = pytest.mark.django_db
ADD = reverse("admin:django_scheduled_actions_cronjob_add")
CHANGELIST = reverse("admin:django_scheduled_actions_cronjob_changelist")


def change_url(row: CronJob) -> str:
    return reverse("admin:django_scheduled_actions_cronjob_change", args=[row.pk])


def form_errors(**data) -> dict[str, list[str]]:
    fields = {
        "name": "nightly",
        "function": cf.mark.name,
        "args": '{"label": "n"}',
        "expression": "",
        "interval_seconds": "",
        "timezone": "UTC",
        "enabled": "on",
        **data,
    }
    form = CronJobForm(data=fields)
    return {} if form.is_valid() else {k: list(v) for k, v in form.errors.items()}


def test_the_form_validates_like_code_defined_crons():
    assert form_errors(expression="0 2 * * *", timezone="Europe/Amsterdam") == {}
    assert form_errors(interval_seconds="30") == {}
    assert form_errors(expression="61 * * * *") == {"expression": ["invalid cron expression '61 * * * *'"]}
    assert form_errors(interval_seconds="0.5") == {
        "interval_seconds": ["an interval must be at least one second, got datetime.timedelta(microseconds=500000)"]
    }
    assert form_errors(expression="0 2 * * *", timezone="Mars/Base") == {
        "timezone": ["Select a valid choice. Mars/Base is not one of the available choices."]
    }
    either = {"__all__": ["Give either a cron expression or an interval of at least one second (not both)."]}
    assert form_errors() == either
    assert form_errors(expression="0 2 * * *", interval_seconds="5") == either
    assert form_errors(interval_seconds="5", args='{"label": 5}') == {
        "args": ["argument 'label' of tests.app.cron_functions:mark: expected str, got int (5)"]
    }
    assert form_errors(interval_seconds="5", args="[1]") == {"args": ["arguments must be a JSON object"]}
    assert list(form_errors(interval_seconds="5", function=cf.look.name)) == ["function"]  # queries are no choice


def test_admin_creates_a_cron_that_starts_at_its_next_tick(admin_client):
    response = admin_client.post(
        ADD,
        {
            "name": "nightly",
            "function": cf.mark.name,
            "args": '{"label": "n"}',
            "expression": "30 2 * * *",
            "interval_seconds": "",
            "timezone": "Europe/Amsterdam",
            "enabled": "on",
        },
    )
    assert response.status_code == 302, response.content.decode()
    row = CronJob.objects.get(name="nightly")
    assert (row.source, row.function, row.args, row.expression, row.timezone) == (
        "admin",
        cf.mark.name,
        {"label": "n"},
        "30 2 * * *",
        "Europe/Amsterdam",
    )
    assert row.next_run_at == schedules.for_row(row).next_after(timezone.now() - timedelta(minutes=1))
    page = admin_client.get(CHANGELIST)
    assert "every day at 02:30 (Europe/Amsterdam)" in page.content.decode()


def test_code_defined_crons_only_toggle_enabled(admin_client):
    row = CronJob.objects.create(
        name="from code", source="code", function=cf.ping.name, interval_seconds=60, next_run_at=timezone.now()
    )
    page = admin_client.get(change_url(row)).content.decode()
    assert 'name="enabled"' in page and 'name="function"' not in page and 'name="expression"' not in page
    response = admin_client.post(change_url(row), {"function": cf.mark.name, "interval_seconds": "1"})
    assert response.status_code == 302
    row.refresh_from_db()
    assert (row.enabled, row.function, row.interval_seconds) == (False, cf.ping.name, 60.0)
    assert admin_client.get(reverse("admin:django_scheduled_actions_cronjob_delete", args=[row.pk])).status_code == 403


def test_changelist_actions_enable_disable_and_run_now(admin_client):
    row = CronJob.objects.create(name="c", function=cf.ping.name, interval_seconds=60, enabled=False)
    admin_client.post(CHANGELIST, {"action": "enable_crons", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert row.enabled and row.next_run_at > timezone.now()
    admin_client.post(CHANGELIST, {"action": "run_crons_now", "_selected_action": [row.pk]})
    job = ScheduledFunction.objects.get(cron=row)
    assert (job.name, job.cron_tick, job.args) == (cf.ping.name, None, {})
    admin_client.post(CHANGELIST, {"action": "disable_crons", "_selected_action": [row.pk]})
    row.refresh_from_db()
    assert not row.enabled
    detail = admin_client.get(change_url(row)).content.decode()
    assert "every 1 minute" in detail
