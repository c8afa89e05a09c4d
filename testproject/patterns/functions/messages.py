"""Delayed execution: a self-destructing message."""

from __future__ import annotations

from django_scheduled_actions import internal_mutation, mutation

from ..models import Message


@mutation
def send_expiring_message(ctx, body: str, expires_in_seconds: float) -> int:
    message = Message.objects.create(body=body)
    ctx.scheduler.run_after(expires_in_seconds, delete_message, {"id": message.pk})  # the guide: expiresInMs
    return message.pk


@internal_mutation
def delete_message(ctx, id: int) -> None:  # the guide names it id
    Message.objects.filter(pk=id).delete()
