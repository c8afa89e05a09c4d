"""Action pattern 2, a multi-step workflow: read the order, charge it, mark it paid, schedule fulfilment;
mark it failed on any error."""

from __future__ import annotations

from django_scheduled_actions import (
    NonRetryableError,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)

from .. import provider
from ..models import Order


@mutation
def place_order(ctx, total_cents: int, payment_method: str = "tok_visa") -> int:
    order = Order.objects.create(total_cents=total_cents, payment_method=payment_method)
    ctx.scheduler.run_after(0, process_order, {"order_id": order.pk})
    return order.pk


@query
def order_status(ctx, order_id: int) -> dict | None:
    return Order.objects.filter(pk=order_id).values("status", "charge_id", "error").first()


@internal_query
def get_order(ctx, order_id: int) -> dict | None:
    return Order.objects.filter(pk=order_id).values("id", "total_cents", "payment_method", "status").first()


@internal_mutation
def mark_paid(ctx, order_id: int, charge_id: str) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.Status.PAID, charge_id=charge_id)


@internal_mutation
def mark_failed(ctx, order_id: int, error: str) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.Status.FAILED, error=error)


@internal_mutation
def fulfil(ctx, order_id: int) -> None:
    """The guide's ``internal.fulfillment.processOrder``."""
    Order.objects.filter(pk=order_id, status=Order.Status.PAID).update(status=Order.Status.FULFILLED)


@internal_action(timeout=60)
def process_order(ctx, order_id: int) -> None:
    order = ctx.run_query(get_order, {"order_id": order_id})  # step 1
    if order is None:
        raise NonRetryableError(f"order {order_id} not found")
    try:
        charge = provider.post(
            "charges",
            {
                "amount": order["total_cents"],
                "currency": "usd",  # step 2
                "source": order["payment_method"],
            },
            idempotency_key=f"order-{order_id}",
        )
        ctx.run_mutation(mark_paid, {"order_id": order_id, "charge_id": charge["id"]})  # step 3
        ctx.scheduler.run_after(0, fulfil, {"order_id": order_id})  # step 4
    except provider.ProviderError as exc:
        ctx.run_mutation(mark_failed, {"order_id": order_id, "error": str(exc)})
