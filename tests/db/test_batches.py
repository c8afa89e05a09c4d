"""Fan-out / fan-in: ``scheduler.batch(fn, items, on_complete=...)``, counted exactly once."""

from __future__ import annotations

from collections import Counter as Tally
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions import ArgumentValidationError, run_mutation, scheduler
from django_scheduled_actions.models import Batch, ScheduledFunction, State
from django_scheduled_actions.scheduling.batches import job_finished
from django_scheduled_actions.testing import run_due_jobs, run_job
from django_scheduled_actions.worker.maintenance import recover_expired
from tests.app import functions as f
from tests.app import orchestration_functions as of
from tests.app.models import Counter, Effect, Note
from tests.support.threads import at_once

pytestmark = pytest.mark.django_db


def items(n: int, failing: tuple[int, ...] = ()) -> list[dict]:
    return [{"i": i, "fail": i in failing} for i in range(n)]


def done_notes() -> list[str]:
    return list(Note.objects.order_by("id").values_list("text", flat=True))


def run_items(batch_id: int, n: int) -> None:
    for job_id in ScheduledFunction.objects.filter(batch_id=batch_id).order_by("pk").values_list("pk", flat=True)[:n]:
        run_job(job_id)


def on_complete_runs(label: str) -> int:
    return Effect.objects.filter(key=f"done {label}").count()


def test_items_run_and_on_complete_runs_once_with_the_counts():
    batch_id = scheduler.batch(
        of.item_mutation, items(5, failing=(1, 3)), on_complete=of.batch_done, on_complete_args={"label": "five"}
    )
    jobs = ScheduledFunction.objects.filter(batch_id=batch_id)
    assert jobs.count() == 5 and set(jobs.values_list("state", flat=True)) == {State.PENDING}
    assert Batch.objects.get(pk=batch_id).total == 5

    assert run_due_jobs() == 6  # five items, then on_complete
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.succeeded, batch.failed, batch.canceled, batch.done) == (3, 2, 0, 5)
    assert batch.finished_at is not None and batch.on_complete_job.state == State.SUCCESS
    assert done_notes() == [f"five batch={batch_id} succeeded=3 failed=2 canceled=0"]
    assert on_complete_runs("five") == 1
    assert sorted(jobs.filter(state=State.SUCCESS).values_list("result", flat=True)) == [0, 4, 16]


def test_action_items_are_counted_too():
    batch_id = scheduler.batch(
        of.item_action, items(4, failing=(0,)), on_complete=of.batch_done, on_complete_args={"label": "actions"}
    )
    run_due_jobs()
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.succeeded, batch.failed) == (3, 1)
    assert done_notes() == [f"actions batch={batch_id} succeeded=3 failed=1 canceled=0"]
    assert Counter.objects.get(name="batch items").value == 4


def test_a_batch_without_on_complete_just_tracks_progress():
    batch_id = scheduler.batch(of.item_mutation, items(3))
    run_items(batch_id, 2)
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.done, batch.total, batch.finished_at) == (2, 3, None)
    run_due_jobs()
    batch.refresh_from_db()
    assert batch.done == 3 and batch.finished_at is not None and batch.on_complete_job is None


def test_an_empty_batch_is_finished_at_once():
    batch_id = scheduler.batch(of.item_mutation, [], on_complete=of.batch_done, on_complete_args={"label": "none"})
    assert Batch.objects.get(pk=batch_id).finished_at is not None
    run_due_jobs()
    assert done_notes() == [f"none batch={batch_id} succeeded=0 failed=0 canceled=0"]


def test_the_batch_is_written_with_the_callers_transaction():
    with pytest.raises(RuntimeError, match="fails after fanning out"):
        run_mutation(of.fan_out_then_fail, {"n": 5})
    with pytest.raises(ValueError, match="rolled back"), transaction.atomic():
        scheduler.batch(of.item_mutation, items(3))
        raise ValueError("rolled back")
    assert not Batch.objects.exists() and not ScheduledFunction.objects.exists()


def test_a_function_fans_out_through_ctx_scheduler_and_its_items_name_their_parent():
    parent = scheduler.run_after(0, of.fan_out, {"n": 3, "label": "from a job"})
    run_due_jobs()
    batch_id = ScheduledFunction.objects.get(pk=parent).result
    assert set(ScheduledFunction.objects.filter(batch_id=batch_id).values_list("parent_id", flat=True)) == {parent}
    assert done_notes() == [f"from a job batch={batch_id} succeeded=3 failed=0 canceled=0"]


def test_everything_is_validated_before_anything_is_written():
    with pytest.raises(ArgumentValidationError, match="'i'"):
        scheduler.batch(of.item_mutation, [{"i": 1}, {"i": "two"}])
    with pytest.raises(ArgumentValidationError, match="batch_id"):  # on_complete must take the counts
        scheduler.batch(of.item_mutation, items(2), on_complete=of.takes_no_counts, on_complete_args={"label": "x"})
    with pytest.raises(ArgumentValidationError, match="label"):
        scheduler.batch(of.item_mutation, items(2), on_complete=of.batch_done)
    with pytest.raises(ValueError, match="may not contain failed"):
        scheduler.batch(
            of.item_mutation, items(2), on_complete=of.batch_done, on_complete_args={"label": "x", "failed": 0}
        )
    with pytest.raises(TypeError, match="is a query"):
        scheduler.batch(f.count, [{"name": "x"}])
    with pytest.raises(TypeError, match="is a query"):
        scheduler.batch(of.item_mutation, items(1), on_complete=f.count)
    with pytest.raises(TypeError, match="without on_complete"):
        scheduler.batch(of.item_mutation, items(1), on_complete_args={"label": "x"})
    assert not Batch.objects.exists() and not ScheduledFunction.objects.exists()


def test_an_on_complete_that_no_longer_fits_is_logged_and_the_batch_still_finishes(caplog):
    batch_id = scheduler.batch(of.item_mutation, items(2), on_complete=of.batch_done, on_complete_args={"label": "x"})
    Batch.objects.filter(pk=batch_id).update(on_complete_args={"label": 5})  # as if its code had changed since
    run_due_jobs()
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.succeeded, batch.finished_at is not None, batch.on_complete_job) == (2, True, None)
    assert "on_complete could not be scheduled" in caplog.text


def test_options_queue_priority_and_delay_apply_to_every_item():
    batch_id = scheduler.batch(of.item_mutation, items(2), queue="bulk", priority=5, delay=timedelta(minutes=5))
    rows = ScheduledFunction.objects.filter(batch_id=batch_id)
    assert set(rows.values_list("queue", "priority")) == {("bulk", 5)}
    assert run_due_jobs() == 0
    assert run_due_jobs(advance=timedelta(minutes=6)) == 2


def test_ten_thousand_items_are_inserted_in_bulk_then_canceled_in_bulk():
    with CaptureQueriesContext(connection) as queries:
        batch_id = scheduler.batch(
            of.item_mutation,
            [{"i": i} for i in range(10_000)],
            on_complete=of.batch_done,
            on_complete_args={"label": "big"},
        )
    inserts = [q for q in queries.captured_queries if q["sql"].startswith("INSERT")]
    assert ScheduledFunction.objects.filter(batch_id=batch_id, state=State.PENDING).count() == 10_000
    assert len(inserts) <= 300, f"{len(inserts)} INSERT statements for 10,000 items"

    run_items(batch_id, 3)  # 3 run, 9,997 canceled at once
    assert scheduler.cancel_batch(batch_id) == 9_997
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.succeeded, batch.canceled, batch.done) == (3, 9_997, 10_000) and batch.finished_at
    run_due_jobs()
    assert done_notes() == [f"big batch={batch_id} succeeded=3 failed=0 canceled=9997"]


def test_canceling_one_item_counts_it_as_canceled():
    batch_id = scheduler.batch(of.item_mutation, items(2), on_complete=of.batch_done, on_complete_args={"label": "c"})
    first = ScheduledFunction.objects.filter(batch_id=batch_id).order_by("pk").first()
    scheduler.cancel(first.pk)
    scheduler.cancel(first.pk)  # a no-op: counted once
    run_due_jobs()
    assert done_notes() == [f"c batch={batch_id} succeeded=1 failed=0 canceled=1"]


def test_a_batch_scheduled_by_a_canceled_job_is_canceled_with_its_on_complete():
    parent = scheduler.run_after(0, of.fan_out, {"n": 3, "label": "orphan"})
    ScheduledFunction.objects.filter(pk=parent).update(state=State.CANCELED)
    from django_scheduled_actions.core.jobs import JobInfo
    from django_scheduled_actions.scheduling.scheduler import Scheduler

    orphans = Scheduler(parent=JobInfo(parent, of.fan_out.name, 1, timezone.now()))
    batch_id = orphans.batch(of.item_mutation, items(3), on_complete=of.batch_done, on_complete_args={"label": "o"})
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.canceled, batch.finished_at is not None, batch.on_complete_job.state) == (3, True, State.CANCELED)
    assert run_due_jobs() == 0


@pytest.mark.django_db(transaction=True)
def test_lease_recovery_counts_items_a_lost_worker_finished_but_did_not_count():
    batch_id = scheduler.batch(of.item_action, items(3), on_complete=of.batch_done, on_complete_args={"label": "r"})
    jobs = ScheduledFunction.objects.filter(batch_id=batch_id).order_by("pk")
    a, b, c = jobs
    now = timezone.now()
    jobs.filter(pk=a.pk).update(state=State.SUCCESS, completed_time=now)  # its worker died before counting
    jobs.filter(pk=b.pk).update(state=State.FAILED, completed_time=now)
    jobs.filter(pk=c.pk).update(
        state=State.IN_PROGRESS,
        started_at=now,
        attempts=1,
        token="t",
        worker_id="gone",
        lease_expires_at=now - timedelta(seconds=1),
    )  # a started action, worker gone
    assert Batch.objects.get(pk=batch_id).done == 0
    assert recover_expired(now) == 1
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.succeeded, batch.failed, batch.finished_at is not None) == (1, 2, True)
    run_due_jobs()
    assert done_notes() == [f"r batch={batch_id} succeeded=1 failed=2 canceled=0"]


@pytest.mark.django_db(transaction=True)
def test_workers_counting_the_last_items_at_once_fire_on_complete_once():
    """Every item's final state committed, then eight threads count them at the same moment, repeatedly."""
    for round_ in range(4):
        label = f"race {round_}"
        batch_id = scheduler.batch(
            of.item_mutation, items(24), on_complete=of.batch_done, on_complete_args={"label": label}
        )
        jobs = list(ScheduledFunction.objects.filter(batch_id=batch_id))
        ScheduledFunction.objects.filter(batch_id=batch_id).update(state=State.SUCCESS, completed_time=timezone.now())
        shares = [jobs[n::8] + jobs[:2] for n in range(8)]  # the first two are counted by every thread
        assert at_once([lambda share=share: [job_finished(job) for job in share] for share in shares]) == []
        batch = Batch.objects.get(pk=batch_id)
        assert (batch.succeeded, batch.finished_at is not None) == (24, True), label
        assert ScheduledFunction.objects.filter(name=of.batch_done.name, args__label=label).count() == 1
    run_due_jobs()
    assert Tally(Effect.objects.values_list("key", flat=True)) == {f"done race {n}": 1 for n in range(4)}


def test_admin_shows_batch_progress(admin_client):
    batch_id = scheduler.batch(of.item_mutation, items(4), on_complete=of.batch_done, on_complete_args={"label": "a"})
    run_items(batch_id, 1)
    page = admin_client.get(reverse("admin:django_scheduled_actions_batch_changelist"))
    assert page.status_code == 200
    assert b'<progress max="4" value="1"></progress> 1/4 (25%)' in page.content
    detail = admin_client.get(reverse("admin:django_scheduled_actions_batch_change", args=[batch_id]))
    assert detail.status_code == 200 and f"?batch__id__exact={batch_id}".encode() in detail.content
    items_page = admin_client.get(
        reverse("admin:django_scheduled_actions_scheduledfunction_changelist"), {"batch__id__exact": batch_id}
    )
    assert items_page.status_code == 200 and items_page.context["cl"].result_count == 4


def test_admin_cancels_the_open_items_of_a_batch(admin_client):
    batch_id = scheduler.batch(of.item_mutation, items(3), on_complete=of.batch_done, on_complete_args={"label": "x"})
    admin_client.post(
        reverse("admin:django_scheduled_actions_batch_changelist"),
        {"action": "cancel_items", "_selected_action": [batch_id]},
    )
    batch = Batch.objects.get(pk=batch_id)
    assert (batch.canceled, batch.finished_at is not None) == (3, True)


# --- real workers ---


def on_complete_runs_total() -> int:
    return Effect.objects.filter(key__startswith="done ").count()


def open_jobs() -> bool:
    return ScheduledFunction.objects.filter(state__in=(State.PENDING, State.IN_PROGRESS)).exists()
