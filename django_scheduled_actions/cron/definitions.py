"""Code-defined cron jobs: ``cron_jobs()`` and the registry of definitions.

```python
# shop/crons.py  -- modules named `crons` in installed apps are imported at start-up
from django_scheduled_actions import cron_jobs

crons = cron_jobs()
crons.interval("cleanup stale jobs", {"hours": 1}, f.cleanup_stale)
crons.cron("daily report", "0 9 * * *", f.generate_daily, {}, tz="Europe/Amsterdam")
```

A bad definition does not raise where it is written: it is recorded and reported by the system checks
(``scheduled_actions.E101`` ... ``E107``, naming the cron), so ``manage.py check`` and ``runworker``
refuse to start and list every problem at once. Workers sync the valid definitions to the ``CronJob``
model when they start (``ticker.sync``).
"""

from __future__ import annotations

import inspect
import threading
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.core.checks import Error

from ..core.check_ids import (
    CRON_BAD_ARGUMENTS,
    CRON_BAD_EXPRESSION,
    CRON_BAD_INTERVAL,
    CRON_BAD_NAME,
    CRON_DUPLICATE,
    CRON_NOT_SCHEDULABLE,
    CRON_UNKNOWN_TIMEZONE,
)
from ..core.registry import Function
from . import schedules

NAME_MAX_LENGTH = 200

HINTS = {
    CRON_DUPLICATE: "Cron names are unique across all crons.py modules; rename one of them.",
    CRON_BAD_EXPRESSION: "Use five fields: minute hour day-of-month month day-of-week, e.g. '0 9 * * *'.",
    CRON_UNKNOWN_TIMEZONE: "Use an IANA time zone name such as 'UTC' or 'Europe/Amsterdam'.",
    CRON_BAD_INTERVAL: 'Use {"seconds"|"minutes"|"hours": n} or a timedelta of at least one second.',
    CRON_NOT_SCHEDULABLE: "Decorate the function with @mutation, @action, @internal_mutation or @internal_action.",
    CRON_BAD_ARGUMENTS: "Pass the arguments as a dict that matches the function's signature.",
    CRON_BAD_NAME: f"Give the cron a non-empty name of at most {NAME_MAX_LENGTH} characters.",
}


@dataclass(frozen=True)
class CronDefinition:
    """One valid code-defined cron: what gets synced to the ``CronJob`` model."""

    name: str
    function: Function
    args: dict[str, Any]  # the JSON form, as stored
    schedule: schedules.Schedule
    module: str

    def model_fields(self) -> dict[str, Any]:
        """The ``CronJob`` fields this definition owns."""
        owned = {"function": self.function.name, "args": self.args}
        if isinstance(self.schedule, schedules.Interval):
            return {
                **owned,
                "expression": "",
                "interval_seconds": self.schedule.every.total_seconds(),
                "timezone": "UTC",
            }
        return {
            **owned,
            "expression": self.schedule.expression,
            "interval_seconds": None,
            "timezone": self.schedule.timezone,
        }


@dataclass(frozen=True)
class Problem:
    name: object
    module: str
    message: str
    id: str

    def as_error(self) -> Error:
        return Error(f"Cron {self.name!r} ({self.module}): {self.message}.", hint=HINTS[self.id], id=self.id)


class CronRegistry:
    """Every ``cron_jobs()`` builder adds here. Importing a crons module again replaces its definitions."""

    def __init__(self) -> None:
        self._definitions: dict[str, CronDefinition] = {}
        self._problems: list[Problem] = []
        self._lock = threading.Lock()

    def jobs(self, module: str) -> CronJobs:
        self.discard(module)
        return CronJobs(self, module)

    def discard(self, module: str) -> None:
        """Forget the definitions (and problems) of ``module``."""
        with self._lock:
            self._definitions = {n: d for n, d in self._definitions.items() if d.module != module}
            self._problems = [p for p in self._problems if p.module != module]

    def all(self) -> list[CronDefinition]:
        return list(self._definitions.values())

    def get(self, name: str) -> CronDefinition | None:
        return self._definitions.get(name)

    def problems(self) -> list[Problem]:
        return list(self._problems)

    def check(self) -> list[Error]:
        return [problem.as_error() for problem in self._problems]

    def add(self, module: str, name: object, fn: object, args: object, schedule: Any) -> None:
        """Validate and record one definition; ``schedule`` is a callable building the ``Schedule``."""
        problems = _validate(name, fn, args, schedule)
        with self._lock:
            if not problems and name in self._definitions:
                other = self._definitions[name].module
                problems = [(f"the name is already used by a cron in {other}", CRON_DUPLICATE)]
            if problems:
                self._problems += [Problem(name, module, message, id) for message, id in problems]
                return
            assert isinstance(name, str) and isinstance(fn, Function)  # as _validate found
            json_args = fn.validator.to_json(args or {})
            self._definitions[name] = CronDefinition(name, fn, json_args, schedule(), module)

    def clear(self) -> None:
        with self._lock:
            self._definitions.clear()
            self._problems.clear()


def _validate(name: object, fn: object, args: object, schedule: Any) -> list[tuple[str, str]]:
    problems = []
    if not isinstance(name, str) or not name.strip() or len(name) > NAME_MAX_LENGTH:
        problems.append((f"the name must be a non-empty string of at most {NAME_MAX_LENGTH} characters", CRON_BAD_NAME))
    try:
        schedule()
    except schedules.UnknownTimeZone as exc:
        problems.append((str(exc), CRON_UNKNOWN_TIMEZONE))
    except schedules.InvalidInterval as exc:
        problems.append((str(exc), CRON_BAD_INTERVAL))
    except schedules.InvalidSchedule as exc:
        problems.append((str(exc), CRON_BAD_EXPRESSION))
    if not isinstance(fn, Function) or fn.kind not in ("mutation", "action"):
        what = f"a {fn.kind}" if isinstance(fn, Function) else repr(fn)
        problems.append((f"only mutations and actions can run as crons, got {what}", CRON_NOT_SCHEDULABLE))
    elif args is not None and not isinstance(args, dict):
        problems.append((f"arguments must be a dict, got {type(args).__name__}", CRON_BAD_ARGUMENTS))
    else:
        try:
            fn.validator.to_json(args or {})
        except ValueError as exc:
            problems.append((str(exc), CRON_BAD_ARGUMENTS))
    return problems


class CronJobs:
    """The builder ``cron_jobs()`` returns: one method per kind of schedule (DESIGN §5)."""

    def __init__(self, registry: CronRegistry, module: str):
        self._registry = registry
        self._module = module

    def interval(
        self, name: str, every: dict[str, float] | timedelta, fn: Function, args: dict[str, Any] | None = None
    ) -> None:
        """Every ``{"seconds"|"minutes"|"hours": n}`` (or ``timedelta``), at least one second."""
        self._registry.add(self._module, name, fn, args, lambda: schedules.interval_from(every))

    def cron(
        self, name: str, expression: str, fn: Function, args: dict[str, Any] | None = None, *, tz: str = "UTC"
    ) -> None:
        """A five-field cron expression, evaluated on the wall clock of ``tz`` (an IANA name)."""
        self._registry.add(self._module, name, fn, args, lambda: schedules.Cron(expression, tz))

    def hourly(self, name: str, at: dict[str, int], fn: Function, args: dict[str, Any] | None = None) -> None:
        """``{"minute_utc": m}``."""
        self._helper("hourly", name, at, fn, args)

    def daily(self, name: str, at: dict[str, int], fn: Function, args: dict[str, Any] | None = None) -> None:
        """``{"hour_utc": h, "minute_utc": m}``."""
        self._helper("daily", name, at, fn, args)

    def weekly(self, name: str, at: dict[str, Any], fn: Function, args: dict[str, Any] | None = None) -> None:
        """``{"day_of_week": "sunday", "hour_utc": h, "minute_utc": m}``."""
        self._helper("weekly", name, at, fn, args)

    def monthly(self, name: str, at: dict[str, int], fn: Function, args: dict[str, Any] | None = None) -> None:
        """``{"day": d, "hour_utc": h, "minute_utc": m}``; months without day ``d`` are skipped."""
        self._helper("monthly", name, at, fn, args)

    def _helper(self, kind: str, name: str, at: Any, fn: Function, args: dict[str, Any] | None) -> None:
        self._registry.add(self._module, name, fn, args, lambda: schedules.Cron(schedules.helper_expression(kind, at)))


cron_registry = CronRegistry()


def cron_jobs() -> CronJobs:
    """The cron builder of the calling module (``crons = cron_jobs()`` in ``<app>/crons.py``)."""
    caller = inspect.currentframe()
    module = caller.f_back.f_globals.get("__name__", "?") if caller and caller.f_back else "?"
    return cron_registry.jobs(module)
