"""Orchestration pattern 2, fan-out / fan-in: one job per item, then one ``on_complete`` with the counts."""

from __future__ import annotations

from django_scheduled_actions import (
    NonRetryableError,
    RetryPolicy,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
)

from .. import provider
from ..models import BatchReport, Item


@mutation
def process_all(ctx, item_ids: list[int], label: str = "") -> int:
    """Fan out: returns the batch id (``django_scheduled_actions.models.Batch`` shows the progress)."""
    return ctx.scheduler.batch(
        process_one, [{"item_id": i} for i in item_ids], on_complete=batch_complete, on_complete_args={"label": label}
    )


@internal_query
def get_item(ctx, item_id: int) -> dict | None:
    return Item.objects.filter(pk=item_id).values("id", "name").first()


@internal_mutation
def update_result(ctx, item_id: int, result: dict) -> None:
    Item.objects.filter(pk=item_id).update(status=Item.Status.PROCESSED, result=result)


@internal_action(retry=RetryPolicy(max_attempts=3, initial_backoff=1.0))
def process_one(ctx, item_id: int) -> dict:
    item = ctx.run_query(get_item, {"item_id": item_id})
    if item is None:
        raise NonRetryableError(f"item {item_id} not found")  # fails at once; counted as failed
    result = provider.post("process", item, idempotency_key=f"item-{item_id}")["result"]
    ctx.run_mutation(update_result, {"item_id": item_id, "result": result})
    return result


@internal_mutation
def batch_complete(ctx, batch_id: int, succeeded: int, failed: int, canceled: int, label: str) -> int:
    """Fan in: runs once, after the last item."""
    return BatchReport.objects.create(
        batch_id=batch_id, label=label, succeeded=succeeded, failed=failed, canceled=canceled
    ).pk
