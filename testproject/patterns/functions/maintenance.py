"""What the guide's crons run (``patterns/crons.py``)."""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

from django.db.models import Count
from django.utils import timezone

from django_scheduled_actions import internal_action, internal_mutation

from .. import provider
from ..models import DailyReport, Email, ExternalRecord, Message, Order, Payment, ProcessingJob

logger = logging.getLogger(__name__)


@internal_mutation
def cleanup_stale(ctx) -> int:
    """Jobs still pending an hour after they were submitted are marked stale."""
    one_hour_ago = timezone.now() - timedelta(hours=1)
    return ProcessingJob.objects.filter(status=ProcessingJob.Status.PENDING, created_at__lt=one_hour_ago).update(
        status=ProcessingJob.Status.STALE
    )


@internal_mutation
def generate_daily(ctx) -> dict:
    """Yesterday's orders, emails and payments by status."""
    end = timezone.now()
    since = end - timedelta(days=1)
    summary = {
        model.__name__.lower(): dict(
            model.objects.filter(created_at__gte=since)
            .values_list("status")
            .annotate(n=Count("id"))
            .values_list("status", "n")
        )
        for model in (Order, Email, Payment)
    }
    DailyReport.objects.update_or_create(day=end.date(), defaults={"summary": summary})
    return summary


@internal_mutation
def store_external_data(ctx, items: list[dict[str, Any]]) -> int:
    for item in items:
        ExternalRecord.objects.update_or_create(
            external_id=item["id"], defaults={"value": item["value"], "synced_at": timezone.now()}
        )
    return len(items)


@internal_action
def pull_external_data(ctx) -> int:
    try:
        items = provider.get("data")["items"]
    except provider.ProviderError as exc:  # the next run tries again
        logger.warning("sync external data failed: %s", exc)
        return 0
    return ctx.run_mutation(store_external_data, {"items": items})


@internal_mutation
def weekly_cleanup(ctx, older_than_days: int = 7) -> int:
    """Delete finished processing jobs and messages older than ``older_than_days``."""
    cutoff = timezone.now() - timedelta(days=older_than_days)
    finished = (ProcessingJob.Status.COMPLETED, ProcessingJob.Status.FAILED, ProcessingJob.Status.STALE)
    jobs, _ = ProcessingJob.objects.filter(status__in=finished, created_at__lt=cutoff).delete()
    messages, _ = Message.objects.filter(created_at__lt=cutoff).delete()
    return jobs + messages
