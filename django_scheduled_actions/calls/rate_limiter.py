"""``rate_limiter``: token buckets held in the database, for code that must not call something too often
(DESIGN section 13). The buckets and their locking are in ``store/rates.py``."""

from __future__ import annotations

from datetime import datetime

from django.db import DEFAULT_DB_ALIAS

from ..core import rates, values
from ..core.rates import RateLimitStatus
from ..models.rates import FUNCTION_PREFIX
from ..store import rates as buckets


class RateLimiter:
    """``limit`` takes tokens from a named bucket (one per ``key``); ``reset`` forgets one."""

    def limit(
        self,
        name: str,
        key: str = "",
        *,
        rate: str,
        burst: int | None = None,
        count: int = 1,
        now: datetime | None = None,
        using: str = DEFAULT_DB_ALIAS,
    ) -> RateLimitStatus:
        """Take ``count`` tokens from the bucket ``(name, key)``, which holds at most ``burst`` (default:
        the rate's N) and refills at ``rate`` (``"N/s"``, ``"N/m"``, ``"N/h"``). Returns
        ``RateLimitStatus(ok, retry_after)``: ``ok`` if they were taken, else the seconds until they can be
        (nothing is taken then). Inside a transaction (a mutation's) the tokens are taken in it: a rollback
        gives them back. ``now`` (tests): refill to this time instead of the database's."""
        _check_names(name, key)
        parsed = rates.parse(rate, burst, "rate=")
        if not values.is_count(count):
            raise ValueError(f"count= must be a positive int, got {count!r}")
        return buckets.take(name, key, parsed, count, now=now, using=using)

    def reset(self, name: str, key: str = "", *, using: str = DEFAULT_DB_ALIAS) -> None:
        """Forget the bucket ``(name, key)``: the next ``limit`` finds it full, as if it had never been used."""
        _check_names(name, key)
        buckets.reset(name, key, using)


def _check_names(name: object, key: object) -> None:
    if not values.is_name(name, 255):
        raise ValueError(f"name= must be a non-empty string of at most 255 characters, got {name!r}")
    if not isinstance(key, str) or len(key) > 255:
        raise ValueError(f"key= must be a string of at most 255 characters, got {key!r}")
    if name.startswith(FUNCTION_PREFIX) and not key:
        raise ValueError(f"names starting with {FUNCTION_PREFIX!r} are the buckets of functions' rate_limit=")


rate_limiter = RateLimiter()
