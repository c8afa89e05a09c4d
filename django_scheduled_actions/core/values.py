"""The one place that checks the small values users pass: numbers of seconds, delays, moments, priorities,
queue names and keys. Each checker returns the value as the caller stores it, or raises with a message
naming the argument (``label``) as the caller spells it."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any, TypeGuard

QUEUE_MAX_LENGTH = 100  # ScheduledFunction.queue
KEY_MAX_LENGTH = 255  # IdempotencyKey.key, Saga.key
PRIORITY_LIMIT = 2**31 - 1  # ScheduledFunction.priority is a 32-bit integer column
FAR_FUTURE = timedelta(days=36500)  # what a delay beyond 1e9 seconds means


def is_number(value: Any) -> TypeGuard[int | float]:
    """An int or a float, not a bool."""
    return not isinstance(value, bool) and isinstance(value, int | float)


def is_finite(value: Any) -> TypeGuard[int | float]:
    return is_number(value) and math.isfinite(value)


def is_int(value: Any) -> TypeGuard[int]:
    """An int, not a bool."""
    return not isinstance(value, bool) and isinstance(value, int)


def is_count(value: Any, minimum: int = 1) -> TypeGuard[int]:
    """A whole number of at least ``minimum``."""
    return is_int(value) and value >= minimum


def is_name(value: Any, max_length: int) -> TypeGuard[str]:
    """A non-empty string of at most ``max_length`` characters."""
    return isinstance(value, str) and 0 < len(value) <= max_length


def queue_name(value: Any, label: str = "queue") -> str:
    if not is_name(value, QUEUE_MAX_LENGTH):
        raise ValueError(f"{label} must be a non-empty string of at most {QUEUE_MAX_LENGTH} characters, got {value!r}")
    return value


def priority(value: Any, label: str = "priority") -> int:
    if not is_int(value) or abs(value) > PRIORITY_LIMIT:
        raise TypeError(f"{label} must be a 32-bit int, got {value!r}")
    return value


def key(value: Any, label: str = "idempotency_key", error: type[Exception] = ValueError) -> str:
    if not is_name(value, KEY_MAX_LENGTH):
        raise error(f"{label} must be a non-empty string of at most {KEY_MAX_LENGTH} characters, got {value!r}")
    return value


def seconds(value: Any, label: str, *, error: type[Exception] = ValueError) -> float:
    """A positive, finite number of seconds (a timeout)."""
    if not is_finite(value) or value <= 0:
        raise error(f"{label} must be a positive, finite number of seconds, got {value!r}")
    return float(value)


def delay_seconds(delay: Any, label: str = "delay") -> float:
    """A delay as seconds: a number or a ``timedelta``, finite (negative means now)."""
    if isinstance(delay, timedelta):
        return delay.total_seconds()
    if not is_number(delay):
        raise TypeError(f"{label} must be a number of seconds or a timedelta, got {delay!r}")
    if not math.isfinite(delay):
        raise ValueError(f"{label} must be finite, got {delay!r}")
    return float(delay)


def after(now: datetime, delay: Any, label: str = "delay") -> datetime:
    """The moment ``delay`` after ``now``: never before it, and a delay over 1e9 s is a century."""
    offset = delay_seconds(delay, label)
    return now + (timedelta(seconds=max(offset, 0.0)) if offset < 1e9 else FAR_FUTURE)


def moment(when: Any, label: str = "run_at") -> datetime:
    """An aware datetime, or epoch seconds as one."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ValueError(f"{label} needs an aware datetime (or epoch seconds), got naive {when!r}")
        return when
    if not is_number(when):
        raise TypeError(f"{label} takes an aware datetime or epoch seconds, got {when!r}")
    if not math.isfinite(when):
        raise ValueError(f"{label} epoch seconds must be finite, got {when!r}")
    try:
        return datetime.fromtimestamp(when, tz=UTC)
    except (OverflowError, OSError, ValueError) as exc:
        raise ValueError(f"{label} epoch seconds out of range: {when!r}") from exc
