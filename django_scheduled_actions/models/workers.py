"""Worker processes: their heartbeat is the lease on every job they hold."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _

# A worker renews its lease every third of it (``worker.Heartbeat``); one that missed this many heartbeats
# is shown as late, before its lease runs out and it counts as lost.
HEARTBEATS_PER_LEASE = 3
MISSED_HEARTBEATS_LATE = 2


def is_late(heartbeat_at: datetime, expires_at: datetime, now: datetime) -> bool:
    """Whether a worker whose last heartbeat (``heartbeat_at``) set its lease to ``expires_at`` has missed
    ``MISSED_HEARTBEATS_LATE`` heartbeats by ``now``. Each worker's own lease (``expires_at - heartbeat_at``)
    gives its interval, whatever the settings of the process that asks."""
    interval = (expires_at - heartbeat_at) / HEARTBEATS_PER_LEASE
    return now - heartbeat_at > interval * MISSED_HEARTBEATS_LATE


class WorkerProcessQuerySet(models.QuerySet["WorkerProcess"]):
    def alive(self, now: datetime) -> WorkerProcessQuerySet:
        return self.filter(expires_at__gte=now)

    def late(self, now: datetime) -> WorkerProcessQuerySet:
        """Workers whose lease still runs but that missed two heartbeats: probably dead, soon ``lost``.
        Decided per row in Python (each has its own lease): there are few live workers."""
        live = self.alive(now).filter(stopped_at__isnull=True).values_list("pk", "heartbeat_at", "expires_at")
        return self.filter(pk__in=[pk for pk, beat, expires in live if is_late(beat, expires, now)])

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
    functions = models.JSONField(
        default=dict, blank=True, help_text=_("what it can run: function name -> kind (see deploys.py)")
    )
    unknown = models.JSONField(
        default=list, blank=True, help_text=_("names of jobs it claimed and could not run, left for other workers")
    )

    objects = WorkerProcessQuerySet.as_manager()

    class Meta:
        db_table = "scheduled_actions_worker"
        verbose_name = _("worker")
        indexes = [models.Index(fields=["expires_at"], name="sa_worker_expiry_idx")]

    def __str__(self) -> str:
        return self.worker_id

    def status(self, now: datetime) -> str:
        """``stopped`` (signed off), ``lost`` (lease over), ``late`` (missed two heartbeats) or ``alive``."""
        if self.stopped_at is not None:
            return "stopped"
        if self.expires_at < now:
            return "lost"
        return "late" if is_late(self.heartbeat_at, self.expires_at, now) else "alive"
