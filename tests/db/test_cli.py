"""``manage.py scheduledactions``: each subcommand through ``call_command``, as text and as JSON parsed back,
with its exit codes (0 done, 1 some job not acted on or not found, 2 a usage error), on every database."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from django_scheduled_actions import scheduler, workflows
from django_scheduled_actions.models import (
    Batch,
    CronJob,
    IdempotencyKey,
    ScheduledFunction,
    State,
    WorkerProcess,
    WorkflowRun,
)
from django_scheduled_actions.store import dbclock
from django_scheduled_actions.workflows import journal
from tests.app import functions as f
from tests.app import workflow_functions as wf

pytestmark = pytest.mark.django_db
Jobs = ScheduledFunction.objects


def run(*args: str) -> tuple[int, str, str]:
    """``scheduledactions *args``: (exit code, stdout, stderr or the CommandError's message)."""
    out, err = StringIO(), StringIO()
    try:
        call_command("scheduledactions", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return exc.returncode, out.getvalue(), str(exc)
    return 0, out.getvalue(), err.getvalue()


def run_json(*args: str) -> tuple[int, dict]:
    code, out, _err = run(*args, "--json")
    return code, json.loads(out)


def make_job(**fields) -> ScheduledFunction:
    values = {"name": f.bump.name, "kind": "mutation", "args": {"name": "x"}, "scheduled_time": timezone.now()}
    return Jobs.create(**{**values, **fields})


def finished(state: str = State.SUCCESS, ago: timedelta = timedelta(0), **fields) -> ScheduledFunction:
    return make_job(state=state, completed_time=timezone.now() - ago, **fields)


# --- jobs ---


def test_jobs_lists_the_newest_first_as_a_table():
    old = make_job(queue="emails", attempts=1, max_attempts=3)
    new = make_job(name=f.noop_action.name, kind="action", state=State.FAILED)
    code, out, _ = run("jobs")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["ID", "FUNCTION", "KIND", "STATE", "QUEUE", "RUN", "AT", "ATTEMPTS", "AGE"]
    assert [line.split()[0] for line in lines[1:]] == [str(new.pk), str(old.pk)]
    assert lines[1].split()[1:5] == [f.noop_action.name, "action", "failed", "default"]
    assert lines[2].split()[1:5] == [f.bump.name, "mutation", "pending", "emails"]
    assert "1/3" in lines[2].split()


def test_jobs_shows_50_by_default_and_says_when_more_match():
    now = timezone.now()
    Jobs.bulk_create(
        ScheduledFunction(name=f.bump.name, kind="mutation", args={}, scheduled_time=now) for _ in range(52)
    )
    newest = list(Jobs.order_by("-id").values_list("pk", flat=True))
    code, document = run_json("jobs")
    assert code == 0
    assert [job["id"] for job in document["jobs"]] == newest[:50]
    assert (document["limit"], document["more"]) == (50, True)
    _, out, _ = run("jobs", "--limit", "3")
    assert len(out.splitlines()) == 5 and "more match" in out.splitlines()[-1]
    _, document = run_json("jobs", "--limit", "0")
    assert len(document["jobs"]) == 52 and document["more"] is False
    _, document = run_json("jobs", "--limit", "52")
    assert len(document["jobs"]) == 52 and document["more"] is False


def test_jobs_filters_by_state_function_queue_and_since():
    now = timezone.now()
    pending = make_job(created_at=now - timedelta(hours=3))
    failed = make_job(state=State.FAILED, queue="emails", created_at=now - timedelta(minutes=30))
    canceled = make_job(state=State.CANCELED, name=f.noop_action.name, kind="action")
    running = make_job(state=State.IN_PROGRESS, queue="emails")

    def ids(*args: str) -> set[int]:
        code, document = run_json("jobs", *args)
        assert code == 0
        return {job["id"] for job in document["jobs"]}

    assert ids() == {pending.pk, failed.pk, canceled.pk, running.pk}
    assert ids("--state", "failed") == {failed.pk}
    assert ids("--state", "failed,canceled") == {failed.pk, canceled.pk}
    assert ids("--state", "pending", "--state", "in-progress") == {pending.pk, running.pk}
    assert ids("--function", f.noop_action.name) == {canceled.pk}
    assert ids("--function", f.noop_action.name, "--function", f.bump.name) == {
        pending.pk,
        failed.pk,
        canceled.pk,
        running.pk,
    }
    assert ids("--queue", "emails") == {failed.pk, running.pk}
    assert ids("--queue", "emails", "--state", "failed") == {failed.pk}
    assert ids("--since", "10m") == {canceled.pk, running.pk}
    assert ids("--since", "2h") == {failed.pk, canceled.pk, running.pk}
    assert ids("--since", "1h30m") == {failed.pk, canceled.pk, running.pk}
    assert ids("--since", (now - timedelta(hours=4)).isoformat()) == {pending.pk, failed.pk, canceled.pk, running.pk}
    assert ids("--since", (now + timedelta(hours=1)).isoformat()) == set()
    code, out, _ = run("jobs", "--state", "success")
    assert (code, out.strip()) == (0, "No jobs match.")


def test_jobs_json_rows_carry_the_fields_with_iso_datetimes():
    job = make_job(queue="emails", priority=4, scheduled_time=timezone.now() + timedelta(hours=1))
    _, document = run_json("jobs")
    [row] = document["jobs"]
    assert {key: row[key] for key in ("id", "name", "kind", "state", "queue", "priority", "attempts")} == {
        "id": job.pk,
        "name": f.bump.name,
        "kind": "mutation",
        "state": "pending",
        "queue": "emails",
        "priority": 4,
        "attempts": 0,
    }
    assert datetime.fromisoformat(row["scheduled_time"]) == Jobs.get(pk=job.pk).scheduled_time
    assert datetime.fromisoformat(row["created_at"]) == Jobs.get(pk=job.pk).created_at
    assert 0 <= row["age_seconds"] < 600


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["jobs", "--state", "bogus"], "unknown job state 'bogus': the states are pending, in_progress, success, "),
        (["jobs", "--state", "failed,done"], "unknown job state 'done'"),
        (["jobs", "--since", "yesterday"], "'yesterday' is neither a duration such as 90s, 10m, 2h"),
        (["jobs", "--since", "10 minutes"], "is neither a duration"),
        (["jobs", "--since", "2026-13-45"], "nor an ISO 8601 datetime"),
        (["jobs", "--limit", "-1"], "'-1' is not a number of jobs"),
        (["show", "abc"], "'abc' is not a job id"),
        (["cancel", "1", "0"], "'0' is not a job id"),
        (["retry"], "the following arguments are required: ID"),
        (["prune", "--older-than", "7"], "'7' is not a duration such as 90s"),
        (["prune", "--older-than", "0d"], "the duration must be more than zero"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
        ([], "the following arguments are required: SUBCOMMAND"),
        (["jobs", "--database", "elsewhere"], "unknown database alias 'elsewhere'"),
    ],
)
def test_usage_errors_exit_2_with_a_clear_message_and_change_nothing(args, message):
    job = make_job()
    before = list(Jobs.values())
    code, out, err = run(*args)
    assert code == 2
    assert message in err
    assert out == ""
    assert list(Jobs.values()) == before and Jobs.get(pk=job.pk).state == State.PENDING


# --- show ---


def test_show_prints_every_field_and_the_related_rows():
    parent = finished()
    job_id = scheduler.run_after(0, f.bump, {"name": "y", "by": 2}, idempotency_key="order-7", queue="emails")
    Jobs.filter(pk=job_id).update(
        parent=parent, state=State.FAILED, error="Traceback...\nValueError: boom", completed_time=timezone.now()
    )
    child = make_job(parent_id=job_id)
    retry = make_job(retry_of_id=job_id)
    code, document = run_json("show", str(job_id))
    job = document["job"]
    assert code == 0
    stored = Jobs.get(pk=job_id)
    assert set(job) >= {field.attname for field in ScheduledFunction._meta.concrete_fields}
    assert (job["id"], job["name"], job["args"], job["state"], job["queue"]) == (
        job_id,
        f.bump.name,
        {"name": "y", "by": 2},
        "failed",
        "emails",
    )
    assert job["error"] == "Traceback...\nValueError: boom" and job["result"] is None
    assert (job["parent_id"], job["retries"], job["children"], job["children_count"]) == (
        parent.pk,
        [retry.pk],
        [child.pk],
        1,
    )
    assert [key["key"] for key in job["idempotency_keys"]] == ["order-7"]
    assert datetime.fromisoformat(job["completed_time"]) == stored.completed_time
    assert job["workflow_run"] is None
    code, out, _ = run("show", str(job_id))
    assert code == 0
    assert out.splitlines()[0] == f"Job #{job_id}  {f.bump.name}  (mutation, failed)"
    for line in (
        f"scheduled by:      #{parent.pk}",
        f"retried as:        #{retry.pk}",
        f"jobs it scheduled: #{child.pk}",
        "idempotency keys:  order-7",
        '    "by": 2',  # the arguments, indented (in the order the database keeps their keys)
        "  ValueError: boom",
    ):
        assert line in [text.rstrip(",") for text in out.splitlines()]


def test_show_names_the_workflow_run_of_a_replay_job():
    run_id = workflows.start(wf.chain, {"key": "cli"})
    replay = Jobs.get(name=journal.RESUME)
    _, document = run_json("show", str(replay.pk))
    assert document["job"]["workflow_run"] == {
        "id": run_id,
        "name": "tests.chain",
        "state": WorkflowRun.objects.get(pk=run_id).state,
        "step_index": None,
    }
    _, out, _ = run("show", str(replay.pk))
    assert f"workflow run:      #{run_id} tests.chain (pending)" in out


def test_show_of_an_unknown_id_exits_1():
    code, out, err = run("show", "424242")
    assert (code, out.strip(), err) == (1, "#424242 not found", "job #424242 not found")
    code, document = run_json("show", "424242")
    assert (code, document) == (1, {"job": None, "id": 424242})


# --- cancel, retry, run-now ---


def test_cancel_reports_each_id_and_exits_1_when_one_could_not_be_canceled():
    pending, running, done = make_job(), make_job(state=State.IN_PROGRESS), finished(State.SUCCESS)
    code, out, err = run("cancel", str(pending.pk), str(running.pk), str(done.pk), "999999")
    assert code == 1
    assert out.splitlines() == [
        f"#{pending.pk} canceled",
        f"#{running.pk} canceled",
        f"#{done.pk} not cancelable: it is success",
        "#999999 not found",
    ]
    assert err == "2 of 4 job(s) could not be canceled"
    assert [Jobs.get(pk=j.pk).state for j in (pending, running, done)] == ["canceled", "canceled", "success"]


def test_cancel_exits_0_when_every_job_was_canceled_and_json_says_so():
    first, second = make_job(), make_job(scheduled_time=timezone.now() + timedelta(days=1))
    code, document = run_json("cancel", str(first.pk), str(second.pk), str(first.pk))
    assert code == 0
    assert document == {
        "action": "cancel",
        "ok": True,
        "results": [
            {"id": first.pk, "ok": True, "outcome": "canceled", "state": "canceled", "message": "canceled"},
            {"id": second.pk, "ok": True, "outcome": "canceled", "state": "canceled", "message": "canceled"},
        ],
    }
    assert Jobs.get(pk=second.pk).completed_time is not None
    code, document = run_json("cancel", str(first.pk))  # now finished: nothing to cancel
    assert (code, document["ok"], document["results"][0]["outcome"]) == (1, False, "not_cancelable")


def test_retry_schedules_a_linked_job_and_refuses_what_the_admin_refuses():
    failed = finished(State.FAILED, args={"name": "again", "by": 2}, queue="emails", error="boom")
    canceled = finished(State.CANCELED)
    succeeded, pending = finished(State.SUCCESS), make_job()
    code, out, err = run("retry", str(failed.pk), str(succeeded.pk), str(pending.pk), "999999")
    new = Jobs.get(retry_of=failed)
    assert code == 1
    assert out.splitlines() == [
        f"#{failed.pk} retried as #{new.pk}",
        f"#{succeeded.pk} not retried: it is success, not failed or canceled",
        f"#{pending.pk} not retried: it is pending, not failed or canceled",
        "#999999 not found",
    ]
    assert err == "3 of 4 job(s) could not be retried"
    assert (new.state, new.args, new.queue, new.attempts) == (State.PENDING, {"name": "again", "by": 2}, "emails", 0)
    code, document = run_json("retry", str(canceled.pk))
    [result] = document["results"]
    assert (code, result["ok"], result["outcome"], result["state"]) == (0, True, "retried", "canceled")
    assert Jobs.get(pk=result["new_job_id"]).retry_of_id == canceled.pk
    code, out, _ = run("retry", str(failed.pk))
    assert (code, out.strip()) == (1, f"#{failed.pk} not retried: it was already retried as #{new.pk}")
    assert Jobs.filter(retry_of__isnull=False).count() == 2


def test_run_now_makes_pending_jobs_due_and_refuses_finished_ones():
    now = timezone.now()
    later, due = make_job(scheduled_time=now + timedelta(hours=2)), make_job(scheduled_time=now - timedelta(seconds=5))
    done = finished(State.FAILED, scheduled_time=now + timedelta(hours=1))
    code, out, err = run("run-now", str(later.pk), str(due.pk), str(done.pk))
    assert code == 1
    assert out.splitlines() == [
        f"#{later.pk} due now",
        f"#{due.pk} already due",
        f"#{done.pk} not moved: it is failed, not pending",
    ]
    assert err == "1 of 3 job(s) could not be made due"
    assert set(Jobs.due(timezone.now()).values_list("pk", flat=True)) == {later.pk, due.pk}
    assert Jobs.get(pk=done.pk).scheduled_time == now + timedelta(hours=1)
    another = make_job(scheduled_time=now + timedelta(days=3))
    code, document = run_json("run-now", str(another.pk), str(due.pk))
    assert (code, [r["outcome"] for r in document["results"]]) == (0, ["moved", "due"])


# --- crons, workers ---


def test_crons_lists_schedules_with_their_last_and_next_tick():
    now = timezone.now()
    hourly = CronJob.objects.create(
        name="sync",
        function=f.bump.name,
        args={"name": "s"},
        interval_seconds=3600,
        next_run_at=now + timedelta(minutes=20),
    )
    CronJob.objects.create(name="daily", function=f.bump.name, expression="0 9 * * *", enabled=False)
    CronJob.objects.filter(pk=hourly.pk).update(last_run_at=now - timedelta(minutes=40))
    job = make_job(cron=hourly, state=State.SUCCESS)
    code, document = run_json("crons")
    assert code == 0
    daily, sync = document["crons"]
    assert (daily["name"], daily["enabled"], daily["next_run_at"], daily["last_job_id"]) == ("daily", False, None, None)
    assert daily["schedule"] and daily["expression"] == "0 9 * * *"
    assert (sync["name"], sync["enabled"], sync["interval_seconds"], sync["last_job_id"], sync["last_job_state"]) == (
        "sync",
        True,
        3600,
        job.pk,
        "success",
    )
    assert datetime.fromisoformat(sync["next_run_at"]) == CronJob.objects.get(pk=hourly.pk).next_run_at
    assert datetime.fromisoformat(sync["last_run_at"]) == CronJob.objects.get(pk=hourly.pk).last_run_at
    code, out, _ = run("crons")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["NAME", "FUNCTION", "SCHEDULE"]
    assert lines[1].startswith("daily") and lines[2].startswith("sync")
    assert f"#{job.pk} success" in lines[2] and "ago)" in lines[2] and "(in " in lines[2]


def test_workers_lists_live_and_dead_rows_with_their_heartbeat_age():
    now = dbclock.now()

    def worker(worker_id: str, beat_ago: float, lease: float = 600.0, stopped: bool = False) -> WorkerProcess:
        beat = now - timedelta(seconds=beat_ago)
        return WorkerProcess.objects.create(
            worker_id=worker_id,
            hostname="host",
            pid=10,
            queues=["emails"] if worker_id == "alive" else [],
            concurrency=4,
            started_at=now - timedelta(hours=1),
            heartbeat_at=beat,
            expires_at=beat + timedelta(seconds=lease),
            stopped_at=beat if stopped else None,
        )

    # late: missed two heartbeats (a third of the lease each), lease still running: minutes of margin each way
    worker("alive", 1), worker("late", 2500, lease=3000), worker("lost", 900), worker("stopped", 3600, stopped=True)
    make_job(state=State.IN_PROGRESS, worker_id="alive"), make_job(state=State.IN_PROGRESS, worker_id="alive")
    make_job(state=State.SUCCESS, worker_id="alive")
    code, document = run_json("workers")
    assert code == 0
    rows = {row["worker_id"]: row for row in document["workers"]}
    assert {name: row["status"] for name, row in rows.items()} == {
        "alive": "alive",
        "late": "late",
        "lost": "lost",
        "stopped": "stopped",
    }
    assert {name: row["running"] for name, row in rows.items()} == {"alive": 2, "late": 0, "lost": 0, "stopped": 0}
    assert 900 <= rows["lost"]["heartbeat_age_seconds"] < 1200
    assert 1 <= rows["alive"]["heartbeat_age_seconds"] < 300
    assert rows["alive"]["queues"] == ["emails"]
    code, out, _ = run("workers")
    by_id = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert code == 0 and by_id["lost"][3:6] == ["lost", "15m", "ago"] and by_id["alive"][-3:] == ["2", "emails", "4"]
    WorkerProcess.objects.all().delete()
    assert run("workers")[:2] == (0, "No workers.\n")


# --- prune ---


def test_prune_deletes_exactly_what_the_retention_says(settings):
    settings.SCHEDULED_ACTIONS_RETENTION = timedelta(days=7)
    now = timezone.now()
    old = [finished(state, timedelta(days=8)) for state in (State.SUCCESS, State.FAILED, State.CANCELED)]
    recent = finished(State.FAILED, timedelta(days=6))
    pending = make_job(scheduled_time=now - timedelta(days=30), created_at=now - timedelta(days=30))
    running = make_job(state=State.IN_PROGRESS, created_at=now - timedelta(days=30))
    expired = IdempotencyKey.objects.create(key="old", name=f.bump.name, expires_at=now - timedelta(minutes=5))
    held = IdempotencyKey.objects.create(key="new", name=f.bump.name, expires_at=now + timedelta(hours=5))
    Batch.objects.create(name=f.bump.name, total=1, finished_at=now - timedelta(days=8))
    open_batch = Batch.objects.create(name=f.bump.name, total=1)
    kept = {recent.pk, pending.pk, running.pk}

    code, document = run_json("prune", "--dry-run")
    assert code == 0
    assert document["dry_run"] is True and document["retention_seconds"] == 7 * 86400
    assert document["rows"] == {
        "jobs": 3,
        "idempotency_keys": 1,
        "batches": 1,
        "sagas": 0,
        "workflow_runs": 0,
        "workers": 0,
    }
    assert datetime.fromisoformat(document["cutoff"]) == datetime.fromisoformat(document["now"]) - timedelta(days=7)
    assert Jobs.count() == 6 and IdempotencyKey.objects.count() == 2 and Batch.objects.count() == 2

    code, out, _ = run("prune")
    assert code == 0
    assert out.startswith("Deleted, finished before ")
    assert out.strip().endswith(": 3 jobs, 1 idempotency keys, 1 batches, 0 sagas, 0 workflow runs, 0 workers.")
    assert set(Jobs.values_list("pk", flat=True)) == kept
    assert list(IdempotencyKey.objects.values_list("pk", flat=True)) == [held.pk]
    assert list(Batch.objects.values_list("pk", flat=True)) == [open_batch.pk]
    assert not Jobs.filter(pk__in=[job.pk for job in old]).exists() and expired.pk != held.pk

    assert run_json("prune")[1]["rows"]["jobs"] == 0  # nothing more at this retention
    code, document = run_json("prune", "--older-than", "5d")
    assert (code, document["rows"]["jobs"], document["retention_seconds"]) == (0, 1, 5 * 86400)
    assert set(Jobs.values_list("pk", flat=True)) == {pending.pk, running.pk}


def test_prune_follows_the_retention_setting(settings):
    settings.SCHEDULED_ACTIONS_RETENTION = timedelta(hours=1)
    two_hours, half_hour = finished(ago=timedelta(hours=2)), finished(ago=timedelta(minutes=30))
    code, document = run_json("prune")
    assert (code, document["rows"]["jobs"], document["retention_seconds"]) == (0, 1, 3600)
    assert list(Jobs.values_list("pk", flat=True)) == [half_hour.pk] and two_hours.pk != half_hour.pk
