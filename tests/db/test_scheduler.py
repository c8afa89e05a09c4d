"""The transactional scheduler (DESIGN §3)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from django_scheduled_actions import ArgumentValidationError, run_action, run_mutation, scheduler
from django_scheduled_actions.models import IdempotencyKey, ScheduledFunction, State
from django_scheduled_actions.testing import run_due_jobs
from tests.app import functions as f
from tests.app.models import Effect, Note

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects


def test_run_after_writes_a_pending_job():
    before = timezone.now()
    job_id = scheduler.run_after(5, f.bump, {"name": "a"})
    job = Jobs.get(pk=job_id)
    assert (job.name, job.kind, job.args, job.state) == (
        "tests.app.functions:bump",
        "mutation",
        {"name": "a"},
        State.PENDING,
    )
    assert before + timedelta(seconds=5) <= job.scheduled_time <= timezone.now() + timedelta(seconds=5)
    assert (job.queue, job.priority, job.attempts, job.max_attempts) == ("default", 0, 0, 1)


def test_run_after_takes_a_timedelta_and_negative_means_now():
    later = Jobs.get(pk=scheduler.run_after(timedelta(minutes=2), f.bump, {"name": "a"}))
    assert later.scheduled_time - later.created_at == timedelta(minutes=2)
    now_job = Jobs.get(pk=scheduler.run_after(-30, f.bump, {"name": "a"}))
    assert now_job.scheduled_time == now_job.created_at


@pytest.mark.parametrize("delay", [math.inf, -math.inf, math.nan])
def test_non_finite_delays_raise(delay):
    with pytest.raises(ValueError, match="finite"):
        scheduler.run_after(delay, f.bump, {"name": "a"})
    assert not Jobs.exists()


def test_run_at_takes_aware_datetimes_and_epoch_seconds():
    when = timezone.now() + timedelta(hours=1)
    assert Jobs.get(pk=scheduler.run_at(when, f.bump, {"name": "a"})).scheduled_time == when
    epoch = when.timestamp()
    assert abs(Jobs.get(pk=scheduler.run_at(epoch, f.bump, {"name": "a"})).scheduled_time - when) < timedelta(
        milliseconds=1
    )
    past = Jobs.get(pk=scheduler.run_at(datetime(2000, 1, 1, tzinfo=UTC), f.bump, {"name": "a"}))
    assert past.scheduled_time == past.created_at


def test_run_at_refuses_naive_datetimes_and_non_finite_numbers():
    with pytest.raises(ValueError, match="naive"):
        scheduler.run_at(datetime(2030, 1, 1), f.bump, {"name": "a"})
    with pytest.raises(ValueError, match="finite"):
        scheduler.run_at(math.nan, f.bump, {"name": "a"})
    assert not Jobs.exists()


def test_queries_and_plain_callables_cannot_be_scheduled():
    with pytest.raises(TypeError, match="is a query"):
        scheduler.run_after(0, f.count, {"name": "a"})
    with pytest.raises(TypeError, match="only functions decorated"):
        scheduler.run_after(0, print, {})
    assert not Jobs.exists()


def test_arguments_are_validated_at_scheduling_time():
    with pytest.raises(ArgumentValidationError, match="argument 'name'"):
        scheduler.run_after(0, f.bump, {"name": 3})
    assert not Jobs.exists()


def test_oversize_arguments_are_refused(settings):
    settings.SCHEDULED_ACTIONS_MAX_ARGS_BYTES = 100
    with pytest.raises(ArgumentValidationError, match="MAX_ARGS_BYTES=100"):
        scheduler.run_after(0, f.bump, {"name": "x" * 200})
    assert not Jobs.exists()


def test_rollback_leaves_no_job_and_commit_makes_it_visible():
    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.run_after(0, f.bump, {"name": "a"})
        raise RuntimeError("roll back")
    assert not Jobs.exists()
    with transaction.atomic():
        job_id = scheduler.run_after(0, f.bump, {"name": "a"})
    assert Jobs.filter(pk=job_id).exists()


def test_savepoint_rollback_drops_only_its_jobs():
    with transaction.atomic():
        kept = scheduler.run_after(0, f.bump, {"name": "kept"})
        try:
            with transaction.atomic():
                scheduler.run_after(0, f.bump, {"name": "dropped"})
                raise RuntimeError
        except RuntimeError:
            pass
    assert list(Jobs.values_list("pk", flat=True)) == [kept]


def test_mutation_schedules_in_its_own_transaction():
    job_id = run_mutation(f.add_note_and_schedule, {"text": "hello"})
    assert Jobs.get(pk=job_id).args == {"key": "hello"}
    with pytest.raises(RuntimeError), transaction.atomic():
        run_mutation(f.add_note_and_schedule, {"text": "gone"})
        raise RuntimeError
    assert Jobs.count() == 1 and Note.objects.count() == 1


def test_action_schedules_commit_at_once_even_if_it_fails_later():
    with pytest.raises(RuntimeError, match="fails after scheduling"):
        run_action(f.schedule_then_fail, {"name": "x"})
    job = Jobs.get()
    assert (job.name, job.state) == ("tests.app.functions:bump", State.PENDING)


def test_queue_and_priority_default_from_the_function_and_can_be_overridden():
    job = Jobs.get(pk=scheduler.run_after(0, f.bump, {"name": "a"}, queue="emails", priority=7))
    assert (job.queue, job.priority) == ("emails", 7)
    with pytest.raises(ValueError, match="queue"):
        scheduler.run_after(0, f.bump, {"name": "a"}, queue="")
    with pytest.raises(TypeError, match="priority"):
        scheduler.run_after(0, f.bump, {"name": "a"}, priority="high")


def test_retry_policy_max_attempts_is_stored():
    assert Jobs.get(pk=scheduler.run_after(0, f.flaky_action, {"name": "a", "fail_times": 0})).max_attempts == 3


def test_cancel_pending_and_repeat_is_harmless():
    job_id = scheduler.run_after(60, f.bump, {"name": "a"})
    assert scheduler.cancel(job_id) is None
    job = Jobs.get(pk=job_id)
    assert job.state == State.CANCELED and job.completed_time is not None
    scheduler.cancel(job_id)
    assert Jobs.get(pk=job_id).completed_time == job.completed_time
    scheduler.cancel(987654321)  # unknown id: nothing happens
    with pytest.raises(TypeError):
        scheduler.cancel("1")


def test_cancel_finished_job_is_a_no_op():
    job_id = scheduler.run_after(0, f.bump, {"name": "a"})
    Jobs.filter(pk=job_id).update(state=State.SUCCESS, completed_time=timezone.now())
    scheduler.cancel(job_id)
    assert Jobs.get(pk=job_id).state == State.SUCCESS


def test_idempotency_key_returns_the_first_job():
    first = scheduler.run_after(5, f.bump, {"name": "a"}, idempotency_key="pay-123")
    second = scheduler.run_after(5, f.bump, {"name": "a"}, idempotency_key="pay-123")
    assert first == second and Jobs.count() == 1
    key = IdempotencyKey.objects.get()
    assert (key.key, key.job_id, key.name) == ("pay-123", first, "tests.app.functions:bump")


def test_idempotency_key_is_released_with_a_rolled_back_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.run_after(0, f.bump, {"name": "a"}, idempotency_key="k")
        raise RuntimeError
    assert not IdempotencyKey.objects.exists()
    assert scheduler.run_after(0, f.bump, {"name": "a"}, idempotency_key="k") == Jobs.get().pk


def test_expired_idempotency_key_schedules_again(settings):
    first = scheduler.run_after(0, f.bump, {"name": "a"}, idempotency_key="k")
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    second = scheduler.run_after(0, f.bump, {"name": "a"}, idempotency_key="k")
    assert first != second and IdempotencyKey.objects.get().job_id == second


def test_job_scheduled_is_sent_on_commit_only():
    from django_scheduled_actions.signals import job_scheduled

    seen = []

    def receiver(sender, job, **kwargs):
        seen.append(job.pk)

    job_scheduled.connect(receiver)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            scheduler.run_after(0, f.bump, {"name": "a"})
            assert seen == []
            raise RuntimeError
        assert seen == []
        with transaction.atomic():
            job_id = scheduler.run_after(0, f.bump, {"name": "a"}, idempotency_key="once")
            scheduler.run_after(0, f.bump, {"name": "a"}, idempotency_key="once")
            assert seen == []
        assert seen == [job_id]
    finally:
        job_scheduled.disconnect(receiver)


# --- run_many: bulk scheduling ---


def test_run_many_writes_one_job_per_item_and_returns_their_ids_in_order():
    before = timezone.now()
    keys = [f"k{n}" for n in range(2500)]  # more than one INSERT's worth (BULK_CHUNK)
    ids = scheduler.run_many(f.record, [{"key": key} for key in keys], delay=timedelta(minutes=1), priority=3)
    assert len(ids) == len(set(ids)) == 2500
    jobs = Jobs.in_bulk(ids)
    assert [jobs[pk].args for pk in ids] == [{"key": key} for key in keys]
    job = jobs[ids[0]]
    assert (job.name, job.kind, job.state, job.queue, job.priority, job.attempts, job.max_attempts, job.parent_id) == (
        f.record.name,
        "mutation",
        State.PENDING,
        "default",
        3,
        0,
        1,
        None,
    )
    assert before + timedelta(minutes=1) <= job.scheduled_time <= timezone.now() + timedelta(minutes=1)
    assert {(j.scheduled_time, j.created_at) for j in jobs.values()} == {(job.scheduled_time, job.created_at)}
    assert scheduler.run_many(f.record, []) == []


def test_run_many_jobs_run_once_each():
    ids = scheduler.run_many(f.record, [{"key": f"k{n}"} for n in range(30)])
    assert run_due_jobs() == 30
    assert sorted(Effect.objects.values_list("job_id", flat=True)) == sorted(ids)
    assert set(Jobs.filter(pk__in=ids).values_list("state", flat=True)) == {State.SUCCESS}


@pytest.mark.parametrize(
    ("items", "message"),
    [
        ([{"key": "a"}, {"key": "b"}, {"key": 3}], r"argument 'key' of .*record: item 2: expected str"),
        ([{"key": "a"}, {"key": "b", "nope": "c"}], r"argument 'nope' of .*record: item 1: unexpected argument"),
        ([{"key": "a"}, None], r"argument 'key' of .*record: item 1: missing required argument"),
    ],
)
def test_run_many_validates_every_item_first_and_names_the_bad_one(items, message):
    with pytest.raises(ArgumentValidationError, match=message):
        scheduler.run_many(f.record, items)
    assert not Jobs.exists()


def test_run_many_refuses_an_oversize_item_and_writes_nothing(settings):
    settings.SCHEDULED_ACTIONS_MAX_ARGS_BYTES = 100
    with pytest.raises(ArgumentValidationError, match=r"item 1: arguments are \d+ bytes serialised, over"):
        scheduler.run_many(f.record, [{"key": "small"}, {"key": "x" * 200}])
    assert not Jobs.exists()


def test_run_many_commits_and_rolls_back_with_the_caller():
    with pytest.raises(RuntimeError), transaction.atomic():
        scheduler.run_many(f.record, [{"key": "a"}, {"key": "b"}])
        assert Jobs.count() == 2
        raise RuntimeError
    assert not Jobs.exists()
    with transaction.atomic():
        scheduler.run_many(f.record, [{"key": "a"}])
        with pytest.raises(RuntimeError), transaction.atomic():
            scheduler.run_many(f.record, [{"key": "dropped"}])
            raise RuntimeError
    assert list(Jobs.values_list("args", flat=True)) == [{"key": "a"}]


def test_run_many_from_a_mutation_records_the_parent_and_a_canceled_parent_schedules_canceled_jobs():
    parent = scheduler.run_after(0, f.record_many, {"keys": ["a", "b"], "delay": 60})
    assert run_due_jobs() == 1
    children = list(Jobs.exclude(pk=parent).order_by("id"))
    assert [(c.args, c.parent_id, c.state) for c in children] == [
        ({"key": "a"}, parent, State.PENDING),
        ({"key": "b"}, parent, State.PENDING),
    ]

    from django_scheduled_actions.core.jobs import JobInfo
    from django_scheduled_actions.scheduling.scheduler import Scheduler

    Jobs.filter(pk=parent).update(state=State.CANCELED)
    under_canceled = Scheduler(parent=JobInfo(parent, f.record_many.name, 1, timezone.now()))
    ids = under_canceled.run_many(f.record, [{"key": "c"}])
    assert Jobs.get(pk=ids[0]).state == State.CANCELED


def test_run_many_sends_job_scheduled_for_each_job_on_commit_only():
    from django_scheduled_actions.signals import job_scheduled

    seen = []

    def receiver(sender, job, **kwargs):
        seen.append((job.pk, job.args, job.name, job.state))

    job_scheduled.connect(receiver)
    try:
        with pytest.raises(RuntimeError), transaction.atomic():
            scheduler.run_many(f.record, [{"key": "a"}])
            raise RuntimeError
        with transaction.atomic():
            ids = scheduler.run_many(f.record, [{"key": "a"}, {"key": "b"}])
            assert seen == []
        assert seen == [
            (ids[0], {"key": "a"}, f.record.name, State.PENDING),
            (ids[1], {"key": "b"}, f.record.name, State.PENDING),
        ]
    finally:
        job_scheduled.disconnect(receiver)


def test_job_canceled_names_the_jobs_it_canceled():
    from django_scheduled_actions.signals import job_canceled

    seen = []
    job_canceled.connect(lambda sender, job_ids, **kw: seen.append(job_ids), weak=False, dispatch_uid="t")
    try:
        job_id = scheduler.run_after(60, f.bump, {"name": "a"})
        scheduler.cancel(job_id)
        scheduler.cancel(job_id)
        assert seen == [[job_id]]
    finally:
        job_canceled.disconnect(dispatch_uid="t")


def test_the_package_exports_the_scheduler_instance_not_a_module():
    import importlib

    import django_scheduled_actions

    importlib.import_module("django_scheduled_actions.scheduling.scheduler")
    from django_scheduled_actions import Scheduler
    from django_scheduled_actions import scheduler as exported

    assert isinstance(exported, Scheduler) and django_scheduled_actions.scheduler is exported
