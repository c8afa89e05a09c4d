"""Functions run by real worker processes in tests/process/test_processes.py.

Registered as "tests.app.process_functions:<qualname>". Bodies that must be caught mid-run either
commit a tally first (actions: visible to the test at once) or write a marker file (a mutation, whose
writes stay invisible until it commits), then hold until the test kills the worker or releases them.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from django.db import connection

from django_scheduled_actions import RetryPolicy, internal_action, internal_mutation

from .models import Counter, Effect

HOLD_LIMIT = 60.0  # a held body gives up after this long, so nothing outlives a broken test by much


def hold(release: str = "", limit: float = HOLD_LIMIT) -> bool:
    """Block until the file ``release`` exists (True) or ``limit`` seconds pass (False)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        if release and Path(release).exists():
            return True
        time.sleep(0.02)
    return False


@internal_mutation
def tally(ctx, name: str) -> int:
    """Count one committed run under ``name``."""
    counter, _ = Counter.objects.get_or_create(name=name)
    counter.value += 1
    counter.save()
    return counter.value


@internal_mutation
def effect(ctx, key: str) -> int:
    """One Effect row per committed run: exactly-once is "one row per key"."""
    job = ctx.job
    return Effect.objects.create(key=key, job_id=job.id if job else None, attempt=job.attempt if job else 0).pk


@internal_action
def effect_action(ctx, key: str) -> int:
    return ctx.run_mutation(effect, {"key": key})


@internal_mutation
def write_then_hold(ctx, key: str, marker: str, release: str = "") -> int:
    """Write an effect, then, on the first run only, announce it in ``marker`` and hold the transaction
    open until released (or killed)."""
    pk = ctx.run_mutation(effect, {"key": key})
    if not Path(marker).exists():
        Path(marker).write_text("inside the transaction")
        hold(release)
    return pk


@internal_action
def tally_then_hold(ctx, name: str, release: str = "") -> bool:
    """At most once: commit a tally (the side effect), then hold until released (or killed)."""
    ctx.run_mutation(tally, {"name": name})
    return hold(release)


@internal_action(retry=RetryPolicy(max_attempts=3, initial_backoff=0.1, jitter=False))
def tally_then_hold_first_attempt(ctx, name: str) -> int:
    """At least once: commit a tally, and hold (to be killed) on the first attempt only."""
    ctx.run_mutation(tally, {"name": name})
    if ctx.job.attempt == 1:
        hold()
    return ctx.job.attempt


@internal_action
def tally_then_sleep(ctx, name: str, seconds: float) -> float:
    """A long action: its tally counts how many times its body started."""
    ctx.run_mutation(tally, {"name": name})
    time.sleep(seconds)
    return seconds


@internal_mutation
def started_at(ctx) -> float:
    """Returns (stores as the job's result) the wall-clock time its body started."""
    return time.time()


@internal_action
def cancelled_action(ctx) -> None:
    """An action whose asyncio work was cancelled: ``CancelledError`` is a BaseException, not an Exception."""
    raise asyncio.CancelledError("the action's event loop was cancelled")


@internal_mutation
def exiting_mutation(ctx) -> None:
    """A mutation whose body (or a library it calls) raises SystemExit."""
    raise SystemExit(3)


@internal_mutation
def session_bounds(ctx) -> dict[str, str]:
    """The bounds the worker set on the transaction this mutation runs in (PostgreSQL)."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('lock_timeout')")
        idle, lock = cursor.fetchone()
    return {"idle_in_transaction_session_timeout": idle, "lock_timeout": lock}
