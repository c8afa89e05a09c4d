"""Pure schedule maths: parse and validate schedules, find the ticks after a moment, describe them.

Nothing here touches the database or the clock; every function takes the moment it reasons about.

- ``Interval``: ticks at whole multiples of the interval since the Unix epoch (UTC), so every worker
  computes the same tick times without talking to the others.
- ``Cron``: a standard five-field expression (or ``@hourly``, ``@daily``, ...) matched against the wall
  clock of an IANA time zone. croniter finds the matching wall-clock times; this module turns them into
  instants with these DST rules:

  * a wall time that does not exist (spring forward) fires once, at the moment the clocks jump;
  * a wall time that happens twice (fall back) fires at its first occurrence only;
  * except for expressions that match every hour: they follow the clock as it is, skipping wall
    times that do not exist and firing at both occurrences of repeated ones, so an hourly job runs
    every real hour (the rule of Vixie cron).

  So a daily ``30 2 * * *`` job runs exactly once on both transition days.
"""

from __future__ import annotations

import heapq
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
NAIVE_EPOCH = EPOCH.replace(tzinfo=None)
MIN_INTERVAL = timedelta(seconds=1)
MAX_INTERVAL = timedelta(days=3650)  # ten years: every tick stays a datetime for centuries
INTERVAL_UNITS = ("seconds", "minutes", "hours")
MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
DAY = timedelta(days=1)
SECOND = timedelta(seconds=1)
WEEKDAYS = ("Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday")


class InvalidSchedule(ValueError):
    """A schedule that cannot be used: a bad expression, an unknown time zone, a too short interval."""


class InvalidExpression(InvalidSchedule):
    """Not a five-field cron expression croniter accepts, or one that never matches a date."""


class UnknownTimeZone(InvalidSchedule):
    """Not an IANA time zone name known to zoneinfo."""


class InvalidInterval(InvalidSchedule):
    """Not ``{"seconds"|"minutes"|"hours": n}`` or a ``timedelta``, or shorter than one second."""


def zone(name: str) -> ZoneInfo:
    """The IANA time zone ``name``; raises ``InvalidSchedule`` for an unknown one."""
    if not isinstance(name, str) or not name:
        raise UnknownTimeZone(f"time zone must be an IANA name such as 'Europe/Amsterdam', got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise UnknownTimeZone(f"unknown time zone {name!r}") from None


def _aware(dt: datetime) -> datetime:
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise ValueError(f"schedules reason about aware datetimes, got naive {dt!r}")
    return dt


@dataclass(frozen=True)
class Interval:
    """Every ``every`` (at least one second), at multiples of it since the Unix epoch."""

    every: timedelta

    def __post_init__(self) -> None:
        if not isinstance(self.every, timedelta) or self.every < MIN_INTERVAL:
            raise InvalidInterval(f"an interval must be at least one second, got {self.every!r}")
        if self.every > MAX_INTERVAL:
            raise InvalidInterval(f"an interval must be at most {MAX_INTERVAL.days} days, got {self.every!r}")

    @property
    def _step(self) -> int:
        return self.every // timedelta(microseconds=1)

    def _index(self, dt: datetime) -> int:
        """How many whole steps from the epoch to ``dt`` (floor)."""
        return (_aware(dt) - EPOCH) // timedelta(microseconds=1) // self._step

    def _at(self, index: int) -> datetime:
        return EPOCH + timedelta(microseconds=index * self._step)

    def next_after(self, dt: datetime) -> datetime:
        return self._at(self._index(dt) + 1)

    def iter_after(self, dt: datetime) -> Iterator[datetime]:
        index = self._index(dt)
        while True:
            index += 1
            yield self._at(index)

    def due(self, cursor: datetime, now: datetime, limit: int | None = None) -> tuple[datetime | None, int]:
        """The last tick in ``[cursor, now]`` and how many ticks that range holds."""
        first = self._index(cursor - timedelta(microseconds=1)) + 1
        last = self._index(now)
        if last < first:
            return None, 0
        return self._at(last), last - first + 1

    def describe(self) -> str:
        return f"every {_duration_words(self.every)}"


@dataclass(frozen=True)
class Cron:
    """A five-field cron expression evaluated on the wall clock of ``timezone`` (an IANA name)."""

    expression: str
    timezone: str = "UTC"
    tz: ZoneInfo = field(init=False, repr=False, compare=False)
    every_hour: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        from croniter import CroniterBadDateError, croniter  # here: a worker without crons never loads it (1 MB)

        object.__setattr__(self, "tz", zone(self.timezone))
        expression = _normalise(self.expression)
        object.__setattr__(self, "expression", expression)
        hours: list[Any] = croniter(expression).expanded[1]  # ints, or ["*"] (the stubs say strings)
        object.__setattr__(self, "every_hour", hours == ["*"] or sorted(hours) == list(range(24)))
        try:
            self.next_after(datetime(2000, 1, 1, tzinfo=UTC))
        except CroniterBadDateError:
            raise InvalidExpression(f"cron expression {expression!r} never matches a date") from None

    # --- wall-clock times to instants ---

    def _offsets(self, wall: datetime) -> tuple[timedelta, timedelta]:
        first = wall.replace(tzinfo=self.tz, fold=0).utcoffset()
        second = wall.replace(tzinfo=self.tz, fold=1).utcoffset()
        assert first is not None and second is not None
        return first, second

    def _instants(self, wall: datetime) -> list[datetime]:
        """The UTC instants (naive) at which the matching wall time ``wall`` fires."""
        before, after = self._offsets(wall)
        if before == after:
            return [wall - before]
        if before > after:  # happens twice: the first occurrence, and the second if the job runs hourly
            return [wall - before, wall - after] if self.every_hour else [wall - before]
        if self.every_hour:  # does not exist: an hourly job just runs in the hours that do
            return []
        return [self._jump(wall - after, wall - before)]  # does not exist: fire when the clocks jump

    def _jump(self, low: datetime, high: datetime) -> datetime:
        """The instant in ``(low, high]`` (naive UTC) at which the zone's offset changes (whole seconds,
        as in the tz database)."""
        offset = self._offset_at(low)
        lo, hi = math.floor((low - NAIVE_EPOCH) / SECOND), math.ceil((high - NAIVE_EPOCH) / SECOND)
        while hi - lo > 1:
            middle = (lo + hi) // 2
            if self._offset_at(NAIVE_EPOCH + middle * SECOND) == offset:
                lo = middle
            else:
                hi = middle
        return NAIVE_EPOCH + hi * SECOND

    def _offset_at(self, utc: datetime) -> timedelta:
        offset = utc.replace(tzinfo=UTC).astimezone(self.tz).utcoffset()
        assert offset is not None
        return offset

    def _offsets_near(self, utc: datetime) -> list[timedelta]:
        return [self._offset_at(utc + shift) for shift in (-DAY, timedelta(0), DAY)]

    # --- ticks ---

    def iter_after(self, dt: datetime) -> Iterator[datetime]:
        """The ticks strictly after ``dt``, in order, as aware UTC datetimes."""
        from croniter import croniter

        start = _aware(dt).astimezone(UTC).replace(tzinfo=None)
        walls = croniter(self.expression, start + min(self._offsets_near(start)) - SECOND)
        pending: list[datetime] = []
        last = start
        while True:
            wall = walls.get_next(datetime)
            for instant in self._instants(wall):
                if instant > last:
                    heapq.heappush(pending, instant)
            # no later wall time fires before this mark (offsets change at most once within a day)
            mark = wall - max(self._offsets_near(wall - self._offset_at_wall(wall)))
            while pending and pending[0] <= mark:
                instant = heapq.heappop(pending)
                if instant > last:
                    last = instant
                    yield instant.replace(tzinfo=UTC)

    def _offset_at_wall(self, wall: datetime) -> timedelta:
        return self._offsets(wall)[0]

    def next_after(self, dt: datetime) -> datetime:
        return next(self.iter_after(dt))

    def due(self, cursor: datetime, now: datetime, limit: int | None = None) -> tuple[datetime | None, int]:
        """The last tick in ``[cursor, now]`` and how many ticks that range holds (counting stops at
        ``limit``, after which the last tick is found by stepping back from ``now``)."""
        last, count = None, 0
        for tick in self.iter_after(_aware(cursor) - timedelta(microseconds=1)):
            if tick > now:
                return last, count
            last, count = tick, count + 1
            if limit is not None and count >= limit:
                return self._last_at_or_before(now, tick), count
        raise AssertionError("unreachable")  # pragma: no cover

    def _last_at_or_before(self, now: datetime, floor: datetime) -> datetime:
        window = timedelta(hours=1)
        while True:
            start = max(now - window, floor)
            ticks = [t for t in _take_until(self.iter_after(start - timedelta(microseconds=1)), now)]
            if ticks or start == floor:
                return ticks[-1] if ticks else floor
            window *= 4

    def describe(self) -> str:
        return describe_cron(self.expression, self.timezone)


Schedule = Interval | Cron


def _take_until(ticks: Iterator[datetime], end: datetime) -> Iterator[datetime]:
    for tick in ticks:
        if tick > end:
            return
        yield tick


def _normalise(expression: object) -> str:
    if not isinstance(expression, str):
        raise InvalidExpression(f"a cron expression must be a string, got {expression!r}")
    text = " ".join(expression.split())
    if text.lower() in MACROS:
        return text.lower()
    if len(text.split(" ")) != 5:
        raise InvalidExpression(
            f"cron expression {expression!r} must have five fields (minute hour day-of-month month "
            "day-of-week) or be one of " + ", ".join(sorted(MACROS))
        )
    from croniter import croniter

    if not croniter.is_valid(text):
        raise InvalidExpression(f"invalid cron expression {expression!r}")
    return text


def next_runs(schedule: Schedule, after: datetime, count: int) -> list[datetime]:
    ticks = schedule.iter_after(after)
    return [next(ticks) for _ in range(count)]


def interval_from(spec: object) -> Interval:
    """``{"seconds"|"minutes"|"hours": n}`` or a ``timedelta``, as an ``Interval``."""
    if isinstance(spec, timedelta):
        return Interval(spec)
    if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in INTERVAL_UNITS:
        raise InvalidInterval(f'an interval is {{"seconds"|"minutes"|"hours": n}} or a timedelta, got {spec!r}')
    unit, amount = next(iter(spec.items()))
    if isinstance(amount, bool) or not isinstance(amount, int | float) or not math.isfinite(amount):
        raise InvalidInterval(f"interval {unit} must be a finite number, got {amount!r}")
    try:
        return Interval(timedelta(**{unit: amount}))
    except OverflowError:
        raise InvalidInterval(f"interval {spec!r} is too long") from None


# --- schedules in words ---

_NUMBER = re.compile(r"^\d+$")
_STEP = re.compile(r"^\*/(\d+)$")


def _duration_words(every: timedelta) -> str:
    seconds = every.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            amount = int(seconds // size)
            return f"{amount} {unit}" + ("s" if amount != 1 else "")
    count = int(seconds) if seconds == int(seconds) else seconds
    return f"{count} second" + ("s" if count != 1 else "")


def describe_cron(expression: str, timezone: str = "UTC") -> str:
    """A cron expression in words, e.g. ``every day at 09:00 (Europe/Amsterdam)``."""
    expression = {
        "@yearly": "0 0 1 1 *",
        "@annually": "0 0 1 1 *",
        "@monthly": "0 0 1 * *",
        "@weekly": "0 0 * * 0",
        "@daily": "0 0 * * *",
        "@midnight": "0 0 * * *",
        "@hourly": "0 * * * *",
    }.get(expression, expression)
    minute, hour, dom, month, dow = expression.split(" ")
    where = f" ({timezone})"
    if month != "*":
        return f"cron “{expression}”{where}"
    if _NUMBER.match(minute) and _NUMBER.match(hour):
        at = f"at {int(hour):02d}:{int(minute):02d}"
        if dom == "*" and dow == "*":
            return f"every day {at}{where}"
        if dom == "*" and _NUMBER.match(dow) and int(dow) <= 7:
            return f"every {WEEKDAYS[int(dow) % 7]} {at}{where}"
        if dow == "*" and _NUMBER.match(dom):
            return f"on day {int(dom)} of every month {at}{where}"
    if dom == dow == "*":
        if hour == "*" and _NUMBER.match(minute):
            return f"every hour at minute {int(minute)}{where}"
        if hour == "*" and minute == "*":
            return f"every minute{where}"
        step = _STEP.match(minute)
        if hour == "*" and step:
            return f"every {step.group(1)} minutes{where}"
    return f"cron “{expression}”{where}"


# --- stored schedules and the hourly/daily/weekly/monthly helpers ---


def build(expression: str, interval_seconds: float | None, timezone: str = "UTC") -> Schedule:
    """The schedule of a stored cron: an interval when ``interval_seconds`` is set, else ``expression``."""
    if interval_seconds is not None:
        if isinstance(interval_seconds, bool) or not math.isfinite(interval_seconds):
            raise InvalidInterval(f"interval must be a finite number of seconds, got {interval_seconds!r}")
        try:
            return Interval(timedelta(seconds=interval_seconds))
        except OverflowError:
            raise InvalidInterval(f"interval of {interval_seconds!r} seconds is too long") from None
    return Cron(expression, timezone)


HELPER_FIELDS = {
    "hourly": ("minute_utc",),
    "daily": ("hour_utc", "minute_utc"),
    "weekly": ("day_of_week", "hour_utc", "minute_utc"),
    "monthly": ("day", "hour_utc", "minute_utc"),
}
_RANGES = {"minute_utc": (0, 59), "hour_utc": (0, 23), "day": (1, 31)}


def helper_expression(kind: str, spec: object) -> str:
    """The UTC cron expression of ``hourly({"minute_utc": 5})``, ``daily``, ``weekly`` or ``monthly``."""
    fields = HELPER_FIELDS[kind]
    if not isinstance(spec, dict) or set(spec) != set(fields):
        wanted = ", ".join(f"{name!r}: ..." for name in fields)
        raise InvalidExpression(f"{kind} takes {{{wanted}}}, got {spec!r}")
    values = {name: _helper_value(name, spec[name]) for name in fields}
    minute, hour = values["minute_utc"], values.get("hour_utc", "*")
    dom, dow = values.get("day", "*"), values.get("day_of_week", "*")
    return f"{minute} {hour} {dom} * {dow}"


def _helper_value(name: str, value: object) -> int:
    if name == "day_of_week":
        days = [d.lower() for d in WEEKDAYS]
        if not isinstance(value, str) or value.lower() not in days:
            raise InvalidExpression(f"day_of_week must be one of {', '.join(days)}, got {value!r}")
        return days.index(value.lower())
    low, high = _RANGES[name]
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidExpression(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return value


def for_row(row: Any) -> Schedule:
    """The parsed schedule of a ``CronJob`` row (``Interval`` or ``Cron``); raises ``InvalidSchedule``."""
    return build(row.expression, row.interval_seconds, row.timezone)
