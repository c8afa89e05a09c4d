"""One lazy, typed accessor for the app's settings.

Read through ``app_settings.NAME``; values are read from ``django.conf.settings`` on first use and
cached until a ``setting_changed`` signal (so ``override_settings`` works). Validation lives in
``checks.py``, which reports bad values with ids and hints.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.core.signals import setting_changed

from .core import values

PREFIX = "SCHEDULED_ACTIONS_"


@dataclass(frozen=True)
class Setting:
    default: Any
    kind: str  # "seconds", "seconds_or_zero", "duration", "bool", "bytes", "isolation", "queue_limits", "alias"
    help: str


SETTINGS: dict[str, Setting] = {
    "POLL_INTERVAL": Setting(1.0, "seconds", "seconds between polls when not woken by NOTIFY"),
    "LEASE_SECONDS": Setting(60.0, "seconds", "lease on a claimed job, renewed while it runs"),
    "ACTION_TIMEOUT": Setting(600.0, "seconds", "default action timeout, seconds"),
    "RETENTION": Setting(timedelta(days=7), "duration", "how long finished jobs are kept"),
    "IDEMPOTENCY_TTL": Setting(timedelta(hours=24), "duration", "how long idempotency keys are held"),
    "STRICT_ACTIONS": Setting(True, "bool", "forbid direct ORM use inside actions"),
    "MAX_ARGS_BYTES": Setting(1024 * 1024, "bytes", "largest serialised argument object"),
    "MUTATION_ISOLATION": Setting("serializable", "isolation", "isolation of mutations"),
    "QUEUE_CONCURRENCY": Setting(
        {}, "queue_limits", 'most jobs of a queue running at once across all workers, e.g. {"emails": 2}'
    ),
    "UNKNOWN_FUNCTION_GRACE": Setting(
        600.0,
        "seconds_or_zero",
        "seconds a due job whose function no live worker knows waits for one that "
        "does before it fails (0: fails at once)",
    ),
    "TELEMETRY": Setting(
        True,
        "bool",
        "OpenTelemetry spans and metrics of jobs, when opentelemetry-api is installed (the [otel] extra); "
        "False: none, and the worker runs as without the extra",
    ),
    "LISTEN_DATABASE": Setting(
        None,
        "alias",
        "the database alias workers LISTEN on for new jobs: a direct connection to the PostgreSQL server "
        "of the worker's database, for when that one goes through a pooler in transaction mode (PgBouncer)",
    ),
}

ISOLATION_LEVELS = ("serializable", "read committed")


def validate(name: str, value: Any) -> str | None:
    """Return why ``value`` is not acceptable for setting ``name``, or None when it is."""
    kind = SETTINGS[name].kind
    if kind == "seconds":
        if not values.is_finite(value):
            return "must be a finite number of seconds"
        return None if value > 0 else "must be greater than 0"
    if kind == "seconds_or_zero":
        if not values.is_finite(value):
            return "must be a finite number of seconds"
        return None if value >= 0 else "must be 0 or more"
    if kind == "duration":
        if isinstance(value, timedelta):
            return None if value > timedelta(0) else "must be a positive duration"
        return validate_seconds_like(value)
    if kind == "bool":
        return None if isinstance(value, bool) else "must be True or False"
    if kind == "bytes":
        return None if values.is_count(value) else "must be a positive whole number of bytes"
    if kind == "queue_limits":
        return validate_queue_limits(value)
    if kind == "alias":
        return validate_postgresql_alias(value)
    return None if value in ISOLATION_LEVELS else f"must be one of {', '.join(map(repr, ISOLATION_LEVELS))}"


def validate_seconds_like(value: Any) -> str | None:
    if not values.is_finite(value):
        return "must be a timedelta or a finite number of seconds"
    return None if value > 0 else "must be positive"


def validate_queue_limits(value: Any) -> str | None:
    if not isinstance(value, dict):
        return "must be a dict of queue names to positive ints"
    for queue, limit in value.items():
        if not values.is_name(queue, values.QUEUE_MAX_LENGTH):
            return (
                f"has a bad queue name {queue!r} (a non-empty string of at most {values.QUEUE_MAX_LENGTH} characters)"
            )
        if not values.is_count(limit):
            return f"must map each queue to a positive int, got {limit!r} for {queue!r}"
    return None


def validate_postgresql_alias(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in settings.DATABASES:
        return f"must be None or an alias of DATABASES ({', '.join(map(repr, settings.DATABASES))})"
    if "postgresql" not in settings.DATABASES[value].get("ENGINE", ""):
        return "must name a PostgreSQL database (LISTEN/NOTIFY is PostgreSQL's)"
    return None


class AppSettings:
    def __init__(self) -> None:
        self._cache: dict[str, Any] = {}

    def __getattr__(self, name: str) -> Any:
        if name not in SETTINGS:
            raise AttributeError(name)
        if name not in self._cache:
            value = getattr(settings, PREFIX + name, SETTINGS[name].default)
            if SETTINGS[name].kind == "duration" and not isinstance(value, timedelta):
                value = timedelta(seconds=value)
            self._cache[name] = value
        return self._cache[name]

    def reset(self, **kwargs: Any) -> None:
        setting = kwargs.get("setting")
        if setting is None or setting.startswith(PREFIX):
            self._cache.clear()


app_settings = AppSettings()
setting_changed.connect(app_settings.reset, dispatch_uid="scheduled_actions_settings_reset")
