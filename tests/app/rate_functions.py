"""Functions of tests/db/test_rate_limits.py and tests/process/test_rate_limits_processes.py.

The rate-limited ones are registered by ``enable_rates()`` (the ``rated`` fixture; ``SA_TEST_RATES=1`` in
worker processes), so that other tests' claims are not those of a project with rate limits."""

from __future__ import annotations

import os
import time
from types import SimpleNamespace

from django_scheduled_actions import (
    RateLimited,
    RetryPolicy,
    internal_action,
    internal_mutation,
    mutation,
    rate_limiter,
    workflow,
)
from django_scheduled_actions.core.registry import registry

from .models import Counter


class Boom(Exception):
    pass


def _log_start(path: str, job_id: int, tag: str, seconds: float = 0.0) -> None:
    with open(path, "a") as log:
        log.write(f"start {time.time():.6f} {job_id} {tag}\n")
    time.sleep(seconds)
    with open(path, "a") as log:
        log.write(f"end {time.time():.6f} {job_id} {tag}\n")


def rated_run(ctx, path: str, seconds: float = 0.0) -> None:
    _log_start(path, ctx.job.id, "rated_run", seconds)


def rated_and_limited_run(ctx, path: str, seconds: float = 0.0) -> None:
    _log_start(path, ctx.job.id, "rated_and_limited_run", seconds)


def rated_mutation(ctx, i: int) -> int:
    return i


def slow_rate(ctx, i: int) -> int:
    return i


def fast_rate(ctx, i: int) -> int:
    """The benchmark's rate-limited no-op (benchmarks/rates.py)."""
    return i


@internal_mutation
def send_message(ctx, user: str, fail: bool = False) -> bool:
    """Counts a message of ``user`` if the bucket allows it; ``fail`` raises after taking the token."""
    status = rate_limiter.limit("send_message", key=user, rate="3/m")
    if status.ok:
        counter, _ = Counter.objects.get_or_create(name=f"sent:{user}")
        counter.value += 1
        counter.save()
    if fail:
        raise Boom("after the token was taken")
    return status.ok


@mutation
def limited_over_http(ctx, n: int = 1) -> int:
    status = rate_limiter.limit("http", key="everyone", rate="1/m", count=n)
    if not status.ok:
        raise RateLimited(retry_after=status.retry_after)
    return n


@internal_action(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=False))
def provider_says_wait(ctx) -> None:
    """A provider answering 429 with Retry-After: 30."""
    raise RateLimited(retry_after=30)


@workflow
def rated_steps(step, n: int) -> int:
    """``n`` steps of ``rated_mutation`` (5/s, registered by ``enable_rates()``)."""
    fn = registry.get(f"{__name__}:rated_mutation")
    for i in range(n):
        step.run_mutation(fn, {"i": i})
    return n


def enable_rates() -> SimpleNamespace:
    """Register the rate-limited functions; returns them by name."""
    return SimpleNamespace(
        rated_run=internal_action(rate_limit="10/s")(rated_run),
        rated_and_limited_run=internal_action(rate_limit="10/s", max_concurrency=2)(rated_and_limited_run),
        rated_mutation=internal_mutation(rate_limit="5/s")(rated_mutation),
        slow_rate=internal_mutation(rate_limit="2/m")(slow_rate),
        fast_rate=internal_mutation(rate_limit="100/s")(fast_rate),
    )


def disable_rates(functions: SimpleNamespace) -> None:
    for fn in vars(functions).values():
        registry.unregister(fn.name)


if os.environ.get("SA_TEST_RATES") == "1":
    enable_rates()
