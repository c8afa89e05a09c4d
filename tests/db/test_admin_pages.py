"""The admin's other pages: workers (alive / late / lost / stopped, jobs running), crons (last run and its
state, the enabled toggle) and the dashboard (aggregates only)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions.models import CronJob, ScheduledFunction, State, WorkerProcess
from tests.app import cron_functions as cf
from tests.app import functions as f

pytestmark = pytest.mark.django_db
WORKERS = reverse("admin:django_scheduled_actions_workerprocess_changelist")
CRONS = reverse("admin:django_scheduled_actions_cronjob_changelist")
DASHBOARD = reverse("admin:django_scheduled_actions_dashboard")
JOBS = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")


def worker(worker_id: str, *, expires_in: float = 60, stopped: bool = False, beat_ago: float = 5) -> WorkerProcess:
    now = timezone.now()
    return WorkerProcess.objects.create(
        worker_id=worker_id,
        hostname="host",
        pid=123,
        concurrency=4,
        started_at=now - timedelta(hours=1),
        heartbeat_at=now - timedelta(seconds=beat_ago),
        expires_at=now + timedelta(seconds=expires_in),
        stopped_at=now if stopped else None,
    )


def job(**fields) -> ScheduledFunction:
    return ScheduledFunction.objects.create(
        **{"name": f.bump.name, "kind": "mutation", "args": {"name": "x"}, "scheduled_time": timezone.now(), **fields}
    )


def queries(client, url: str, params: dict | None = None) -> int:
    with CaptureQueriesContext(connection) as captured:
        assert client.get(url, params or {}).status_code == 200
    return len(captured)


# --- workers ---


def test_workers_show_alive_lost_and_stopped_with_their_running_jobs(admin_client):
    worker("w-alive")
    worker("w-lost", expires_in=-30)  # stopped heartbeating without signing off
    worker("w-stopped", expires_in=0, stopped=True)
    for _ in range(2):
        job(state=State.IN_PROGRESS, worker_id="w-alive")
    job(state=State.SUCCESS, worker_id="w-alive")
    job(state=State.IN_PROGRESS, worker_id="w-lost")
    response = admin_client.get(WORKERS)
    rows = {w.worker_id: w for w in response.context["cl"].result_list}
    assert {name: row.running for name, row in rows.items()} == {"w-alive": 2, "w-lost": 1, "w-stopped": 0}
    page = response.content.decode()
    for name, status in (("w-alive", "alive"), ("w-lost", "lost"), ("w-stopped", "stopped")):
        detail = admin_client.get(
            reverse("admin:django_scheduled_actions_workerprocess_change", args=[rows[name].pk])
        ).content.decode()
        assert f"sa-badge-{status}" in detail, name
        assert f"sa-badge-{status}" in page
    assert f"{JOBS}?state__exact=in_progress&amp;worker_id=w-alive" in page

    def status(value: str) -> set[str]:
        return {w.worker_id for w in admin_client.get(WORKERS, {"status": value}).context["cl"].result_list}

    assert (status("alive"), status("lost"), status("stopped")) == ({"w-alive"}, {"w-lost"}, {"w-stopped"})


def test_a_worker_that_missed_two_heartbeats_is_late_before_its_lease_runs_out(admin_client):
    # a 60 s lease is renewed every 20 s: from 40 s after the last heartbeat two were missed (each case is
    # seconds away from the next status, so a slow test run does not move it)
    worker("w-beating", beat_ago=30, expires_in=30)
    worker("w-late", beat_ago=45, expires_in=15)
    worker("w-short-lease-late", beat_ago=24, expires_in=6)  # a 30 s lease (10 s heartbeats): 24 s is late
    worker("w-lost", beat_ago=70, expires_in=-10)
    page = admin_client.get(WORKERS).content.decode()
    rows = {w.worker_id: w for w in admin_client.get(WORKERS).context["cl"].result_list}
    now = timezone.now()
    assert {name: row.status(now) for name, row in rows.items()} == {
        "w-beating": "alive",
        "w-late": "late",
        "w-short-lease-late": "late",
        "w-lost": "lost",
    }
    assert page.count("sa-badge-late") == 2 and "late (missed two heartbeats)" in page

    def status(value: str) -> set[str]:
        return {w.worker_id for w in admin_client.get(WORKERS, {"status": value}).context["cl"].result_list}

    assert (status("alive"), status("late")) == ({"w-beating"}, {"w-late", "w-short-lease-late"})
    dashboard = admin_client.get(DASHBOARD)
    assert dashboard.context["workers"] == {"alive": 1, "late": 2, "lost": 1, "stopped": 0}
    assert "2 late (missed two heartbeats)" in dashboard.content.decode()


def test_the_workers_page_counts_running_jobs_without_a_query_per_row(admin_client):
    worker("w0")
    one = queries(admin_client, WORKERS)
    for i in range(1, 30):
        worker(f"w{i}")
        job(state=State.IN_PROGRESS, worker_id=f"w{i}")
    assert queries(admin_client, WORKERS) == one


def test_workers_are_written_by_workers_only(admin_client):
    row = worker("w")
    assert admin_client.get(reverse("admin:django_scheduled_actions_workerprocess_add")).status_code == 403
    assert (
        admin_client.post(
            reverse("admin:django_scheduled_actions_workerprocess_change", args=[row.pk]), {"hostname": "x"}
        ).status_code
        == 403
    )


# --- crons ---


def test_crons_show_their_last_run_and_its_state_without_a_query_per_row(admin_client):
    now = timezone.now()
    cron = CronJob.objects.create(
        name="daily",
        function=cf.mark.name,
        args={"label": "d"},
        expression="0 9 * * *",
        timezone="Europe/Amsterdam",
        last_run_at=now - timedelta(hours=2),
        next_run_at=now + timedelta(hours=20),
        skipped_count=3,
    )
    job(cron=cron, cron_tick=now - timedelta(days=1), state=State.SUCCESS)
    last = job(cron=cron, cron_tick=now - timedelta(hours=2), state=State.FAILED)
    one = queries(admin_client, CRONS)
    page = admin_client.get(CRONS).content.decode()
    assert "every day at 09:00 (Europe/Amsterdam)" in page
    assert f">#{last.pk}</a> " in page and "sa-badge-failed" in page and "(2 h ago)" in page
    assert '<td class="field-skipped_count">3</td>' in page
    for i in range(20):
        other = CronJob.objects.create(name=f"c{i}", function=cf.ping.name, interval_seconds=60)
        job(cron=other, state=State.SUCCESS)
    assert queries(admin_client, CRONS) == one
    detail = admin_client.get(reverse("admin:django_scheduled_actions_cronjob_change", args=[cron.pk]))
    next_runs = detail.content.decode().split("Next runs")[1]
    assert next_runs.count(" 09:00 CE") == 5  # five run times, in the cron's time zone


def test_the_enabled_toggle_disables_and_reenables_a_cron_from_its_next_tick(admin_client):
    cron = CronJob.objects.create(
        name="c", source="code", function=cf.ping.name, interval_seconds=60, next_run_at=timezone.now()
    )
    form = {"form-TOTAL_FORMS": "1", "form-INITIAL_FORMS": "1", "form-0-id": str(cron.pk), "_save": "Save"}
    assert admin_client.post(CRONS, form).status_code == 302
    cron.refresh_from_db()
    assert not cron.enabled
    assert admin_client.post(CRONS, {**form, "form-0-enabled": "on"}).status_code == 302
    cron.refresh_from_db()
    assert cron.enabled and cron.next_run_at > timezone.now()


# --- dashboard ---


def test_the_dashboard_shows_states_functions_throughput_lag_and_failures(admin_client):
    now = timezone.now()
    job(scheduled_time=now - timedelta(minutes=3))  # overdue: the scheduler lags
    job(scheduled_time=now + timedelta(hours=1))
    for minutes in (1, 2, 2, 90):
        job(state=State.SUCCESS, completed_time=now - timedelta(minutes=minutes))
    failed = job(
        name=f.failing_action.name,
        kind="action",
        state=State.FAILED,
        completed_time=now - timedelta(minutes=5),
        error="Traceback...\nRuntimeError: it broke",
    )
    job(name=f.failing_action.name, kind="action", state=State.FAILED, completed_time=now - timedelta(hours=3))
    response = admin_client.get(DASHBOARD)
    context, page = response.context, response.content.decode()
    assert {row["state"]: row["count"] for row in context["states"]} == {
        "pending": 2,
        "in_progress": 0,
        "success": 4,
        "failed": 2,
        "canceled": 0,
    }
    assert [(row["name"], row["total"]) for row in context["functions"]] == [
        (f.bump.name, 6),
        (f.failing_action.name, 2),
    ]
    assert (context["hour"]["total_ok"], context["hour"]["total_failed"]) == (3, 1)
    assert (context["day"]["total_ok"], context["day"]["total_failed"]) == (4, 2)
    assert context["hour"]["peak"] == 2 and len(context["hour"]["bars"]) == 60 and len(context["day"]["bars"]) == 24
    assert '<svg id="sa-chart-hour"' in page and '<svg id="sa-chart-day"' in page
    assert context["lag"]["overdue"] == 1 and 180 <= context["lag"]["seconds"] < 240
    assert f'href="{JOBS}?overdue=yes"' in page
    assert [row["pk"] for row in context["failures"]] == [failed.pk]
    assert "RuntimeError: it broke" in page
    assert reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[failed.pk]) in page


def test_the_dashboard_is_a_fixed_number_of_queries(admin_client):
    job()
    one = queries(admin_client, DASHBOARD)
    now = timezone.now()
    for i in range(40):
        job(name=f"fn{i % 7}", state=list(State)[i % 5], completed_time=now - timedelta(minutes=i * 7))
        worker(f"w{i}", expires_in=30 - i)
    assert queries(admin_client, DASHBOARD) == one


def test_the_dashboard_needs_the_view_permission_and_is_linked(client, admin_client):
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    client.force_login(user)
    assert client.get(DASHBOARD).status_code == 403
    user.user_permissions.add(Permission.objects.get(codename="view_scheduledfunction"))
    assert client.get(DASHBOARD).status_code == 200
    app_index = reverse("admin:app_list", args=["django_scheduled_actions"])
    for page in (app_index, JOBS):
        assert f'href="{DASHBOARD}"' in admin_client.get(page).content.decode(), page
