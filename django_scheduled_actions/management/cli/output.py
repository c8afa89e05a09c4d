"""What a subcommand hands back (``Report``) and how the command prints it: aligned tables and short
times for people, one JSON document for scripts (datetimes in ISO 8601, durations in seconds)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any
from uuid import UUID

from django.utils import timezone


@dataclass
class Report:
    """A subcommand's outcome: ``document`` is printed with ``--json``, ``lines`` otherwise; ``failure``,
    when set, is the message of the exit code 1 (some jobs could not be acted on, or were not found)."""

    document: dict[str, Any]
    lines: list[str] = field(default_factory=list)
    failure: str = ""


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Decimal | UUID):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(document: Any) -> str:
    return json.dumps(document, indent=2, default=_plain, ensure_ascii=False)


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    """``rows`` under ``headers``, each column as wide as its widest cell; None shows as ``-``."""
    cells = [[("-" if value is None else str(value)) for value in row] for row in rows]
    widths = [max([len(header), *(len(row[i]) for row in cells)]) for i, header in enumerate(headers)]
    return [
        "  ".join(text.ljust(width) for text, width in zip(row, widths, strict=True)).rstrip()
        for row in [list(headers), *cells]
    ]


def short(delta: timedelta) -> str:
    """``42s``, ``5m``, ``3h``, ``2d``: the largest whole unit."""
    seconds = abs(delta.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit}"
    return f"{int(seconds)}s"


def moment(value: datetime | None, now: datetime | None = None) -> str | None:
    """A local time to the second, with how long ago or how far ahead of ``now`` it is."""
    if value is None:
        return None
    text = (
        timezone.localtime(value).strftime("%Y-%m-%d %H:%M:%S")
        if timezone.is_aware(value)
        else f"{value:%Y-%m-%d %H:%M:%S}"
    )
    if now is None:
        return text
    return f"{text} ({short(now - value)} ago)" if value <= now else f"{text} (in {short(value - now)})"


def pretty(value: Any) -> str:
    """A JSON value indented, for ``show``."""
    return to_json(value) if isinstance(value, dict | list) else json.dumps(value, default=_plain)
