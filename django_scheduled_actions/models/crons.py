"""Cron definitions, synced from code or created in the admin."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import models
from django.db.models import Q
from django.utils.timezone import now as _now
from django.utils.translation import gettext_lazy as _

from .jobs import ScheduledFunction


class CronJobQuerySet(models.QuerySet["CronJob"]):
    def due(self, now: datetime) -> CronJobQuerySet:
        """Enabled crons whose next tick has come."""
        return self.filter(enabled=True, next_run_at__lte=now)

    def unscheduled(self) -> CronJobQuerySet:
        return self.filter(enabled=True, next_run_at__isnull=True)

    def with_last_job(self) -> CronJobQuerySet:
        """Each cron annotated with its latest job's id and state (``last_job_id``, ``last_job_state``; None
        before its first run): one subquery each, not a query per cron."""
        latest = ScheduledFunction.objects.filter(cron=models.OuterRef("pk")).order_by("-id")
        return self.annotate(
            last_job_id=models.Subquery(latest.values("pk")[:1]),
            last_job_state=models.Subquery(latest.values("state")[:1]),
        )

    def next_tick(self) -> datetime | None:
        earliest: datetime | None = self.filter(enabled=True).aggregate(next=models.Min("next_run_at"))["next"]
        return earliest

    def advance(
        self,
        cron_id: int,
        cursor: datetime | None,
        next_run_at: datetime,
        *,
        fired: datetime | None = None,
        skipped: int = 0,
    ) -> int:
        """Move a cron's cursor from ``cursor`` to ``next_run_at`` (compare-and-set: of the workers that
        handle one tick, one moves the cursor), recording the fired tick and the skipped ones."""
        fields: dict[str, Any] = {"next_run_at": next_run_at, "skipped_count": models.F("skipped_count") + skipped}
        if fired is not None:
            fields["last_run_at"] = fired
        return self.filter(pk=cron_id, next_run_at=cursor).update(**fields)


class CronJob(models.Model):
    """A recurring schedule that enqueues a mutation or action: defined in code (``crons.py``,
    synced by the workers) or in the admin. Exactly one of ``expression`` and ``interval_seconds`` is set."""

    class Source(models.TextChoices):
        CODE = "code", _("defined in code")
        ADMIN = "admin", _("defined in the admin")

    name = models.CharField(max_length=200)
    function = models.CharField(max_length=255)
    args = models.JSONField(default=dict, blank=True)
    expression = models.CharField(
        max_length=200, blank=True, default="", help_text=_("a five-field cron expression, e.g. 0 9 * * *")
    )
    interval_seconds = models.FloatField(null=True, blank=True, help_text=_("or: every this many seconds"))
    timezone = models.CharField(max_length=64, default="UTC", help_text=_("IANA time zone of the expression"))
    enabled = models.BooleanField(default=True)
    source = models.CharField(max_length=5, choices=Source.choices, default=Source.ADMIN, editable=False)
    last_run_at = models.DateTimeField(null=True, blank=True, editable=False, help_text=_("the last tick that fired"))
    next_run_at = models.DateTimeField(null=True, blank=True, editable=False, help_text=_("the next tick to handle"))
    skipped_count = models.PositiveIntegerField(
        default=0, editable=False, help_text=_("ticks skipped: overlap, downtime, invalid")
    )
    created_at = models.DateTimeField(default=_now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CronJobQuerySet.as_manager()

    class Meta:
        db_table = "scheduled_actions_cron"
        verbose_name = _("cron job")
        constraints = [
            models.UniqueConstraint(fields=["name"], name="sa_cron_name_unique"),
            models.CheckConstraint(
                condition=Q(expression="", interval_seconds__isnull=False, interval_seconds__gte=1)
                | (~Q(expression="") & Q(interval_seconds__isnull=True)),
                name="sa_cron_one_schedule",
                violation_error_message=_(
                    "Give either a cron expression or an interval of at least one second (not both)."
                ),
            ),
        ]

    def __str__(self) -> str:
        return self.name
