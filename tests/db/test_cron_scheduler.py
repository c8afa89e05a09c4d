"""cron_scheduler.py: syncing code-defined crons and ``tick(now)`` with a stepped clock, on every database."""

from __future__ import annotations

import logging
import threading
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import IntegrityError, transaction

from django_scheduled_actions.cron import schedules
from django_scheduled_actions.cron import ticker as cron_scheduler
from django_scheduled_actions.cron.definitions import CronRegistry
from django_scheduled_actions.cron.ticker import CronScheduler, Outcome, SkipReason, sync
from django_scheduled_actions.models import CronJob, ScheduledFunction, State
from django_scheduled_actions.signals import cron_skipped
from tests.app import cron_functions as cf

pytestmark = pytest.mark.django_db
AMS = ZoneInfo("Europe/Amsterdam")
T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


@pytest.fixture
def registry() -> CronRegistry:
    return CronRegistry()


@pytest.fixture
def skips():
    received = []

    def receiver(sender, **kwargs):
        received.append((sender, kwargs["cron"].name, kwargs["tick"], kwargs["reason"], kwargs["count"]))

    cron_skipped.connect(receiver)
    yield received
    cron_skipped.disconnect(receiver)


def every_second(registry: CronRegistry, name: str = "every second", label: str = "s") -> CronJob:
    registry.jobs("tests.crons").interval(name, {"seconds": 1}, cf.mark, {"label": label})
    sync(T0, registry)
    return CronJob.objects.get(name=name)


def runs(row: CronJob) -> list[datetime]:
    fired = ScheduledFunction.objects.filter(cron=row).order_by("cron_tick")
    return list(fired.values_list("cron_tick", flat=True))


def finish_runs() -> None:
    """What a worker would do: run the pending cron jobs (here: mark them succeeded)."""
    ScheduledFunction.objects.filter(cron__isnull=False, state__in=(State.PENDING, State.IN_PROGRESS)).update(
        state=State.SUCCESS
    )


# --- sync ---


def test_sync_adds_updates_and_removes_code_crons_with_a_log_line_each(registry, caplog):
    caplog.set_level(logging.INFO, logger="django_scheduled_actions")
    jobs = registry.jobs("shop.crons")
    jobs.interval("cleanup", {"hours": 1}, cf.ping)
    jobs.cron("report", "0 9 * * *", cf.mark, {"label": "r"}, tz="Europe/Amsterdam")
    CronJob.objects.create(name="by hand", function=cf.ping.name, interval_seconds=60)

    assert sync(T0, registry) == cron_scheduler.SyncReport(["cleanup", "report"], [], [])
    report = CronJob.objects.get(name="report")
    assert (
        report.source,
        report.function,
        report.args,
        report.expression,
        report.interval_seconds,
        report.timezone,
        report.enabled,
    ) == ("code", cf.mark.name, {"label": "r"}, "0 9 * * *", None, "Europe/Amsterdam", True)
    assert report.next_run_at == utc(2024, 5, 2, 7)  # 09:00 CEST
    assert CronJob.objects.get(name="cleanup").next_run_at == utc(2024, 5, 1, 13)
    assert sync(T0, registry) == cron_scheduler.SyncReport([], [], [])

    CronJob.objects.filter(name="report").update(enabled=False)  # the admin's switch is kept
    jobs = registry.jobs("shop.crons")
    jobs.interval("cleanup", {"hours": 1}, cf.ping, {"times": 3})
    jobs.cron("report", "0 10 * * *", cf.mark, {"label": "r"}, tz="Europe/Amsterdam")
    later = T0 + timedelta(days=3)
    assert sync(later, registry) == cron_scheduler.SyncReport([], ["cleanup", "report"], [])
    report.refresh_from_db()
    assert (report.expression, report.enabled) == ("0 10 * * *", False)
    assert report.next_run_at == utc(2024, 5, 5, 8)  # a new schedule: from its next tick
    cleanup = CronJob.objects.get(name="cleanup")
    assert (cleanup.args, cleanup.next_run_at) == ({"times": 3}, utc(2024, 5, 1, 13))  # same schedule: kept

    registry.jobs("shop.crons")
    assert sync(later, registry) == cron_scheduler.SyncReport([], [], ["cleanup", "report"])
    assert list(CronJob.objects.values_list("name", flat=True)) == ["by hand"]
    messages = [r.getMessage() for r in caplog.records]
    assert sum(m.startswith("cron added") for m in messages) == 2
    assert "cron updated name='report' changed=expression" in messages
    assert "cron updated name='cleanup' changed=args" in messages
    assert sum(m.startswith("cron removed") for m in messages) == 2


def test_sync_refuses_invalid_definitions(registry):
    registry.jobs("shop.crons").cron("bad", "61 * * * *", cf.ping)
    with pytest.raises(ImproperlyConfigured, match="invalid cron expression '61"):
        sync(T0, registry)


def test_code_takes_over_an_admin_cron_of_the_same_name(registry):
    CronJob.objects.create(name="cleanup", function=cf.ping.name, interval_seconds=60)
    registry.jobs("shop.crons").interval("cleanup", {"hours": 1}, cf.ping)
    assert sync(T0, registry).updated == ["cleanup"]
    assert CronJob.objects.get(name="cleanup").source == "code"


# --- firing ---


def test_a_tick_fires_one_run_with_cron_and_tick_set(registry, django_capture_on_commit_callbacks):
    row = every_second(registry)
    scheduler = CronScheduler()
    assert row.next_run_at == T0 + timedelta(seconds=1)
    assert scheduler.tick(T0 + timedelta(milliseconds=999)) == []
    with django_capture_on_commit_callbacks(execute=True):
        (result,) = scheduler.tick(T0 + timedelta(seconds=1, milliseconds=5))
    assert (result.outcome, result.tick, result.skipped) == (Outcome.FIRED, T0 + timedelta(seconds=1), 0)
    job = ScheduledFunction.objects.get(pk=result.job_id)
    assert (job.name, job.kind, job.args, job.state, job.cron_id, job.cron_tick, job.scheduled_time) == (
        cf.mark.name,
        "mutation",
        {"label": "s"},
        State.PENDING,
        row.pk,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=1),
    )
    row.refresh_from_db()
    assert (row.last_run_at, row.next_run_at, row.skipped_count) == (
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=2),
        0,
    )
    assert scheduler.next_tick() == T0 + timedelta(seconds=2)
    assert scheduler.tick(T0 + timedelta(seconds=1, milliseconds=500)) == []


def test_one_run_per_tick_is_a_named_unique_constraint(registry):
    row = every_second(registry)
    job = {"name": cf.ping.name, "kind": "action", "scheduled_time": T0}
    ScheduledFunction.objects.create(**job, cron=row, cron_tick=T0)
    refused = "sa_job_cron_tick_unique|UNIQUE constraint failed|Duplicate entry"
    with pytest.raises(IntegrityError, match=refused), transaction.atomic():
        ScheduledFunction.objects.create(**job, cron=row, cron_tick=T0)
    ScheduledFunction.objects.create(**job)  # jobs that are not cron runs are not limited
    ScheduledFunction.objects.create(**job)


@pytest.mark.parametrize(
    "schedule",
    [{}, {"expression": "0 9 * * *", "interval_seconds": 60}, {"interval_seconds": 0.5}],
    ids=["neither", "both", "too short"],
)
def test_a_cron_row_has_exactly_one_schedule(schedule):
    with pytest.raises(IntegrityError), transaction.atomic():
        CronJob.objects.create(name="x", function=cf.ping.name, **schedule)


def test_a_tick_that_has_its_run_already_is_a_typed_outcome(registry):
    row = every_second(registry)
    scheduler = CronScheduler()
    first = scheduler.tick(T0 + timedelta(seconds=1))[0]
    finish_runs()
    CronJob.objects.filter(pk=row.pk).update(next_run_at=T0 + timedelta(seconds=1))  # the cursor went back
    (again,) = scheduler.tick(T0 + timedelta(seconds=1, milliseconds=100))
    assert (first.outcome, again.outcome, again.tick) == (Outcome.FIRED, Outcome.ALREADY_FIRED, first.tick)
    assert runs(row) == [T0 + timedelta(seconds=1)]
    row.refresh_from_db()
    assert row.next_run_at == T0 + timedelta(seconds=2)  # and the cursor moves on


def test_workers_that_read_the_cron_before_another_fired_it_write_nothing(registry):
    row = every_second(registry)
    stale = [CronJob.objects.get(pk=row.pk) for _ in range(3)]
    now = T0 + timedelta(seconds=1)
    assert CronScheduler().handle(row, now).outcome is Outcome.FIRED
    # the run is pending: a late worker takes the skip path, and the moved cursor tells it the tick is done
    assert CronScheduler().handle(stale[0], now).outcome is Outcome.TAKEN
    finish_runs()
    # the run has finished: a late worker tries to fire, and the unique constraint refuses
    assert CronScheduler().handle(stale[1], now).outcome is Outcome.ALREADY_FIRED
    ScheduledFunction.objects.filter(cron=row).delete()
    # the run is gone (pruned): its insert succeeds, the cursor compare-and-set fails and rolls it back
    assert CronScheduler().handle(stale[2], now).outcome is Outcome.TAKEN
    assert runs(row) == []
    row.refresh_from_db()
    assert (row.next_run_at, row.skipped_count) == (now + timedelta(seconds=1), 0)


# --- no overlap, downtime ---


def test_a_tick_finding_the_previous_run_unfinished_is_skipped_logged_and_counted(
    registry, skips, caplog, django_capture_on_commit_callbacks
):
    row = every_second(registry)
    scheduler = CronScheduler()
    with django_capture_on_commit_callbacks(execute=True):
        assert scheduler.tick(T0 + timedelta(seconds=1))[0].outcome is Outcome.FIRED
        (pending,) = scheduler.tick(T0 + timedelta(seconds=2))
        ScheduledFunction.objects.filter(cron=row).update(state=State.IN_PROGRESS)
        (running,) = scheduler.tick(T0 + timedelta(seconds=3))
        finish_runs()
        (free,) = scheduler.tick(T0 + timedelta(seconds=4))
    assert [(r.outcome, r.reason, r.skipped) for r in (pending, running, free)] == [
        (Outcome.SKIPPED, SkipReason.OVERLAP, 1),
        (Outcome.SKIPPED, SkipReason.OVERLAP, 1),
        (Outcome.FIRED, None, 0),
    ]
    assert runs(row) == [T0 + timedelta(seconds=1), T0 + timedelta(seconds=4)]
    row.refresh_from_db()
    assert row.skipped_count == 2
    assert skips == [
        (CronJob, "every second", T0 + timedelta(seconds=2), "overlap", 1),
        (CronJob, "every second", T0 + timedelta(seconds=3), "overlap", 1),
    ]
    assert "cron tick skipped name='every second' tick=2024-05-01T12:00:02+00:00 reason=overlap count=1" in [
        r.getMessage() for r in caplog.records
    ]


def test_after_downtime_one_overdue_run_fires_and_the_rest_are_counted(
    registry, skips, django_capture_on_commit_callbacks
):
    row = every_second(registry)
    scheduler = CronScheduler()
    down_for = 6  # ticks T0+1s ... T0+6s pass with no worker
    with django_capture_on_commit_callbacks(execute=True):
        (result,) = scheduler.tick(T0 + timedelta(seconds=down_for, milliseconds=300))
    assert (result.outcome, result.tick, result.skipped, result.reason) == (
        Outcome.FIRED,
        T0 + timedelta(seconds=down_for),
        down_for - 1,
        SkipReason.MISSED,
    )
    assert runs(row) == [T0 + timedelta(seconds=down_for)]
    row.refresh_from_db()
    assert (row.skipped_count, row.next_run_at) == (down_for - 1, T0 + timedelta(seconds=down_for + 1))
    assert skips == [(CronJob, "every second", T0 + timedelta(seconds=1), "missed", down_for - 1)]


def test_a_cron_whose_function_is_gone_is_skipped_as_invalid(skips, django_capture_on_commit_callbacks):
    row = CronJob.objects.create(name="orphan", function="gone.functions:nothing", interval_seconds=1, next_run_at=T0)
    with django_capture_on_commit_callbacks(execute=True):
        (result,) = CronScheduler().tick(T0)
    assert (result.outcome, result.reason) == (Outcome.SKIPPED, SkipReason.INVALID)
    assert runs(row) == [] and skips == [(CronJob, "orphan", T0, "invalid", 1)]


def test_disabled_crons_do_not_fire_and_new_rows_start_at_their_next_tick():
    CronJob.objects.create(name="off", function=cf.ping.name, interval_seconds=1, next_run_at=T0, enabled=False)
    fresh = CronJob.objects.create(name="fresh", function=cf.ping.name, interval_seconds=1)
    scheduler = CronScheduler()
    assert scheduler.tick(T0 + timedelta(milliseconds=500)) == []
    fresh.refresh_from_db()
    assert fresh.next_run_at == T0 + timedelta(seconds=1)
    assert [r.cron for r in scheduler.tick(T0 + timedelta(seconds=1))] == ["fresh"]


# --- DST, with a stepped clock ---


def step_through(row: CronJob, start: datetime, end: datetime, step: timedelta) -> list[datetime]:
    """Tick every ``step`` from ``start`` to ``end``, finishing runs as a worker would; the fired ticks."""
    scheduler = CronScheduler()
    CronJob.objects.filter(pk=row.pk).update(next_run_at=schedules.for_row(row).next_after(start))
    now = start
    while now <= end:
        for result in scheduler.tick(now):
            assert result.outcome is Outcome.FIRED, result
        finish_runs()
        now += step
    row.refresh_from_db()
    assert row.skipped_count == 0
    return runs(row)


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (datetime(2024, 3, 31, tzinfo=AMS), "2024-03-31T03:00:00+02:00"),  # 02:30 does not exist: at the jump
        (datetime(2024, 10, 27, tzinfo=AMS), "2024-10-27T02:30:00+02:00"),  # 02:30 happens twice: the first
    ],
    ids=["spring forward", "fall back"],
)
def test_daily_job_at_half_past_two_runs_once_on_transition_days(day, expected):
    row = CronJob.objects.create(
        name="daily", function=cf.ping.name, expression="30 2 * * *", timezone="Europe/Amsterdam"
    )
    start = day.astimezone(UTC) - timedelta(hours=1)
    fired = step_through(row, start, start + timedelta(days=1), timedelta(minutes=1))
    assert [t.astimezone(AMS).isoformat() for t in fired] == [expected]


@pytest.mark.parametrize(
    "day", [datetime(2024, 3, 31, tzinfo=AMS), datetime(2024, 10, 27, tzinfo=AMS)], ids=["spring forward", "fall back"]
)
def test_hourly_job_runs_every_real_hour_across_transitions(day):
    row = CronJob.objects.create(
        name="hourly", function=cf.ping.name, expression="0 * * * *", timezone="Europe/Amsterdam"
    )
    start = day.astimezone(UTC)
    fired = step_through(row, start, start + timedelta(hours=6, minutes=59), timedelta(minutes=5))
    assert fired == [start + timedelta(hours=h) for h in range(1, 7)]


# --- in the worker ---


@pytest.mark.django_db(transaction=True)
def test_the_workers_cron_loop_syncs_then_ticks_on_its_clock(registry):
    """The loop a worker runs, on a clock that moves half a second per reading: no real waiting."""
    registry.jobs("tests.crons").interval("every second", {"seconds": 1}, cf.mark, {"label": "loop"})
    readings = iter(T0 + timedelta(milliseconds=500 * n) for n in range(1000))
    stopping = threading.Event()
    loop = cron_scheduler.CronLoop(
        stopping, clock=lambda: next(readings), recheck=0.01, crons=registry, on_fired=stopping.set
    )
    loop.start()
    loop.join(30)
    assert not loop.is_alive()
    row = CronJob.objects.get(name="every second")
    assert (row.source, runs(row)) == ("code", [T0 + timedelta(seconds=1)])


@pytest.mark.django_db(transaction=True)
def test_burst_workers_and_no_crons_workers_leave_crons_alone(registry):
    from django.core.management import call_command

    from django_scheduled_actions.worker.worker import Worker

    assert Worker(burst=True).crons is False and Worker(crons=False).crons is False and Worker().crons is True
    call_command("runworker", burst=True)
    call_command("runworker", burst=True, no_crons=True)
    assert not CronJob.objects.exists()


def test_a_row_whose_schedule_does_not_parse_is_disabled_and_the_others_still_fire(caplog):
    broken = CronJob.objects.create(
        name="broken", function=cf.ping.name, expression="0 9 * * *", timezone="Gone/Away", next_run_at=T0
    )
    CronJob.objects.create(name="fine", function=cf.ping.name, interval_seconds=1, next_run_at=T0)
    assert [(r.cron, r.outcome) for r in CronScheduler().tick(T0)] == [("fine", Outcome.FIRED)]
    broken.refresh_from_db()
    assert not broken.enabled
    assert "cron disabled: invalid schedule name='broken' error=unknown time zone 'Gone/Away'" in [
        r.getMessage() for r in caplog.records
    ]
