"""Bad input, fuzzed: every call either succeeds or raises the documented error, and a failure writes nothing.

- argument validation (``fn.validator``), the scheduler (``run_after`` / ``run_at``), ``run_mutation``, the
  admin's ``CronJobForm`` and the cron parser get arbitrary JSON-ish values, wrong types, huge and deeply
  nested payloads, lone surrogates, NUL characters, NaN and infinities;
- job rows corrupted in the database (arguments of the wrong shape or not an object, an unknown state, kind
  or function) are failed with a clear error or left alone, and never take the worker down.

One body for every database (``DATABASE_URL``), like the other tests.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

import pytest
from django.core.exceptions import ValidationError
from django.core.management import call_command
from django.db import transaction
from django.test import override_settings
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from django_scheduled_actions import (
    ArgumentValidationError,
    internal_action,
    internal_mutation,
    run_mutation,
    scheduler,
)
from django_scheduled_actions.admin.forms import CronJobForm
from django_scheduled_actions.cron import schedules as cron_maths
from django_scheduled_actions.models import CronJob, ScheduledFunction, State
from tests.app.models import Effect

DOCUMENTED = (ArgumentValidationError, ValueError, TypeError, ValidationError)
FUZZ = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@internal_mutation
def typed(
    ctx,
    i: int,
    f: float,
    s: str,
    b: bool,
    when: datetime,
    day: date,
    uid: UUID,
    amount: Decimal,
    pick: Literal["a", 1],
    items: list[int],
    table: dict[str, float],
    maybe: str | None = None,
    anything: Any = None,
) -> int:
    return Effect.objects.create(key="typed").pk


@internal_mutation
def free(ctx, payload: Any = None, text: str = "") -> int:
    """Takes any JSON value: only what JSON (and the databases' JSON types) cannot hold is refused."""
    return Effect.objects.create(key="free").pk


@internal_action
def free_action(ctx, payload: Any = None) -> int:
    return 1


# --- strategies: JSON-ish values, and the things JSON cannot hold ---

nasty_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20) | st.sampled_from(
    ["\ud800", "a\udfffb", "\x00", "nul\x00inside", "\ufeff", "\U0001f600", "", " " * 3]
)
nasty_float = st.floats(allow_nan=True, allow_infinity=True) | st.sampled_from([math.nan, math.inf, -math.inf, -0.0])
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | nasty_float
    | nasty_text
    | st.binary(max_size=8)
    | st.datetimes()
    | st.dates()
    | st.decimals(allow_nan=True, allow_infinity=True)
    | st.uuids()
    | st.sampled_from([object(), {1, 2}, b"\xff\xfe", (1, 2), float, Ellipsis])
)
json_ish = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(nasty_text | st.integers() | st.none(), inner, max_size=4)
    ),
    max_leaves=20,
)
PARAMS = ["i", "f", "s", "b", "when", "day", "uid", "amount", "pick", "items", "table", "maybe", "anything"]
typed_args = st.dictionaries(st.sampled_from(PARAMS) | nasty_text, json_ish, max_size=8)


def deep(levels: int) -> Any:
    value: Any = 0
    for i in range(levels):
        value = [value] if i % 2 else {"k": value}
    return value


def strings_of(value: Any):
    """Every string in a JSON value, dict keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from strings_of(item)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from strings_of(item)


def assert_storable(json_args: Any) -> None:
    """What validation accepts is plain JSON every supported database stores: no NaN, no lone surrogate
    and no NUL anywhere (PostgreSQL's jsonb refuses both escapes), keys included."""
    text = json.dumps(json_args, allow_nan=False)
    assert json.loads(text) == json_args
    for s in strings_of(json_args):
        s.encode("utf-8")  # raises on a lone surrogate
        assert "\x00" not in s, f"NUL accepted in {s!r}"


# --- argument validation ---


@FUZZ
@given(args=typed_args)
def test_validation_accepts_storable_json_or_raises_argument_validation_error(args):
    try:
        out = typed.validator.to_json(args)
    except ArgumentValidationError:
        return
    assert_storable(out)
    back = typed.validator.to_python(json.loads(json.dumps(out)))
    assert set(back) == set(out)


@FUZZ
@given(payload=json_ish)
def test_any_parameter_takes_json_and_nothing_else(payload):
    try:
        out = free.validator.to_json({"payload": payload})
    except ArgumentValidationError:
        return
    assert_storable(out)


@FUZZ
@given(args=json_ish)
def test_arguments_that_are_not_a_dict_are_refused(args):
    if isinstance(args, dict):
        return
    with pytest.raises(ArgumentValidationError):
        free.validator.to_json(args)
    with pytest.raises(ArgumentValidationError):
        free.validator.to_python(args)


def test_deeply_nested_payloads_are_refused_cleanly():
    assert_storable(free.validator.to_json({"payload": deep(60)}))
    for levels in (70, 500, 5000):
        with pytest.raises(ArgumentValidationError, match="nested deeper"):
            free.validator.to_json({"payload": deep(levels)})


# --- the scheduler and run_mutation: all or nothing ---

delays = (
    st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.sampled_from([True, None, "5", timedelta(days=10**6), timedelta(seconds=-5), math.nan, math.inf])
)
whens = (
    delays
    | st.datetimes()
    | st.datetimes(timezones=st.just(UTC))
    | st.sampled_from([datetime.max.replace(tzinfo=UTC), datetime.min.replace(tzinfo=UTC)])
)


def schedules_or_refuses(call) -> None:
    """``call`` returns a job id (one more row) or raises a documented error (no row); the database is usable."""
    before = ScheduledFunction.objects.count()
    try:
        with transaction.atomic():  # a savepoint: an undocumented database error must not poison the test
            job_id = call()
    except DOCUMENTED:
        assert ScheduledFunction.objects.count() == before, "a refused schedule left a job row behind"
        return
    assert isinstance(job_id, int)
    assert ScheduledFunction.objects.count() == before + 1
    assert_storable(ScheduledFunction.objects.get(pk=job_id).args)


@pytest.mark.django_db
@FUZZ
@given(delay=delays, args=typed_args | json_ish)
def test_run_after_schedules_or_refuses_without_writing(delay, args):
    schedules_or_refuses(lambda: scheduler.run_after(delay, typed, args))


@pytest.mark.django_db
@FUZZ
@given(when=whens, payload=json_ish)
def test_run_at_schedules_or_refuses_without_writing(when, payload):
    schedules_or_refuses(lambda: scheduler.run_at(when, free_action, {"payload": payload}))


@pytest.mark.django_db
@FUZZ
@given(payload=json_ish, text=nasty_text)
def test_run_mutation_runs_or_refuses_without_writing(payload, text):
    before = Effect.objects.count()
    try:
        with transaction.atomic():
            run_mutation(free, {"payload": payload, "text": text})
    except DOCUMENTED:
        assert Effect.objects.count() == before
        return
    assert Effect.objects.count() == before + 1


@pytest.mark.django_db
@pytest.mark.parametrize(
    "make",
    [
        lambda: "x" * (2 * 1024 * 1024),
        lambda: ["y" * 1000] * 3000,
        lambda: {f"k{i}": i for i in range(200_000)},
        lambda: 10**5000,
    ],
    ids=["2MiB-string", "3MB-list", "200k-keys", "5000-digit-int"],
)
def test_huge_payloads_are_not_scheduled(make):
    """SCHEDULED_ACTIONS_MAX_ARGS_BYTES bounds what is stored; ``run_mutation`` stores no arguments, so it
    runs (once) or refuses."""
    payload = make()
    with pytest.raises(DOCUMENTED):
        scheduler.run_after(0, free, {"payload": payload})
    assert not ScheduledFunction.objects.exists()
    try:
        run_mutation(free, {"payload": payload})
    except DOCUMENTED:
        assert not Effect.objects.exists()
    else:
        assert Effect.objects.count() == 1


# --- the admin's cron form ---

# what an HTTP form can carry: any text but lone surrogates (a browser cannot encode them; Django decodes a
# request body with errors="replace"). NUL can be sent ("%00") and must be refused by the form.
form_text = st.text(st.characters(codec="utf-8"), max_size=20) | st.sampled_from(["\x00", "a\x00b"])
form_text |= st.sampled_from(
    [
        "",
        "0 9 * * *",
        "*/5 * * * *",
        "@daily",
        "61 * * * *",
        "* * * *",
        "0 0 30 2 *",
        "1e400",
        "nan",
        "inf",
        "-1",
        "0.5",
        "1",
        "86400",
        '{"label": "x"}',
        "[1]",
        "null",
        '{"label": 1}',
        "{",
        "UTC",
        "Europe/Amsterdam",
        "Mars/Base",
        "tests.app.cron_functions:mark",
        "1e15",
        "86400000000000",
        "1e13",
    ]
)


@pytest.mark.django_db
@FUZZ
@given(
    data=st.fixed_dictionaries(
        {field: form_text for field in ("name", "function", "args", "expression", "interval_seconds", "timezone")}
    )
)
def test_cron_form_validates_or_reports_errors(data):
    form = CronJobForm(data=data)
    if not form.is_valid():
        assert form.errors
        return
    row = form.save(commit=False)
    row.full_clean()
    cron_maths.for_row(row)  # a valid form gives a usable schedule
    assert_storable(row.args)
    with transaction.atomic():
        row.save()
    assert CronJob.objects.filter(pk=row.pk).exists()


# --- the cron parser ---


@settings(max_examples=400, deadline=None)
@given(
    expression=nasty_text | st.text(alphabet="0123456789*/-,LW#?@ abcdefghijklmnopqrstuvwxyzJANFEBMONSU", max_size=40),
    tz=nasty_text | st.sampled_from(["UTC", "Europe/Amsterdam", "America/New_York", "Asia/Kolkata"]),
)
def test_cron_parser_parses_or_raises_invalid_schedule(expression, tz):
    try:
        schedule = cron_maths.build(expression, None, tz)
    except cron_maths.InvalidSchedule:
        return
    start = datetime(2024, 3, 30, 23, 0, tzinfo=UTC)
    ticks = cron_maths.next_runs(schedule, start, 3)
    assert ticks == sorted(ticks) and all(t > start for t in ticks)
    assert isinstance(schedule.describe(), str)


@settings(max_examples=300, deadline=None)
@given(
    spec=json_ish
    | st.dictionaries(st.sampled_from(["seconds", "minutes", "hours", "days"]), nasty_float | st.integers(), max_size=2)
    | st.sampled_from([timedelta(0), timedelta(seconds=-1), timedelta(microseconds=1)])
)
def test_intervals_parse_or_raise_invalid_interval(spec):
    try:
        cron_maths.interval_from(spec)
    except cron_maths.InvalidSchedule:
        pass


@settings(max_examples=200, deadline=None)
@given(interval=nasty_float | st.integers(min_value=-(10**30), max_value=10**30))
def test_interval_seconds_build_or_raise_invalid_schedule(interval):
    try:
        cron_maths.build("", interval, "UTC")
    except cron_maths.InvalidSchedule:
        pass


@pytest.mark.parametrize("spec", [timedelta.max, {"seconds": 1e13}], ids=["timedelta.max", "1e13s"])
def test_an_interval_is_refused_or_has_a_next_tick(spec):
    try:
        schedule = cron_maths.interval_from(spec)
    except cron_maths.InvalidSchedule:
        return
    cron_maths.next_runs(schedule, datetime(2024, 1, 1, tzinfo=UTC), 1)


# --- corrupted job rows: failed with a clear error or left alone; the worker keeps going ---


def corrupt(**fields: Any) -> int:
    """A job row written behind the scheduler's back."""
    values = {"name": free.name, "kind": "mutation", "args": {}, "scheduled_time": datetime.now(UTC)} | fields
    return ScheduledFunction.objects.create(**values).pk


@pytest.mark.django_db(transaction=True)
@override_settings(SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=0)  # unknown names fail at once (test_deploys.py)
def test_corrupted_job_rows_fail_clearly_and_never_stop_the_worker():
    failed_with = {
        corrupt(name=typed.name, args={"i": "not an int"}): "expected int",
        corrupt(name=typed.name, args={"i": 1}): "missing required argument",
        corrupt(args={"unknown": 1}): "unexpected argument",
        corrupt(args=[1, 2, 3]): "arguments must be a dict",
        corrupt(args="a string"): "arguments must be a dict",
        corrupt(args=7): "arguments must be a dict",
        corrupt(args=True): "arguments must be a dict",
        corrupt(name=free_action.name, kind="action", args=["x"]): "arguments must be a dict",
        corrupt(kind="banana"): "registered as a mutation, but the job is a banana",
        corrupt(name=free.name, kind="action"): "registered as a mutation, but the job is a action",
        corrupt(name="no.such:function"): "no.such:function",
    }
    left_alone = corrupt(state="zombie")
    good = scheduler.run_after(0, free, {"text": "after the corrupted rows"})

    call_command("runworker", burst=True)

    rows = ScheduledFunction.objects.in_bulk([*failed_with, left_alone, good])
    assert rows[good].state == State.SUCCESS, rows[good].error
    for pk, expected in failed_with.items():
        row = rows[pk]
        assert row.state == State.FAILED, f"corrupted job {pk} ({row.args!r}, kind={row.kind}) is {row.state}"
        assert expected in row.error, f"job {pk}: {expected!r} not in error {row.error!r}"
        assert row.completed_time is not None and row.lease_expires_at is None
    assert (rows[left_alone].state, rows[left_alone].attempts) == ("zombie", 0)
    assert Effect.objects.filter(key="free").count() == 1
