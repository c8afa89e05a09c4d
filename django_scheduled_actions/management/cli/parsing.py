"""The values the subcommands take: durations, moments, job states and ids. Each raises
``argparse.ArgumentTypeError`` with a message naming what it expects (a usage error: exit code 2)."""

from __future__ import annotations

import re
from argparse import ArgumentTypeError
from datetime import datetime, timedelta

from django.utils import timezone

from ...models import State

_PART = re.compile(r"(\d+(?:\.\d+)?)([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
DURATION_HELP = "a duration such as 90s, 10m, 2h, 3d, 1w or 1h30m"


def duration(text: str) -> timedelta:
    """``"10m"``, ``"2h"``, ``"3d"``, ``"1h30m"``... as a positive ``timedelta``."""
    compact = text.strip().lower()
    parts = _PART.findall(compact)
    if not compact or "".join(number + unit for number, unit in parts) != compact:
        raise ArgumentTypeError(f"{text!r} is not {DURATION_HELP}")
    seconds = sum(float(number) * _UNITS[unit] for number, unit in parts)
    if seconds <= 0:
        raise ArgumentTypeError(f"{text!r}: the duration must be more than zero")
    return timedelta(seconds=seconds)


def since(text: str) -> datetime:
    """A duration back from now (``"2h"``: two hours ago) or an ISO 8601 date or datetime; one without a
    time zone is in the project's ``TIME_ZONE``."""
    try:
        return timezone.now() - duration(text)
    except ArgumentTypeError:
        pass
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ArgumentTypeError(
            f"{text!r} is neither {DURATION_HELP} nor an ISO 8601 datetime such as 2026-12-07T09:00:00Z"
        ) from None
    return timezone.make_aware(moment) if timezone.is_naive(moment) else moment


def states(text: str) -> list[str]:
    """One job state or several separated by commas (``in-progress`` is ``in_progress``)."""
    chosen = [part.strip().lower().replace("-", "_") for part in text.split(",") if part.strip()]
    unknown = [state for state in chosen if state not in State.values]
    if unknown or not chosen:
        raise ArgumentTypeError(
            f"unknown job state {', '.join(map(repr, unknown)) or repr(text)}: the states are {', '.join(State.values)}"
        )
    return chosen


def job_id(text: str) -> int:
    """A job's id: a positive integer (``#12`` is accepted too, as the admin writes ids)."""
    digits = text.strip().removeprefix("#")
    if not (digits.isascii() and digits.isdigit()) or int(digits) < 1:
        raise ArgumentTypeError(f"{text!r} is not a job id (a positive integer)")
    return int(digits)


def count(text: str) -> int:
    """A number of rows: 0 or more (0: no limit)."""
    if not (text.strip().isascii() and text.strip().isdigit()):
        raise ArgumentTypeError(f"{text!r} is not a number of jobs (0 or more; 0: all of them)")
    return int(text)
