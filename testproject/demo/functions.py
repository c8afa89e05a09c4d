"""Example functions of the demo: a self-destructing message and an order paid by a flaky provider."""

import random
import uuid

from django_scheduled_actions import (
    NonRetryableError,
    RetryPolicy,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
)
from django_scheduled_actions.models import ScheduledFunction

from .models import Message, Order


@mutation
def send_expiring_message(ctx, body: str, expires_in_seconds: float = 30) -> int:
    message = Message.objects.create(body=body)
    ctx.scheduler.run_after(expires_in_seconds, delete_message, {"id": message.pk})
    return message.pk


@internal_mutation
def delete_message(ctx, id: int) -> None:
    Message.objects.filter(pk=id).delete()


@internal_query
def get_order(ctx, order_id: int) -> dict | None:
    order = Order.objects.filter(pk=order_id).values("id", "total_cents", "status").first()
    return order


@internal_mutation
def mark_paid(ctx, order_id: int, charge_id: str) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.Status.PAID, charge_id=charge_id)


@internal_mutation
def mark_failed(ctx, order_id: int, error: str) -> None:
    Order.objects.filter(pk=order_id).update(status=Order.Status.FAILED, error=error)


@internal_mutation
def fulfil(ctx, order_id: int) -> None:
    Order.objects.filter(pk=order_id, status=Order.Status.PAID).update(status=Order.Status.FULFILLED)


@internal_action(retry=RetryPolicy(max_attempts=4, initial_backoff=1.0), timeout=30)
def charge(ctx, order_id: int) -> str:
    """Charge an order through a payment provider that fails now and then (retried with backoff)."""
    order = ctx.run_query(get_order, {"order_id": order_id})
    if order is None:
        raise NonRetryableError(f"order {order_id} does not exist")
    if random.random() < 0.3:
        raise ConnectionError("payment provider timed out (simulated)")
    charge_id = f"ch_{uuid.uuid4().hex[:12]}"
    ctx.run_mutation(mark_paid, {"order_id": order_id, "charge_id": charge_id})
    ctx.scheduler.run_after(0, fulfil, {"order_id": order_id})
    return charge_id


@mutation
def place_order(ctx, total_cents: int) -> int:
    order = Order.objects.create(total_cents=total_cents)
    ctx.scheduler.run_after(0, charge, {"order_id": order.pk})
    return order.pk


@query
def order_status(ctx, order_id: int) -> dict | None:
    """What the demo page polls: the order's status and the attempts of its charge job."""
    order = Order.objects.filter(pk=order_id).values("status", "charge_id").first()
    if order is None:
        return None
    job = (
        ScheduledFunction.objects.filter(name=charge.name, args__order_id=order_id).values("state", "attempts").first()
    )
    return {**order, "charge": job}
