"""Scheduled at a specific time: a reminder, and canceling it."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from django_scheduled_actions import RetryPolicy, internal_action, internal_mutation, internal_query, mutation

from .. import provider
from ..models import Reminder


@mutation
def schedule_reminder(ctx, email: str, message: str, send_at: datetime) -> int:
    """Returns the scheduled function's id (what ``cancel_reminder`` takes), as the guide's ``runAt`` does."""
    reminder = Reminder.objects.create(email=email, message=message, send_at=send_at)
    job_id = ctx.scheduler.run_at(send_at, send_reminder, {"reminder_id": reminder.pk})
    Reminder.objects.filter(pk=reminder.pk).update(job_id=job_id)
    return job_id


@mutation
def cancel_reminder(ctx, scheduled_id: int) -> None:
    ctx.scheduler.cancel(scheduled_id)
    Reminder.objects.filter(job_id=scheduled_id, status=Reminder.Status.SCHEDULED).update(
        status=Reminder.Status.CANCELED
    )


@internal_query
def get_reminder(ctx, reminder_id: int) -> dict | None:
    return Reminder.objects.filter(pk=reminder_id).values("email", "message", "status").first()


@internal_mutation
def mark_sent(ctx, reminder_id: int) -> None:
    Reminder.objects.filter(pk=reminder_id).update(status=Reminder.Status.SENT, sent_at=timezone.now())


@internal_action(retry=RetryPolicy(max_attempts=5, initial_backoff=2.0))
def send_reminder(ctx, reminder_id: int) -> str | None:
    reminder = ctx.run_query(get_reminder, {"reminder_id": reminder_id})
    if reminder is None or reminder["status"] != Reminder.Status.SCHEDULED:
        return None
    sent = provider.post(
        "email",
        {"to": reminder["email"], "subject": "Reminder", "body": reminder["message"]},
        idempotency_key=f"reminder-{reminder_id}",
    )  # a retry after a lost reply sends once
    ctx.run_mutation(mark_sent, {"reminder_id": reminder_id})
    return sent["id"]
