"""Action pattern 1, an external API call; and pitfall 1, an external call whose outcome is recorded."""

from __future__ import annotations

from django.utils import timezone

from django_scheduled_actions import internal_action, internal_mutation, internal_query, mutation

from .. import provider
from ..models import Email


@internal_action
def send_email(ctx, to: str, subject: str, body: str) -> dict:
    """The guide's ``sendEmail``: POST to the email API; ``{"success": ..., "message_id": ...}``."""
    try:
        data = provider.post("email", {"to": to, "subject": subject, "body": body})
    except provider.ProviderError:
        return {"success": False, "message_id": None}
    return {"success": True, "message_id": data["id"]}


@mutation
def queue_email(ctx, to: str, subject: str, body: str) -> int:
    """Store the email and send it in the background (fire and forget, committed with the row)."""
    email = Email.objects.create(to=to, subject=subject, body=body)
    ctx.scheduler.run_after(0, deliver_email, {"email_id": email.pk})
    return email.pk


@internal_query
def get_email(ctx, email_id: int) -> dict | None:
    return Email.objects.filter(pk=email_id).values("to", "subject", "body", "status").first()


@internal_mutation
def mark_sent(ctx, email_id: int, message_id: str) -> None:
    Email.objects.filter(pk=email_id).update(status=Email.Status.SENT, message_id=message_id, error="")


@internal_mutation
def mark_failed(ctx, email_id: int, error: str) -> None:
    Email.objects.filter(pk=email_id).update(status=Email.Status.FAILED, error=error)


@internal_action
def deliver_email(ctx, email_id: int) -> str | None:
    """Pitfall 1 done right: a failed call is recorded, not lost."""
    email = ctx.run_query(get_email, {"email_id": email_id})
    if email is None or email["status"] == Email.Status.SENT:
        return None
    try:
        data = provider.post(
            "email", {k: email[k] for k in ("to", "subject", "body")}, idempotency_key=f"email-{email_id}"
        )
    except provider.ProviderError as exc:
        ctx.run_mutation(mark_failed, {"email_id": email_id, "error": f"{exc} at {timezone.now():%H:%M:%S}"})
        return None
    ctx.run_mutation(mark_sent, {"email_id": email_id, "message_id": data["id"]})
    return data["id"]
