"""Schedule one run of each pattern over the next minute, so a new user sees them flow through the admin."""

from datetime import timedelta

from django.core.management.base import BaseCommand
from django.utils import timezone

from django_scheduled_actions import run_mutation, scheduler
from patterns.functions import (
    durable,
    emails,
    fanout,
    messages,
    orders,
    payments,
    reminders,
    retries,
    subscriptions,
)
from patterns.models import Item, ProviderFailure, Subscription


class Command(BaseCommand):
    help = "Schedule the Convex guide's patterns (they call the fake provider of the running server)."

    def handle(self, *args, **options):
        # Jobs start a few seconds from now: the server that plays the provider is starting meanwhile.
        ProviderFailure.objects.update_or_create(endpoint="process", defaults={"fail_next": 2})
        for n in range(4):
            scheduler.run_after(
                5,
                emails.queue_email,
                {"to": f"user{n}@example.com", "subject": f"Hello {n}", "body": "Sent through the fake email API."},
            )
        scheduler.run_after(8, orders.place_order, {"total_cents": 2500})
        scheduler.run_after(10, orders.place_order, {"total_cents": 990, "payment_method": "tok_declined"})
        run_mutation(messages.send_expiring_message, {"body": "this message deletes itself", "expires_in_seconds": 30})
        run_mutation(
            reminders.schedule_reminder,
            {
                "email": "ada@example.com",
                "message": "Stand-up in 5 minutes",
                "send_at": timezone.now() + timedelta(seconds=20),
            },
        )
        scheduler.run_after(6, retries.submit_job, {"data": {"task": "resize", "fails": "twice, then works"}})
        for _ in range(2):  # the same request twice: one payment, one charge
            scheduler.run_after(
                12,
                payments.process_payment,
                {"idempotency_key": "demo-payment-1", "amount_cents": 4200, "customer_id": "cus_ada"},
            )
        scheduler.run_after(15, subscriptions.create_subscription, {"customer": "ada@example.com", "plan_id": "pro"})
        scheduler.run_after(
            25,
            subscriptions.create_subscription,  # a second one for ada: rolled back
            {"customer": "ada@example.com", "plan_id": "basic"},
        )
        scheduler.run_after(9, durable.place_order_durably, {"total_cents": 1800})  # the order as a workflow
        # the saga as a workflow, for a customer with no subscription yet (so that a second `make demo` succeeds too)
        earlier = Subscription.objects.filter(customer__startswith="carol").count()
        carol = f"carol+{earlier}@example.com" if earlier else "carol@example.com"
        scheduler.run_after(18, durable.subscribe_durably, {"customer": carol, "plan_id": "team"})
        items = [Item.objects.create(name=f"item {n}").pk for n in range(20)]
        scheduler.run_after(10, fanout.process_all, {"item_ids": items, "label": "demo batch of 20"})
        self.stdout.write(
            "scheduled the patterns: emails, orders, an expiring message, a reminder, a retried job, "
            "an idempotent payment, two subscription sagas, a batch of 20, and an order and a subscription as "
            "durable workflows (see the admin)"
        )
