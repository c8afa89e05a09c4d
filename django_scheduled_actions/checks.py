"""System checks for the app's settings and cron definitions; their ids are in ``core/check_ids.py``."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

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
