"""Small renderers shared by the admin pages: state badges, relative times, durations, pretty JSON."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone
from django.utils.html import format_html
from django.utils.safestring import SafeString

from ..models import State

# background colours readable with white text in the light and the dark admin themes
COLOURS = {
    State.PENDING: "#5b6b7a",
    State.IN_PROGRESS: "#b26a00",
    State.SUCCESS: "#2e7d32",
    State.FAILED: "#c62828",
    State.CANCELED: "#757575",
    "running": "#b26a00",  # a workflow run's or step's
    "waiting": "#5b6b7a",
    "alive": "#2e7d32",
    "late": "#b26a00",
    "overdue": "#b26a00",
    "unrunnable": "#c62828",
    "rate-limited": "#b26a00",
    "lost": "#c62828",
    "stopped": "#757575",
    "held": "#2e7d32",
    "expired": "#757575",
}
BADGE = (
    '<span class="sa-badge sa-badge-{}" style="background:{};color:#fff;border-radius:4px;'
    'padding:1px 6px;white-space:nowrap;font-size:0.9em">{}</span>'
)


def badge(value: str, label: str | None = None) -> SafeString:
    return format_html(BADGE, value, COLOURS.get(value, "#5b6b7a"), label or value)


def state_badge(state: str) -> SafeString:
    return badge(state, str(State(state).label) if state in State.values else state)


def relative(when: datetime | None, now: datetime | None = None) -> str:
    """``in 5 min`` / ``3 h ago`` / ``now``."""
    if when is None:
        return ""
    delta = when - (now or timezone.now())
    seconds = abs(delta.total_seconds())
    if seconds < 1:
        return "now"
    amount = short_duration(timedelta(seconds=seconds), precise=False)
    return f"in {amount}" if delta.total_seconds() > 0 else f"{amount} ago"


def short_duration(span: timedelta | None, *, precise: bool = True) -> str:
    """``850 ms``, ``4.2 s``, ``3 min``, ``2 h``, ``5 d`` (``precise``: milliseconds and tenths of seconds)."""
    if span is None:
        return ""
    seconds = span.total_seconds()
    if precise and seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if precise and seconds < 10 else f"{seconds:.0f} s"
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds // size:.0f} {unit}"
    return f"{seconds:.0f} s"  # pragma: no cover - unreachable


def when(moment: datetime | None, now: datetime | None = None) -> SafeString | str:
    """An absolute time (in the current time zone) with the relative one beside it."""
    if moment is None:
        return "-"
    local = timezone.localtime(moment).strftime("%Y-%m-%d %H:%M:%S")
    return format_html('{} <span class="sa-relative" style="opacity:.7">({})</span>', local, relative(moment, now))


def json_text(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)


def pretty_json(value: Any) -> SafeString:
    return format_html(
        '<pre class="sa-json" style="margin:0;white-space:pre-wrap">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str),
    )


def preformatted(text: str) -> SafeString | str:
    return format_html('<pre class="sa-pre" style="margin:0;white-space:pre-wrap">{}</pre>', text) if text else "-"
