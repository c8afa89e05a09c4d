"""cron.py: parsing, the ticks after a moment, DST, and agreement with croniter (property tests)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, available_timezones

import pytest
from croniter import croniter
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_scheduled_actions.cron import schedules as cron
from django_scheduled_actions.cron.schedules import Cron, Interval

AMS = ZoneInfo("Europe/Amsterdam")
SPRING = datetime(2024, 3, 31, tzinfo=AMS)  # 02:00 CET -> 03:00 CEST, at 01:00 UTC
AUTUMN = datetime(2024, 10, 27, tzinfo=AMS)  # 03:00 CEST -> 02:00 CET, at 01:00 UTC


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def ticks_between(schedule: cron.Schedule, start: datetime, end: datetime) -> list[datetime]:
    out = []
    for tick in schedule.iter_after(start):
        if tick >= end:
            return out
        out.append(tick)
    raise AssertionError("unreachable")


# --- intervals ---


def test_interval_ticks_are_whole_multiples_since_the_epoch():
    every_second = Interval(timedelta(seconds=1))
    midnight = utc(2024, 1, 1)
    assert every_second.next_after(midnight + timedelta(microseconds=1)) == utc(2024, 1, 1, 0, 0, 1)
    assert every_second.next_after(midnight) == utc(2024, 1, 1, 0, 0, 1)
    hourly = cron.interval_from({"hours": 1})
    assert hourly.next_after(utc(2024, 1, 1, 10, 59, 59)) == utc(2024, 1, 1, 11)
    assert cron.interval_from({"minutes": 90}).next_after(utc(2024, 1, 1)) == utc(2024, 1, 1, 1, 30)


def test_interval_due_counts_the_ticks_in_a_closed_range():
    every_second = Interval(timedelta(seconds=1))
    assert every_second.due(utc(2024, 1, 1, 0, 0, 5), utc(2024, 1, 1, 0, 0, 4, 999999)) == (None, 0)
    five = utc(2024, 1, 1, 0, 0, 5)
    assert every_second.due(five, five) == (five, 1)
    assert every_second.due(utc(2024, 1, 1, 0, 0, 5), utc(2024, 1, 1, 0, 0, 9, 500000)) == (utc(2024, 1, 1, 0, 0, 9), 5)
    day = 86400
    assert every_second.due(utc(2024, 1, 1), utc(2024, 1, 2)) == (utc(2024, 1, 2), day + 1)


@pytest.mark.parametrize(
    "spec",
    [
        {"seconds": 0.5},
        {"seconds": 0},
        {"minutes": -1},
        timedelta(milliseconds=999),
        {"days": 1},
        {"seconds": 1, "minutes": 1},
        {},
        5,
        {"seconds": "5"},
        {"seconds": float("nan")},
        {"hours": 10**20},
    ],
)
def test_bad_intervals(spec):
    with pytest.raises(cron.InvalidInterval):
        cron.interval_from(spec)


# --- cron expressions ---


@pytest.mark.parametrize(
    "expression",
    ["61 * * * *", "* 24 * * *", "* * * * * *", "* * * *", "", "@reboot", "0 0 30 2 *", "H * * * *", "every day"],
)
def test_bad_expressions(expression):
    with pytest.raises(cron.InvalidExpression):
        Cron(expression)


@pytest.mark.parametrize("name", ["Mars/Olympus_Mons", "", "CEST+2", "../etc/passwd"])
def test_unknown_time_zones(name):
    with pytest.raises(cron.UnknownTimeZone):
        Cron("0 9 * * *", name)


def test_expressions_are_normalised_and_macros_accepted():
    assert Cron("  0   9 * *  * ").expression == "0 9 * * *"
    assert Cron("@Daily").expression == "@daily"
    assert Cron("@daily").next_after(utc(2024, 1, 1, 12)) == utc(2024, 1, 2)


def test_cron_is_evaluated_in_its_time_zone():
    nine_in_amsterdam = Cron("0 9 * * *", "Europe/Amsterdam")
    assert nine_in_amsterdam.next_after(utc(2024, 1, 15)) == utc(2024, 1, 15, 8)  # CET, UTC+1
    assert nine_in_amsterdam.next_after(utc(2024, 7, 15)) == utc(2024, 7, 15, 7)  # CEST, UTC+2


def test_helpers_build_utc_expressions():
    assert cron.helper_expression("hourly", {"minute_utc": 5}) == "5 * * * *"
    assert cron.helper_expression("daily", {"hour_utc": 9, "minute_utc": 0}) == "0 9 * * *"
    sunday = {"day_of_week": "Sunday", "hour_utc": 0, "minute_utc": 0}
    assert cron.helper_expression("weekly", sunday) == "0 0 * * 0"
    assert cron.helper_expression("monthly", {"day": 31, "hour_utc": 23, "minute_utc": 59}) == "59 23 31 * *"
    for kind, spec in [
        ("hourly", {"minute": 5}),
        ("hourly", {"minute_utc": 60}),
        ("daily", {"hour_utc": 9}),
        ("weekly", {"day_of_week": "sun", "hour_utc": 0, "minute_utc": 0}),
        ("monthly", {"day": 0, "hour_utc": 0, "minute_utc": 0}),
        ("daily", "9:00"),
        ("daily", {"hour_utc": True, "minute_utc": 0}),
    ]:
        with pytest.raises(cron.InvalidExpression):
            cron.helper_expression(kind, spec)


def test_describe():
    assert Cron("0 9 * * *", "Europe/Amsterdam").describe() == "every day at 09:00 (Europe/Amsterdam)"
    assert Cron("5 * * * *").describe() == "every hour at minute 5 (UTC)"
    assert Cron("0 0 * * 0").describe() == "every Sunday at 00:00 (UTC)"
    assert Cron("0 0 1 * *").describe() == "on day 1 of every month at 00:00 (UTC)"
    assert Cron("*/15 * * * *").describe() == "every 15 minutes (UTC)"
    assert Cron("0 9 1 1 *").describe() == "cron “0 9 1 1 *” (UTC)"
    assert Interval(timedelta(seconds=1)).describe() == "every 1 second"
    assert Interval(timedelta(hours=2)).describe() == "every 2 hours"
    assert Interval(timedelta(seconds=90)).describe() == "every 90 seconds"


# --- DST, explicitly ---


def test_daily_job_in_the_skipped_hour_runs_once_when_the_clocks_jump():
    daily = Cron("30 2 * * *", "Europe/Amsterdam")
    runs = ticks_between(daily, SPRING - timedelta(days=1), SPRING + timedelta(days=2))
    assert [r.astimezone(AMS).isoformat() for r in runs] == [
        "2024-03-30T02:30:00+01:00",
        "2024-03-31T03:00:00+02:00",  # 02:30 does not exist that day: at the jump
        "2024-04-01T02:30:00+02:00",
    ]


def test_daily_job_in_the_repeated_hour_runs_once():
    daily = Cron("30 2 * * *", "Europe/Amsterdam")
    runs = ticks_between(daily, AUTUMN - timedelta(days=1), AUTUMN + timedelta(days=2))
    assert [r.astimezone(AMS).isoformat() for r in runs] == [
        "2024-10-26T02:30:00+02:00",
        "2024-10-27T02:30:00+02:00",  # the first 02:30 only
        "2024-10-28T02:30:00+01:00",
    ]


@pytest.mark.parametrize("day", [SPRING, AUTUMN], ids=["spring", "autumn"])
@pytest.mark.parametrize("minute", [0, 30])
def test_hourly_job_runs_every_real_hour(day, minute):
    hourly = Cron(f"{minute} * * * *", "Europe/Amsterdam")
    start = day.astimezone(UTC) - timedelta(hours=3)  # twelve real hours around the transition
    runs = ticks_between(hourly, start - timedelta(microseconds=1), start + timedelta(hours=12))
    assert len(runs) == 12
    assert all(b - a == timedelta(hours=1) for a, b in zip(runs, runs[1:], strict=False))
    assert {r.minute for r in runs} == {minute}


def test_due_after_downtime_counts_every_missed_tick_once():
    daily = Cron("30 2 * * *", "Europe/Amsterdam")
    last, count = daily.due(utc(2024, 10, 20, 0, 30), utc(2024, 10, 30, 12))
    assert (last, count) == (utc(2024, 10, 30, 1, 30), 11)  # 20th to 30th: one per day, DST or not
    every_minute = Cron("* * * * *")
    capped = every_minute.due(utc(2024, 1, 1), utc(2024, 1, 1, 10, 0, 30), limit=100)
    assert capped == (utc(2024, 1, 1, 10), 100)  # counting stops at the limit; the last tick is still right


# --- property tests: agreement with croniter ---

ZONES = sorted(available_timezones() - {"Factory"})


def _field(low: int, high: int) -> st.SearchStrategy[str]:
    number = st.integers(low, high)
    return st.one_of(
        st.just("*"),
        number.map(str),
        st.integers(2, 15).map(lambda k: f"*/{k}"),
        st.tuples(number, number).map(lambda ab: f"{min(ab)}-{max(ab)}"),
        st.lists(number, min_size=1, max_size=3, unique=True).map(lambda xs: ",".join(map(str, sorted(xs)))),
    )


EXPRESSIONS = st.tuples(
    _field(0, 59),
    st.one_of(_field(0, 23), _field(0, 4)),  # early hours often, where transitions are
    st.one_of(st.just("*"), st.integers(1, 28).map(str)),
    st.one_of(st.just("*"), _field(1, 12)),
    st.one_of(st.just("*"), _field(0, 6)),
).map(" ".join)


def croniter_next(schedule: Cron, after: datetime) -> datetime:
    """croniter's next run, minus the one place the rules differ on purpose: croniter fires a fixed-hour
    job at both occurrences of a repeated wall time; we fire it at the first only."""
    ticks = croniter(schedule.expression, after.astimezone(schedule.tz))
    while True:
        run = ticks.get_next(datetime)
        wall = run.replace(tzinfo=None)
        first, second = (wall.replace(tzinfo=schedule.tz, fold=f).utcoffset() for f in (0, 1))
        if first > second and run.utcoffset() == second and not schedule.every_hour:
            continue
        return run.astimezone(UTC)


def transitions(tz: ZoneInfo, year: int) -> list[datetime]:
    """The instants in ``year`` at which ``tz`` changes its offset (to the second)."""
    found, moment = [], datetime(year, 1, 1, tzinfo=UTC)
    offset = moment.astimezone(tz).utcoffset()
    while moment.year == year:
        step = moment + timedelta(hours=6)
        if step.astimezone(tz).utcoffset() != offset:
            low, high = moment, step
            while high - low > timedelta(seconds=1):
                middle = low + (high - low) / 2
                low, high = (middle, high) if middle.astimezone(tz).utcoffset() == offset else (low, middle)
            found.append(high)
        moment, offset = step, step.astimezone(tz).utcoffset()
    return found


PROPERTY_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(EXPRESSIONS, st.sampled_from(ZONES), st.datetimes(datetime(1990, 1, 1), datetime(2037, 12, 31)))
def test_next_run_agrees_with_croniter(expression, zone_name, moment):
    schedule = Cron(expression, zone_name)
    after = moment.replace(tzinfo=UTC)
    assert schedule.next_after(after) == croniter_next(schedule, after)


@PROPERTY_SETTINGS
@given(EXPRESSIONS, st.sampled_from(ZONES), st.integers(1990, 2037), st.data())
def test_next_run_agrees_with_croniter_around_transitions(expression, zone_name, year, data):
    schedule = Cron(expression, zone_name)
    changes = transitions(schedule.tz, year)
    if not changes:
        return
    change = data.draw(st.sampled_from(changes))
    after = change + timedelta(seconds=data.draw(st.integers(-4 * 3600, 4 * 3600)))
    assert schedule.next_after(after) == croniter_next(schedule, after)


@PROPERTY_SETTINGS
@given(
    EXPRESSIONS,
    st.sampled_from(
        ["Europe/Amsterdam", "America/New_York", "Australia/Lord_Howe", "America/Santiago", "Asia/Tehran", "UTC"]
    ),
    st.datetimes(datetime(2020, 1, 1), datetime(2030, 1, 1)),
)
def test_ticks_increase_and_iteration_matches_next_after(expression, zone_name, moment):
    schedule = Cron(expression, zone_name)
    after = moment.replace(tzinfo=UTC)
    ticks = schedule.iter_after(after)
    runs = [next(ticks) for _ in range(5)]
    assert runs == sorted(set(runs)) and runs[0] > after
    assert [schedule.next_after(r) for r in runs[:-1]] == runs[1:]
