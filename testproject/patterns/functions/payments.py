"""Orchestration pattern 4, idempotency keys: a repeated payment request creates one payment and one
charge; the charge itself carries the key to the provider, so a retried charge is not charged twice."""

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
from ..models import Payment


@mutation
def process_payment(ctx, idempotency_key: str, amount_cents: int, customer_id: str) -> int:
    existing = Payment.objects.filter(idempotency_key=idempotency_key).first()
    if existing:
        return existing.pk  # already done: return the existing payment
    payment = Payment.objects.create(
        idempotency_key=idempotency_key, amount_cents=amount_cents, customer_id=customer_id
    )
    ctx.scheduler.run_after(0, charge, {"payment_id": payment.pk})
    return payment.pk


@internal_query
def get_payment(ctx, payment_id: int) -> dict | None:
    return (
        Payment.objects.filter(pk=payment_id)
        .values("idempotency_key", "amount_cents", "customer_id", "status", "charge_id")
        .first()
    )


@internal_mutation
def mark_charged(ctx, payment_id: int, charge_id: str) -> None:
    Payment.objects.filter(pk=payment_id).update(status=Payment.Status.CHARGED, charge_id=charge_id)


@internal_mutation
def mark_failed(ctx, payment_id: int) -> None:
    Payment.objects.filter(pk=payment_id).update(status=Payment.Status.FAILED)


@internal_action(retry=RetryPolicy(max_attempts=4, initial_backoff=1.0))
def charge(ctx, payment_id: int) -> str:
    payment = ctx.run_query(get_payment, {"payment_id": payment_id})
    if payment is None:
        raise NonRetryableError(f"payment {payment_id} does not exist")
    if payment["status"] == Payment.Status.CHARGED:
        return payment["charge_id"]
    try:
        result = provider.post(
            "charges",
            {"amount": payment["amount_cents"], "currency": "usd", "customer": payment["customer_id"]},
            idempotency_key=f"payment-{payment['idempotency_key']}",
        )
    except provider.ProviderError as exc:
        if exc.retryable:
            raise  # retried with backoff, under the same key
        ctx.run_mutation(mark_failed, {"payment_id": payment_id})
        raise NonRetryableError(str(exc)) from exc
    ctx.run_mutation(mark_charged, {"payment_id": payment_id, "charge_id": result["id"]})
    return result["id"]
