"""The guide's multi-step order and subscription saga written as durable workflows: each call is a step,
journaled, so a crash anywhere resumes after the last finished one, and a failed step raises ``StepFailed``
where the guide's ``catch`` would be."""

from __future__ import annotations

from django_scheduled_actions import NonRetryableError, RetryPolicy, StepFailed, internal_action, mutation, workflow

from .. import provider
from ..models import Order
from . import orders
from . import subscriptions as subs

CHARGE_RETRY = RetryPolicy(max_attempts=3, initial_backoff=1.0)


@mutation
def place_order_durably(ctx, total_cents: int, payment_method: str = "tok_visa") -> int:
    """Create the order and start its workflow, in one transaction."""
    order = Order.objects.create(total_cents=total_cents, payment_method=payment_method)
    ctx.workflows.start(process_order, {"order_id": order.pk}, idempotency_key=f"order-{order.pk}")
    return order.pk


@mutation
def subscribe_durably(ctx, customer: str, plan_id: str) -> int:
    """Start the subscription workflow (scheduled, it starts once the provider is up); returns the run id."""
    return ctx.workflows.start(create_subscription, {"customer": customer, "plan_id": plan_id})


@internal_action(timeout=60)
def charge_order(ctx, order_id: int, amount: int, source: str) -> str:
    """The charge (the provider's idempotency key makes a retried step charge once); a refusal is final."""
    try:
        charge = provider.post(
            "charges", {"amount": amount, "currency": "usd", "source": source}, idempotency_key=f"order-{order_id}"
        )
    except provider.ProviderError as exc:
        if not exc.retryable:
            raise NonRetryableError(str(exc)) from exc
        raise
    return str(charge["id"])


@workflow(name="patterns.process_order")
def process_order(step, order_id: int) -> str:
    """``processOrder``: read the order, charge it, mark it paid, then fulfil it; mark it failed on error."""
    order = step.run_query(orders.get_order, {"order_id": order_id})  # step 1
    if order is None:
        return "not found"
    args = {"order_id": order_id, "amount": order["total_cents"], "source": order["payment_method"]}
    try:
        charge_id = step.run_action(charge_order, args, retry=CHARGE_RETRY)  # step 2
    except StepFailed as failed:
        step.run_mutation(orders.mark_failed, {"order_id": order_id, "error": str(failed)})
        return "failed"
    step.run_mutation(orders.mark_paid, {"order_id": order_id, "charge_id": charge_id})  # step 3
    step.run_mutation(orders.fulfil, {"order_id": order_id})  # step 4: the fulfilment, as a step of its own
    return "fulfilled"


@workflow(name="patterns.create_subscription")
def create_subscription(step, customer: str, plan_id: str) -> int | None:
    """The subscription saga: each finished step is undone, newest first, when a later one fails."""
    who = {"customer": customer, "plan_id": plan_id}
    try:
        provider_id = step.run_action(subs.create_provider_subscription, who)
    except StepFailed:
        return None  # nothing was done
    undo_provider = (subs.cancel_provider_subscription, {"subscription_id": provider_id})
    try:
        local_id = step.run_mutation(subs.create_local_subscription, {**who, "provider_subscription_id": provider_id})
    except StepFailed:  # the customer has one already
        step.run_action(*undo_provider)
        return None
    try:
        step.run_action(subs.send_welcome_email, who)
    except StepFailed:
        step.run_mutation(subs.delete_local_subscription, {"subscription_id": local_id})
        step.run_action(*undo_provider)
        return None
    return local_id
