"""Functions of the telemetry tests (tests/db/test_telemetry.py): a mutation that schedules an action whose
body calls ``ctx.run_*``, an async twin, and a workflow."""

from __future__ import annotations

from django_scheduled_actions import internal_action, internal_mutation, internal_query, workflow

from .models import Counter


@internal_query
def traced_count(ctx, name: str) -> int:
    counter = Counter.objects.filter(name=name).first()
    return counter.value if counter else 0


@internal_mutation
def traced_bump(ctx, name: str) -> int:
    counter, _ = Counter.objects.get_or_create(name=name)
    counter.value += 1
    counter.save()
    return counter.value


@internal_mutation
def place_order(ctx, name: str, fail: bool = False) -> int:
    """Counts the order, then schedules its charge."""
    ctx.run_mutation(traced_bump, {"name": name})
    return ctx.scheduler.run_after(0, charge_order, {"name": name, "fail": fail})


@internal_action
def charge_order(ctx, name: str, fail: bool = False) -> int:
    seen = ctx.run_query(traced_count, {"name": name})
    ctx.run_mutation(traced_bump, {"name": name})
    if fail:
        raise RuntimeError(f"card declined for {name}")
    return seen


@internal_action
async def async_charge(ctx, name: str) -> int:
    seen = await ctx.run_query(traced_count, {"name": name})
    await ctx.run_mutation(traced_bump, {"name": name})
    await ctx.scheduler.run_after(0, traced_bump, {"name": name + "-after"})
    return seen


@workflow
def traced_flow(step, name: str) -> int:
    step.run_mutation(traced_bump, {"name": name})
    step.run_action(charge_order, {"name": name})
    return step.run_query(traced_count, {"name": name})
