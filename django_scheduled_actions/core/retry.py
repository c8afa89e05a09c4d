"""Retry policies for actions: exponential backoff with jitter."""

from __future__ import annotations

import random
from dataclasses import dataclass

from . import values


@dataclass(frozen=True)
class RetryPolicy:
    """Attempt *n* fails: the next waits ``initial_backoff * base**(n-1)`` seconds, capped at
    ``max_backoff``, times a random factor in [0.5, 1.5) when ``jitter``."""

    max_attempts: int = 5
    initial_backoff: float = 0.25
    base: float = 2.0
    max_backoff: float = 3600.0
    jitter: bool = True

    def __post_init__(self) -> None:
        if not values.is_int(self.max_attempts):
            raise TypeError("RetryPolicy.max_attempts must be an int")
        if self.max_attempts < 1:
            raise ValueError("RetryPolicy.max_attempts must be at least 1")
        for field in ("initial_backoff", "base", "max_backoff"):
            value = getattr(self, field)
            if not values.is_finite(value) or value < 0:
                raise ValueError(f"RetryPolicy.{field} must be a finite number >= 0")
        if self.base < 1:
            raise ValueError("RetryPolicy.base must be >= 1")

    def backoff(self, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        exponent = min(attempt - 1, 1000)
        try:
            delay = min(self.initial_backoff * self.base**exponent, self.max_backoff)
        except OverflowError:
            delay = self.max_backoff
        if self.jitter:
            delay *= 0.5 + (rng or random).random()
        return delay


NO_RETRY = RetryPolicy(max_attempts=1, jitter=False)
