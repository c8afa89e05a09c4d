"""The demo's crons: expired messages are purged every minute; a summary of orders is logged daily at
09:00 in Amsterdam (DST-correct: 09:00 local all year round)."""

from __future__ import annotations

import logging
from datetime import timedelta

from django.db.models import Count
from django.utils import timezone

from django_scheduled_actions import cron_jobs, internal_action, internal_mutation, internal_query

from .models import Message, Order

logger = logging.getLogger(__name__)


@internal_mutation
def purge_messages(ctx, older_than_minutes: int = 60) -> int:
    cutoff = timezone.now() - timedelta(minutes=older_than_minutes)
    deleted, _ = Message.objects.filter(created_at__lt=cutoff).delete()
    return deleted


@internal_query
def orders_by_status(ctx) -> dict[str, int]:
    return dict(Order.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))


@internal_action
def report_orders(ctx) -> dict[str, int]:
    summary = ctx.run_query(orders_by_status, {})
    logger.info("orders by status: %s", summary)
    return summary


crons = cron_jobs()
crons.interval("purge old messages", {"minutes": 1}, purge_messages, {"older_than_minutes": 60})
crons.cron("daily order report", "0 9 * * *", report_orders, tz="Europe/Amsterdam")
