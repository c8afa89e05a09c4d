"""Worker processes: their heartbeat is the lease on every job they hold."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _


class WorkerProcessQuerySet(models.QuerySet):
    def alive(self, now: datetime) -> WorkerProcessQuerySet:
        return self.filter(expires_at__gte=now)

    def lost(self, now: datetime) -> WorkerProcessQuerySet:
        """Workers that stopped heartbeating without saying goodbye (killed, machine lost)."""
        return self.filter(expires_at__lt=now, stopped_at__isnull=True)


class WorkerProcess(models.Model):
    """A ``runworker`` process. Its heartbeat is the lease on every job it holds: while ``expires_at`` is
    in the future, nobody recovers its jobs; once it passes, any worker may."""

    worker_id = models.CharField(max_length=255, unique=True)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    queues = models.JSONField(default=list, blank=True)
    concurrency = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)

    objects = WorkerProcessQuerySet.as_manager()

    class Meta:
        db_table = "scheduled_actions_worker"
        verbose_name = _("worker")
        indexes = [models.Index(fields=["expires_at"], name="sa_worker_expiry_idx")]

    def __str__(self) -> str:
        return self.worker_id
