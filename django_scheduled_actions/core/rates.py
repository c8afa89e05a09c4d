"""Rates as users write them, ``"N/s"``, ``"N/m"``, ``"N/h"``: pure parsing, no database (DESIGN section 13).

A rate is a token bucket: it holds at most ``burst`` tokens (the rate's N unless given), refills at
``per_second`` tokens a second, and each start (or ``rate_limiter.limit`` call) takes ``count`` of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, NamedTuple

from . import values

PERIODS = {"s": 1.0, "m": 60.0, "h": 3600.0}
_RATE = re.compile(r"\s*(\d+)\s*/\s*([smh])\s*")


class RateLimitStatus(NamedTuple):
    """What ``rate_limiter.limit`` answers: whether the tokens were taken, else the seconds until they could be."""

    ok: bool
    retry_after: float


@dataclass(frozen=True)
class Rate:
    """``count`` tokens every ``period`` seconds, at most ``burst`` held."""

    count: int
    period: float
    burst: int

    @property
    def per_second(self) -> float:
        return self.count / self.period

    def refilled(self, tokens: float, elapsed: float) -> float:
        """The tokens held ``elapsed`` seconds after holding ``tokens`` (a clock that went back adds none)."""
        return min(float(self.burst), tokens + max(elapsed, 0.0) * self.per_second)

    @property
    def batch(self) -> int:
        """The tokens an idle worker waits for before it claims again: a tenth of a second's worth (at
        least one, at most the burst), so that a fast rate is claimed in batches, not one claim per token.
        The bucket keeps filling meanwhile, so no start is lost to the wait."""
        return max(1, min(self.burst, int(self.per_second / 10)))

    def wait_for(self, tokens: float, count: int) -> float:
        """Seconds until a bucket holding ``tokens`` holds ``count``; 0 when it already does."""
        return max(count - tokens, 0.0) / self.per_second

    @property
    def text(self) -> str:
        """As written: ``"10/s"`` (the burst apart)."""
        unit = next(u for u, seconds in PERIODS.items() if seconds == self.period)
        return f"{self.count}/{unit}"

    def __str__(self) -> str:
        return self.text + ("" if self.burst == self.count else f" (burst {self.burst})")


def problem(text: Any) -> str | None:
    """What is wrong with ``text`` as a rate, or None."""
    if not isinstance(text, str):
        return f"must be a string such as '10/s', '100/m' or '1000/h', got {text!r}"
    match = _RATE.fullmatch(text)
    if match is None:
        return f"must be 'N/s', 'N/m' or 'N/h' with N a whole number, got {text!r}"
    if int(match.group(1)) < 1:
        return f"must allow at least one a period, got {text!r}"
    return None


def parse(text: Any, burst: Any = None, label: str = "rate") -> Rate:
    """The ``Rate`` of ``text`` (``"10/s"``); ``burst`` defaults to its N. Raises ``ValueError`` naming ``label``."""
    error = problem(text)
    if error:
        raise ValueError(f"{label} {error}")
    match = _RATE.fullmatch(text)
    assert match is not None
    count = int(match.group(1))
    if burst is None:
        burst = count
    elif not values.is_count(burst):
        raise ValueError(f"burst= must be a positive int, got {burst!r}")
    return Rate(count, PERIODS[match.group(2)], burst)
