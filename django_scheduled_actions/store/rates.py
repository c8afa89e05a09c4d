"""Token buckets in the database: ``rate_limiter.limit`` and the claims of functions with ``rate_limit=``.

A bucket is one ``RateLimitBucket`` row. Taking tokens locks it (``SELECT ... FOR UPDATE`` on PostgreSQL
and MySQL/MariaDB; on SQLite the write lock, taken when the transaction began), refills it for the time
since its last update on the database's clock (``dbclock``), takes what fits and writes it back, all in
the caller's transaction: inside a mutation a rollback gives the tokens back, and a mutation run again
after a conflict takes them again only because the first attempt's were rolled back. Any number of
callers on any number of machines take from one bucket one at a time, so none gets more than it holds.
"""

from __future__ import annotations

from collections import Counter
from datetime import datetime, timedelta

from django.db import DEFAULT_DB_ALIAS, connections

from ..core.rates import Rate, RateLimitStatus
from ..models import RateLimitBucket
from ..models.rates import FUNCTION_PREFIX
from . import dbclock
from .transactions import run_in_short_transaction


def locked(name: str, key: str, rate: Rate, now: datetime | None, using: str) -> tuple[RateLimitBucket, datetime]:
    """The bucket ``(name, key)``, locked for the caller's transaction (created full if missing), and the
    time to refill it to: ``now``, else the database's present, read once the lock is held."""
    rows = RateLimitBucket.objects.using(using)
    bucket = rows.select_for_update().filter(name=name, key=key).first()
    now = now or dbclock.now(using)
    if bucket is None:
        fresh = _full(name, rate, now)
        fresh.key = key
        rows.bulk_create([fresh], ignore_conflicts=True)  # a concurrent caller may have created it first
        bucket = rows.select_for_update().get(name=name, key=key)
    return bucket, now


def held(bucket: RateLimitBucket, rate: Rate, now: datetime) -> float:
    """The tokens ``bucket`` holds at ``now`` under ``rate`` (the rate in code wins over the one on the row)."""
    return rate.refilled(bucket.tokens, (now - bucket.updated_at).total_seconds())


def write(bucket: RateLimitBucket, rate: Rate, tokens: float, now: datetime, using: str) -> None:
    """Store what the locked ``bucket`` holds after a take; its clock never goes back."""
    updated_at = max(now, bucket.updated_at)
    RateLimitBucket.objects.using(using).filter(pk=bucket.pk).update(
        tokens=tokens, updated_at=updated_at, rate=rate.text, burst=rate.burst
    )


def take(
    name: str, key: str, rate: Rate, count: int, *, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS
) -> RateLimitStatus:
    """Take ``count`` tokens from the bucket ``(name, key)`` if it holds them; in the caller's transaction
    if one is open (a savepoint), else in a short one of its own."""
    if count > rate.burst:
        raise ValueError(f"count={count} can never be taken from a bucket of burst {rate.burst} ({name!r})")

    def body() -> RateLimitStatus:
        bucket, at = locked(name, key, rate, now, using)
        tokens = held(bucket, rate, at)
        if tokens < count:
            return RateLimitStatus(False, rate.wait_for(tokens, count))
        write(bucket, rate, tokens - count, at, using)
        return RateLimitStatus(True, 0.0)

    return run_in_short_transaction(body, using)


Opened = dict[str, tuple[RateLimitBucket, Rate, float, datetime]]  # function -> (bucket, rate, tokens, when)


def open_buckets(rates: dict[str, Rate], free: dict[str, int], now: datetime | None, using: str) -> Opened:
    """Lock the buckets of the functions ``rates`` names, in name order, for a claim's transaction; note
    each one's whole tokens in ``free`` (``rate:<name>``): at most that many of its jobs may start.

    A bucket another worker's claim holds is skipped (SKIP LOCKED, where the database has it): that claim
    takes its jobs, and this one goes on with the others' instead of waiting behind it."""
    if not rates:
        return {}
    names = {FUNCTION_PREFIX + name: name for name in rates}
    free.update({f"rate:{name}": 0 for name in rates})
    found = _lock_buckets(list(names), using)
    now = now or dbclock.now(using)
    if len(found) < len(names):
        missing = [_full(n, rates[names[n]], now) for n in names if n not in found]
        RateLimitBucket.objects.using(using).bulk_create(missing, ignore_conflicts=True)
        found = _lock_buckets(list(names), using)
    opened: Opened = {}
    for bucket_name, bucket in found.items():
        name = names[bucket_name]
        tokens = held(bucket, rates[name], now)
        free[f"rate:{name}"] = int(tokens + 1e-9)  # a whole token less a rounding error is a token
        opened[name] = (bucket, rates[name], tokens, now)
    return opened


def _lock_buckets(names: list[str], using: str) -> dict[str, RateLimitBucket]:
    rows = RateLimitBucket.objects.using(using).filter(name__in=names, key="").order_by("name")
    skip_locked = connections[using].features.has_select_for_update_skip_locked
    return {bucket.name: bucket for bucket in rows.select_for_update(skip_locked=skip_locked)}


def spend(opened: Opened, started: list[str], using: str) -> None:
    """Take one token of each opened bucket per job of its function in ``started``."""
    counts = Counter(started)
    for name, (bucket, rate, tokens, now) in opened.items():
        if counts[name]:
            write(bucket, rate, max(tokens - counts[name], 0.0), now, using)


def any_token(rates: dict[str, Rate], now: datetime | None, using: str) -> bool:
    """Whether any of these functions' buckets holds a whole token (or does not exist yet: it starts full),
    read without a lock: a claim that finds them all empty need not open its transaction."""
    if not rates:
        return False
    names = {FUNCTION_PREFIX + name: rate for name, rate in rates.items()}
    buckets = list(RateLimitBucket.objects.using(using).filter(name__in=list(names), key=""))
    if len(buckets) < len(names):
        return True
    now = now or dbclock.now(using)
    return any(held(bucket, names[bucket.name], now) >= 1 - 1e-9 for bucket in buckets)


def next_token(rates: dict[str, Rate], now: datetime, using: str) -> datetime | None:
    """When the first of these functions' buckets next holds a batch of tokens (``Rate.batch``: one, for
    rates up to 10/s), if that is after ``now`` (one that holds them already waits for something else: a
    slot of its concurrency limit, another claim)."""
    if not rates:
        return None
    names = {FUNCTION_PREFIX + name: rate for name, rate in rates.items()}
    waits = [
        names[bucket.name].wait_for(held(bucket, names[bucket.name], now), names[bucket.name].batch)
        for bucket in RateLimitBucket.objects.using(using).filter(name__in=list(names), key="")
    ]
    soonest = min((wait for wait in waits if wait > 0), default=None)
    return None if soonest is None else now + timedelta(seconds=soonest)


def _full(name: str, rate: Rate, now: datetime) -> RateLimitBucket:
    return RateLimitBucket(name=name, key="", tokens=rate.burst, updated_at=now, rate=rate.text, burst=rate.burst)


def reset(name: str, key: str = "", using: str = DEFAULT_DB_ALIAS) -> int:
    """Forget the bucket ``(name, key)``: the next take finds it full, as if never used. Returns how many rows went."""
    deleted, _ = RateLimitBucket.objects.using(using).filter(name=name, key=key).delete()
    return deleted
