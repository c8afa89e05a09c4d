"""MkDocs hooks: the reference tables that can be generated from the code are generated here, at build time.

A page writes ``<!-- generated: NAME -->`` on a line of its own and gets the table ``TABLES[NAME]`` in its
place: the settings (``conf.SETTINGS`` and their check ids) and the ``runworker`` options (its argument
parser). tests/unit/test_docs.py checks the hand-written reference tables (checks, signals) against the code.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import django
from django.conf import settings

MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.MULTILINE)


def setup_django() -> None:
    """Enough of a project to import the app's command: no database is opened."""
    if not settings.configured:
        settings.configure(
            INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth", "django_scheduled_actions"],
            DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}},
            USE_TZ=True,
        )
        django.setup()


def default_text(value: Any) -> str:
    if isinstance(value, timedelta):
        seconds = int(value.total_seconds())
        for unit, size in (("days", 86400), ("h", 3600), ("min", 60), ("s", 1)):
            if seconds % size == 0 and (unit != "days" or seconds >= 2 * size):
                return f"{seconds // size} {unit}"
    if value == 1024 * 1024:
        return "1 MiB"
    if isinstance(value, float) and value.is_integer():
        value = int(value) if value >= 60 else value
    return f"`{value!r}`"


def settings_table() -> str:
    from django_scheduled_actions.conf import PREFIX, SETTINGS
    from django_scheduled_actions.core import check_ids

    rows = ["| setting | default | meaning | check id |", "|---|---|---|---|"]
    for name, setting in SETTINGS.items():
        check = check_ids.SETTINGS[name].removeprefix("scheduled_actions.")
        rows.append(f"| `{PREFIX}{name}` | {default_text(setting.default)} | {setting.help} | `{check}` |")
    return "\n".join(rows)


def runworker_options() -> list[tuple[str, str]]:
    """(option with its metavar, help) for each of runworker's own options, in the parser's order."""
    setup_django()
    from django.core.management.base import BaseCommand

    from django_scheduled_actions.management.commands.runworker import Command

    common = {a.dest for a in BaseCommand().create_parser("manage.py", "x")._actions}
    options = []
    for action in Command().create_parser("manage.py", "runworker")._actions:
        if action.dest in common or not action.option_strings:
            continue
        flag = action.option_strings[-1]
        kind = getattr(action.type, "__name__", "")
        metavar = action.metavar or {"positive_int": "N", "positive_float": "SECONDS"}.get(kind, action.dest.upper())
        options.append((f"{flag} {metavar}" if action.nargs != 0 else flag, action.help or ""))
    return options


def runworker_table() -> str:
    rows = ["| option | meaning |", "|---|---|"]
    rows += [f"| `{flag}` | {text.replace('|', '/')} |" for flag, text in runworker_options()]
    return "\n".join(rows)


TABLES: dict[str, Callable[[], str]] = {
    "settings": settings_table,
    "runworker-options": runworker_table,
}


def on_page_markdown(markdown: str, **kwargs: Any) -> str:
    def table(match: re.Match[str]) -> str:
        name = match[1]
        if name not in TABLES:
            raise KeyError(f"no generated table {name!r} (known: {', '.join(TABLES)})")
        return TABLES[name]()

    return MARKER.sub(table, markdown)
