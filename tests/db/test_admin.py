"""The jobs' admin: read-only pages, a changelist of a fixed number of queries, and the actions cancel / retry /
run now, each reporting what it did and what it skipped, each gated by its permission."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import Permission, User
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import Batch, CronJob, IdempotencyKey, ScheduledFunction, State
from django_scheduled_actions.scheduling import changes
from tests.app import functions as f

pytestmark = pytest.mark.django_db
CHANGELIST = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")


def change_url(pk: int) -> str:
    return reverse("admin:django_scheduled_actions_scheduledfunction_change", args=[pk])


def make_job(**fields) -> ScheduledFunction:
    values = {
        "name": f.bump.name,
        "kind": "mutation",
        "args": {"name": "x"},
        "scheduled_time": timezone.now(),
        **fields,
    }
    return ScheduledFunction.objects.create(**values)


def act(client, action: str, *jobs: ScheduledFunction | int) -> list[str]:
    """POST an admin action on ``jobs``; returns the messages shown after the redirect."""
    ids = [job if isinstance(job, int) else job.pk for job in jobs]
    response = client.post(CHANGELIST, {"action": action, "_selected_action": ids}, follow=True)
    assert response.status_code == 200
    return [str(message) for message in response.context["messages"]]


def states(*jobs: ScheduledFunction) -> list[str]:
    return [ScheduledFunction.objects.get(pk=job.pk).state for job in jobs]


@pytest.fixture
def staff(client):
    """A staff user who may view and change jobs, and nothing more."""
    user = User.objects.create_user("staff", password="pw", is_staff=True)
    grant(user, "view_scheduledfunction")
    client.force_login(user)
    return user


def grant(user: User, *codenames: str) -> None:
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


# --- pages ---


@pytest.mark.parametrize(
    "model", ["scheduledfunction", "cronjob", "idempotencykey", "workerprocess", "batch", "saga", "workflowrun"]
)
def test_changelists_render(admin_client, model):
    scheduler.run_after(0, f.bump, {"name": "x"}, idempotency_key="k")
    response = admin_client.get(reverse(f"admin:django_scheduled_actions_{model}_changelist"))
    assert response.status_code == 200


def test_overdue_pending_jobs_are_marked_and_filtered(admin_client):
    now = timezone.now()
    overdue = make_job(scheduled_time=now - timedelta(minutes=3))
    later = make_job(scheduled_time=now + timedelta(minutes=3))
    done = make_job(state=State.SUCCESS, scheduled_time=now - timedelta(minutes=3), completed_time=now)
    response = admin_client.get(CHANGELIST)
    assert response.content.decode().count('class="sa-badge sa-badge-overdue"') == 1
    filtered = admin_client.get(CHANGELIST, {"overdue": "yes"}).context["cl"].result_list
    assert [job.pk for job in filtered] == [overdue.pk]
    assert {job.pk for job in admin_client.get(CHANGELIST).context["cl"].result_list} == {overdue.pk, later.pk, done.pk}


def test_changelist_shows_badges_and_relative_times(admin_client):
    now = timezone.now()
    make_job(scheduled_time=now + timedelta(minutes=5, seconds=30))
    make_job(
        state=State.FAILED,
        scheduled_time=now - timedelta(hours=3, minutes=1),
        started_at=now - timedelta(hours=3),
        completed_time=now - timedelta(hours=3) + timedelta(seconds=2.5),
        attempts=1,
    )
    page = admin_client.get(CHANGELIST).content.decode()
    assert 'class="sa-badge sa-badge-pending"' in page and 'class="sa-badge sa-badge-failed"' in page
    assert "(in 5 min)" in page and "(3 h ago)" in page
    assert "2.5 s" in page and "1/1" in page


def test_job_detail_is_read_only_and_jobs_cannot_be_added(admin_client):
    job_id = scheduler.run_after(0, f.bump, {"name": "x"})
    page = admin_client.get(change_url(job_id))
    assert page.status_code == 200 and b'name="name"' not in page.content and b'name="_save"' not in page.content
    assert admin_client.post(change_url(job_id), {"name": "other"}).status_code == 403
    assert ScheduledFunction.objects.get(pk=job_id).name == f.bump.name
    assert admin_client.get(reverse("admin:django_scheduled_actions_scheduledfunction_add")).status_code == 403


def test_job_detail_pretty_prints_and_links_its_relatives(admin_client):
    cron = CronJob.objects.create(name="nightly", function=f.bump.name, interval_seconds=60)
    batch = Batch.objects.create(name=f.bump.name, total=1)
    parent = make_job(state=State.SUCCESS)
    job = make_job(
        state=State.FAILED,
        args={"name": "x", "by": 2},
        result={"deep": [1, 2]},
        parent=parent,
        cron=cron,
        batch=batch,
        error="Traceback (most recent call last):\n  ...\nValueError: <boom>",
    )
    child = make_job(parent=job)
    retry = make_job(retry_of=job)
    page = admin_client.get(change_url(job.pk)).content.decode()
    assert "{\n  &quot;by&quot;: 2,\n  &quot;name&quot;: &quot;x&quot;\n}" in page
    assert "&quot;deep&quot;: [\n    1," in page
    assert "ValueError: &lt;boom&gt;</pre>" in page
    assert f'href="{change_url(parent.pk)}">#{parent.pk}</a>' in page
    assert f'href="{change_url(child.pk)}">#{child.pk} {f.bump.name}</a>' in page
    assert f'href="{change_url(retry.pk)}">#{retry.pk} {f.bump.name}</a>' in page
    assert reverse("admin:django_scheduled_actions_cronjob_change", args=[cron.pk]) in page
    assert reverse("admin:django_scheduled_actions_batch_change", args=[batch.pk]) in page
    retry_page = admin_client.get(change_url(retry.pk)).content.decode()
    assert f'href="{change_url(job.pk)}">#{job.pk}</a>' in retry_page


def test_search_by_id_function_and_idempotency_key(admin_client):
    bump = scheduler.run_after(0, f.bump, {"name": "x"}, idempotency_key="pay-abc")
    record = scheduler.run_after(0, f.record, {"key": "x"})

    def found(q: str) -> set[int]:
        return {job.pk for job in admin_client.get(CHANGELIST, {"q": q}).context["cl"].result_list}

    assert found(str(record)) == {record}
    assert found("record") == {record}
    assert found("pay-abc") == {bump}


def test_filters_by_state_kind_function_queue_and_date(admin_client):
    now = timezone.now()
    mutation = make_job(queue="emails")
    action = make_job(name=f.noop_action.name, kind="action", state=State.CANCELED)
    old = make_job(scheduled_time=now - timedelta(days=400))

    def found(**params) -> set[int]:
        response = admin_client.get(CHANGELIST, params)
        assert response.status_code == 200
        return {job.pk for job in response.context["cl"].result_list}

    assert found(state__exact="canceled") == {action.pk}
    assert found(kind__exact="action") == {action.pk}
    assert found(name=f.bump.name) == {mutation.pk, old.pk}
    assert found(queue__exact="emails") == {mutation.pk}
    assert found(scheduled_time__year=str(old.scheduled_time.year)) >= {old.pk}
    assert mutation.pk not in found(scheduled_time__year=str(old.scheduled_time.year))


def test_the_changelist_is_a_fixed_number_of_queries(admin_client, django_assert_num_queries):
    cron = CronJob.objects.create(name="c", function=f.bump.name, interval_seconds=60)
    parent = make_job(cron=cron)

    def load() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = admin_client.get(CHANGELIST, {"q": "bump"})
        assert response.status_code == 200
        return len(queries)

    one = load()
    now = timezone.now()
    ScheduledFunction.objects.bulk_create(make_job_row(i, now, cron, parent) for i in range(199))
    assert ScheduledFunction.objects.count() == 200
    with django_assert_num_queries(one):
        response = admin_client.get(CHANGELIST, {"q": "bump", "all": ""})
    assert len(response.context["cl"].result_list) == 200


def make_job_row(i: int, now, cron: CronJob, parent: ScheduledFunction) -> ScheduledFunction:
    state = list(State)[i % len(State)]
    return ScheduledFunction(
        name=f.bump.name,
        kind="mutation",
        args={"name": str(i)},
        state=state,
        scheduled_time=now - timedelta(minutes=i),
        started_at=now,
        completed_time=now,
        cron=cron if i % 3 == 0 else None,
        parent=parent if i % 3 == 1 else None,
        queue=f"q{i % 4}",
    )


# --- actions ---


def test_cancel_cancels_pending_and_running_jobs_and_reports_the_finished_ones(admin_client):
    pending, running, done = make_job(), make_job(state=State.IN_PROGRESS), make_job(state=State.SUCCESS)
    shown = act(admin_client, "cancel_jobs", pending, running, done)
    assert shown == [
        f"Canceled 2 job(s): #{pending.pk}, {running.pk}.",
        f"Skipped 1 job(s) already finished: #{done.pk} (success).",
    ]
    assert states(pending, running, done) == [State.CANCELED, State.CANCELED, State.SUCCESS]


def test_retry_schedules_a_linked_copy_of_failed_and_canceled_jobs(admin_client):
    parent = make_job(state=State.SUCCESS)
    failed = make_job(
        state=State.FAILED,
        args={"name": "y", "by": 3},
        queue="emails",
        priority=5,
        parent=parent,
        attempts=1,
        error="boom",
    )
    canceled = make_job(state=State.CANCELED)
    pending = make_job()
    shown = act(admin_client, "retry_jobs", failed, canceled, pending)
    retry_of_failed, retry_of_canceled = ScheduledFunction.objects.filter(retry_of__isnull=False).order_by("pk")
    assert shown == [
        f"Retried 2 job(s): #{failed.pk} as #{retry_of_failed.pk}, #{canceled.pk} as #{retry_of_canceled.pk}.",
        f"Skipped 1 job(s): #{pending.pk} (it is pending, not failed or canceled).",
    ]
    new = retry_of_failed
    assert (new.name, new.kind, new.args, new.queue, new.priority, new.parent_id, new.retry_of_id) == (
        f.bump.name,
        "mutation",
        {"name": "y", "by": 3},
        "emails",
        5,
        parent.pk,
        failed.pk,
    )
    assert (new.state, new.attempts, new.error) == (State.PENDING, 0, "")
    assert new.scheduled_time <= timezone.now()
    again = act(admin_client, "retry_jobs", failed)
    assert again == [f"Skipped 1 job(s): #{failed.pk} (it was already retried as #{new.pk})."]


def test_retry_skips_jobs_whose_function_is_gone(admin_client):
    gone = make_job(name="tests.app.functions:removed_long_ago", state=State.FAILED)
    assert act(admin_client, "retry_jobs", gone) == [f"Skipped 1 job(s): #{gone.pk} (its function is not registered)."]
    assert ScheduledFunction.objects.count() == 1


def test_a_retry_runs_on_the_worker(admin_client):
    from django_scheduled_actions.testing import run_due_jobs

    failed = make_job(state=State.FAILED, args={"name": "retried"})
    act(admin_client, "retry_jobs", failed)
    run_due_jobs()
    assert ScheduledFunction.objects.get(retry_of=failed).state == State.SUCCESS
    assert f.count.fn(None, "retried") == 1


def test_run_now_makes_pending_jobs_due_and_reports_the_others(admin_client):
    now = timezone.now()
    later, due, done = (
        make_job(scheduled_time=now + timedelta(hours=2)),
        make_job(scheduled_time=now),
        make_job(state=State.FAILED, scheduled_time=now + timedelta(hours=1)),
    )
    shown = act(admin_client, "run_jobs_now", later, due, done)
    assert shown == [
        f"1 pending job(s) are due now: #{later.pk}.",
        f"Skipped 1 job(s) already due: #{due.pk}.",
        f"Skipped 1 job(s) not pending: #{done.pk} (failed).",
    ]
    assert ScheduledFunction.objects.due(timezone.now()).filter(pk=later.pk).exists()
    done.refresh_from_db()
    assert done.scheduled_time == now + timedelta(hours=1)


def test_the_queryset_methods_are_what_the_actions_call():
    now = timezone.now()
    later = make_job(scheduled_time=now + timedelta(hours=1))
    assert changes.run_now(ScheduledFunction.objects.filter(pk=later.pk), now) == 1
    assert changes.run_now(ScheduledFunction.objects.filter(pk=later.pk), now) == 0
    failed = make_job(state=State.FAILED)
    [outcome] = changes.retry(ScheduledFunction.objects.filter(pk=failed.pk), now)
    assert outcome.job_id == failed.pk and outcome.skipped == ""
    assert ScheduledFunction.objects.get(pk=outcome.new_job_id).retry_of_id == failed.pk


# --- permissions ---


@pytest.mark.parametrize(
    ("action", "codename"),
    [
        ("cancel_jobs", "cancel_scheduledfunction"),
        ("retry_jobs", "retry_scheduledfunction"),
        ("run_jobs_now", "change_scheduledfunction"),
    ],
)
def test_each_action_needs_its_permission(client, staff, action, codename):
    now = timezone.now()
    job = make_job(
        state=State.FAILED if action == "retry_jobs" else State.PENDING, scheduled_time=now + timedelta(hours=1)
    )
    before = list(ScheduledFunction.objects.values())
    assert client.get(CHANGELIST).context["action_form"] is None  # no action this user may take
    assert act(client, action, job) == []  # a forged POST: no action to take
    other = {"cancel_jobs": "retry_scheduledfunction"}.get(action, "cancel_scheduledfunction")
    grant(staff, other)
    assert act(client, action, job) == ["No action selected."]  # a forged POST: not one of the user's actions
    assert list(ScheduledFunction.objects.values()) == before
    staff.user_permissions.clear()
    grant(staff, "view_scheduledfunction", codename)
    choices = [name for name, _label in client.get(CHANGELIST).context["action_form"].fields["action"].choices]
    assert choices == ["", action]
    act(client, action, job)
    assert list(ScheduledFunction.objects.values()) != before


def test_idempotency_keys_are_listed_with_their_job(admin_client):
    job_id = scheduler.run_after(0, f.bump, {"name": "x"}, idempotency_key="pay-123")
    IdempotencyKey.objects.create(key="old", name=f.bump.name, expires_at=timezone.now() - timedelta(hours=1))
    page = admin_client.get(reverse("admin:django_scheduled_actions_idempotencykey_changelist")).content.decode()
    assert "pay-123" in page and f'href="{change_url(job_id)}">#{job_id}</a>' in page
    assert "sa-badge-held" in page and "sa-badge-expired" in page


@pytest.mark.django_db(transaction=True)
def test_two_admins_retrying_one_job_at_once_make_one_retry():
    from tests.db.test_idempotency import race

    job_id = scheduler.run_after(0, f.bump, {"name": "x"})
    ScheduledFunction.objects.filter(pk=job_id).update(state=State.FAILED)
    outcomes = race(2, lambda: changes.retry(ScheduledFunction.objects.filter(pk=job_id)))
    assert ScheduledFunction.objects.filter(retry_of_id=job_id).count() == 1
    made = [o[0].new_job_id for o in outcomes if o[0].new_job_id]
    skipped = [o[0].skipped for o in outcomes if not o[0].new_job_id]
    assert len(made) == 1 and len(skipped) == 1, outcomes
    assert "retried" in skipped[0]
