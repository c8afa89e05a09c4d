"""Async actions for tests/db/test_async_actions.py and the real-process tests of connection bounds.
Registered as "tests.app.async_functions:<qualname>"."""

from __future__ import annotations

import asyncio
import time

from django_scheduled_actions import RetryPolicy, internal_action, internal_mutation, internal_query

from .models import Counter, Effect, Note
from .process_functions import tally

CANCELLED: list[int] = []  # ids of the jobs whose coroutine saw its cancellation


@internal_query
def count_of(ctx, name: str) -> int:
    counter = Counter.objects.filter(name=name).first()
    return counter.value if counter else 0


@internal_mutation
def note(ctx, text: str) -> None:
    Note.objects.create(text=text)


WAITING = {"now": 0, "most": 0}  # fetch_and_record bodies in their wait at once: now, and the most seen


@internal_action
async def fetch_and_record(ctx, name: str, wait: float = 0.0) -> int:
    """What an action that calls a service does: read, wait on the network, write, schedule."""
    before = await ctx.run_query(count_of, {"name": name})
    WAITING["now"] += 1  # on the worker's one event loop: no lock needed
    WAITING["most"] = max(WAITING["most"], WAITING["now"])
    try:
        await asyncio.sleep(wait)
    finally:
        WAITING["now"] -= 1
    after = await ctx.run_mutation(tally, {"name": name})
    await ctx.scheduler.run_after(3600, note_later, {"text": f"{name}:{after}"})
    return after - before


@internal_action
async def note_later(ctx, text: str) -> None:
    await ctx.run_mutation(note, {"text": text})


@internal_action
async def calls_other_actions(ctx, name: str) -> list[int]:
    """An async action awaiting an async action and a sync one."""
    return [await ctx.run_action(fetch_and_record, {"name": name}), await ctx.run_action(sync_bump, {"name": name})]


@internal_action
def sync_bump(ctx, name: str) -> int:
    return ctx.run_mutation(tally, {"name": name})


@internal_action(timeout=0.5)
async def sleeps_past_its_timeout(ctx, seconds: float) -> None:
    try:
        await asyncio.sleep(seconds)
    except asyncio.CancelledError:
        CANCELLED.append(ctx.job.id)
        raise


@internal_action(retry=RetryPolicy(max_attempts=3, initial_backoff=0.01, jitter=False))
async def fails_on_first_attempt(ctx, name: str) -> int:
    await ctx.run_mutation(tally, {"name": name})
    if ctx.job.attempt == 1:
        raise ConnectionError("the provider hung up")
    return ctx.job.attempt


@internal_action
async def blocks_the_loop(ctx, seconds: float) -> None:
    time.sleep(seconds)  # what a sync call or CPU work in an async body does: nothing else runs on the loop


@internal_action
async def returns_the_wrong_type(ctx) -> int:
    return "not an int"  # type: ignore[return-value]


@internal_action
async def waits_then_records(ctx, i: int, wait: float) -> None:
    """Test E's job: wait on the network, then record once (an Effect row per job)."""
    await asyncio.sleep(wait)
    await ctx.run_mutation(record_effect, {"key": f"async{i}"})


@internal_action
def waits_then_records_sync(ctx, i: int, wait: float) -> None:
    time.sleep(wait)
    ctx.run_query(count_of, {"name": "nothing"})
    ctx.run_mutation(record_effect, {"key": f"sync{i}"})


@internal_mutation
def record_effect(ctx, key: str) -> None:
    Effect.objects.create(key=key, job_id=ctx.job.id if ctx.job else None)
