"""Orchestration pattern 1, a saga: a provider subscription, then the local record, then a welcome email;
when a step fails, the finished ones are undone newest first (``django_scheduled_actions.Saga``)."""

from __future__ import annotations

from django.db import IntegrityError

from django_scheduled_actions import Saga, internal_action, internal_mutation

from .. import provider
from ..models import Subscription


@internal_action
def create_provider_subscription(ctx, customer: str, plan_id: str) -> str:
    return provider.post("subscriptions", {"customer": customer, "plan": plan_id})["id"]


@internal_action
def cancel_provider_subscription(ctx, subscription_id: str) -> None:
    provider.delete(f"subscriptions/{subscription_id}")


@internal_mutation
def create_local_subscription(ctx, customer: str, plan_id: str, provider_subscription_id: str) -> int:
    """Fails with an IntegrityError when the customer already has a subscription."""
    return Subscription.objects.create(
        customer=customer, plan_id=plan_id, provider_subscription_id=provider_subscription_id
    ).pk


@internal_mutation
def delete_local_subscription(ctx, subscription_id: int) -> None:
    Subscription.objects.filter(pk=subscription_id).delete()


@internal_action
def send_welcome_email(ctx, customer: str, plan_id: str) -> str:
    return provider.post("email", {"to": customer, "subject": f"Welcome to {plan_id}", "body": "Thanks!"})["id"]


@internal_action
def create_subscription(ctx, customer: str, plan_id: str) -> int | None:
    """The local subscription's id, or None when the saga rolled back (as the guide returns null)."""
    try:
        with Saga(ctx) as saga:  # journaled under this job: a retry resumes, never undoes twice
            provider_id = saga.step(
                "create provider subscription",
                create_provider_subscription,
                {"customer": customer, "plan_id": plan_id},
                compensate=cancel_provider_subscription,
                compensate_args=lambda sub_id: {"subscription_id": sub_id},
            )
            subscription_id = saga.step(
                "create local subscription",
                create_local_subscription,
                {"customer": customer, "plan_id": plan_id, "provider_subscription_id": provider_id},
                compensate=delete_local_subscription,
                compensate_args=lambda pk: {"subscription_id": pk},
            )
            saga.step("send welcome email", send_welcome_email, {"customer": customer, "plan_id": plan_id})
    except (provider.ProviderError, IntegrityError):
        return None
    return subscription_id
