"""System checks for the app's settings and cron definitions; their ids are in ``core/check_ids.py``."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core.checks import CheckMessage, Error, Tags, Warning, register

from .conf import PREFIX, SETTINGS, validate
from .core import check_ids, rates
from .core.registry import registry
from .cron import definitions


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for attr in sorted(set(dir(settings))):
        if not attr.startswith(PREFIX):
            continue
        name = attr[len(PREFIX) :]
        if name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1)
            hint = f"Did you mean {PREFIX}{close[0]}?" if close else f"Known settings: {', '.join(SETTINGS)}."
            errors.append(Error(f"Unknown setting {attr}.", hint=hint, id=check_ids.UNKNOWN_SETTING))
            continue
        problem = validate(name, getattr(settings, attr))
        if problem:
            errors.append(
                Error(
                    f"{attr} {problem}, got {getattr(settings, attr)!r}.",
                    hint=f"{attr}: {SETTINGS[name].help}.",
                    id=check_ids.SETTINGS[name],
                )
            )
    return errors


@register(Tags.compatibility)
def check_cron_definitions(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Bad cron definitions (``scheduled_actions.E101`` ... ``E107``, naming the cron); see cron/definitions.py."""
    return definitions.cron_registry.check()  # looked up at each run: tests swap the registry


@register(Tags.compatibility)
def check_rate_limits(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Functions whose ``rate_limit=`` is not a rate (``scheduled_actions.E301``, naming the function)."""
    errors = []
    for fn in sorted(registry.all(), key=lambda f: f.name):
        problem = fn.options.rate_limit is not None and rates.problem(fn.options.rate_limit)
        if problem:
            errors.append(
                Error(
                    f"{fn.name}: rate_limit= {problem}.",
                    hint="Write how many jobs may start per second, minute or hour: '10/s', '100/m', '1000/h'.",
                    obj=fn.name,
                    id=check_ids.RATE_LIMIT_BAD,
                )
            )
    return errors


# What a worker beside a web process needs on SQLite (docs/how-to/databases.md): WAL, so that readers never wait
# for the writer, and a busy timeout, so that a write waits its turn for the one write lock instead of failing.
SQLITE_OPTIONS = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20}


@register(Tags.compatibility)
def check_sqlite(app_configs: Any = None, **kwargs: Any) -> list[CheckMessage]:
    """SQLite databases without WAL or a busy timeout (``scheduled_actions.W401``, ``W402``, naming the alias)."""
    return sqlite_warnings(settings.DATABASES)


def sqlite_warnings(databases: dict[str, dict[str, Any]]) -> list[CheckMessage]:
    """The warnings for a ``DATABASES`` setting: read from the settings alone, so no connection is opened."""
    warnings: list[CheckMessage] = []
    for alias, config in databases.items():
        name = str(config.get("NAME") or "")
        if not str(config.get("ENGINE", "")).endswith("sqlite3") or name == ":memory:" or "mode=memory" in name:
            continue
        options = config.get("OPTIONS") or {}
        init_command = " ".join(str(options.get("init_command", "")).lower().split())
        if "journal_mode=wal" not in init_command.replace(" = ", "="):
            warnings.append(
                Warning(
                    f"The SQLite database {alias!r} is not set to WAL: a worker's writes would block "
                    "every reader of the web process, and its reads every writer.",
                    hint=f'Add to DATABASES[{alias!r}]["OPTIONS"]: "init_command": "PRAGMA journal_mode=WAL;" '
                    "(WAL suits one machine; see the SQLite how-to for moving to PostgreSQL).",
                    obj=alias,
                    id=check_ids.SQLITE_NO_WAL,
                )
            )
        if "timeout" not in options:
            warnings.append(
                Warning(
                    f"The SQLite database {alias!r} has no busy timeout: a write that finds the worker "
                    "holding the one write lock waits only sqlite3's default 5 s, then fails "
                    '("database is locked").',
                    hint=f'Add to DATABASES[{alias!r}]["OPTIONS"]: "timeout": {SQLITE_OPTIONS["timeout"]} (seconds).',
                    obj=alias,
                    id=check_ids.SQLITE_NO_BUSY_TIMEOUT,
                )
            )
    return warnings
