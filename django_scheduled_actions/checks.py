"""System checks for the app's settings (ids ``scheduled_actions.E001`` ...)."""

from __future__ import annotations

import difflib
from typing import Any

from django.conf import settings
from django.core.checks import Error, Tags, register

from .conf import PREFIX, SETTINGS, validate

SETTING_IDS = {name: f"scheduled_actions.E{number:03d}" for number, name in enumerate(SETTINGS, start=2)}


@register(Tags.compatibility)
def check_settings(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    errors = []
    for attr in sorted(set(dir(settings))):
        if not attr.startswith(PREFIX):
            continue
        name = attr[len(PREFIX):]
        if name not in SETTINGS:
            close = difflib.get_close_matches(name, SETTINGS, n=1)
            hint = f"Did you mean {PREFIX}{close[0]}?" if close else f"Known settings: {', '.join(SETTINGS)}."
            errors.append(Error(f"Unknown setting {attr}.", hint=hint, id="scheduled_actions.E001"))
            continue
        problem = validate(name, getattr(settings, attr))
        if problem:
            errors.append(Error(f"{attr} {problem}, got {getattr(settings, attr)!r}.",
                                hint=f"{attr}: {SETTINGS[name].help}.", id=SETTING_IDS[name]))
    return errors


@register(Tags.compatibility)
def check_cron_definitions(app_configs: Any = None, **kwargs: Any) -> list[Error]:
    """Bad cron definitions (``scheduled_actions.E101`` ... ``E107``, naming the cron); see crons.py."""
    from .cron.definitions import cron_registry

    return cron_registry.check()
