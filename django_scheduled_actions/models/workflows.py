"""Durable workflows: a run and the journal of its steps (the workflows layer replays the body from it)."""

from __future__ import annotations

from django.db import models
from django.utils.timezone import now as _now
from django.utils.translation import gettext_lazy as _


class WorkflowRun(models.Model):
    """One run of a ``@workflow``: its arguments, its state, its result or error, and the events sent
    to it that no step has taken yet (``inbox``)."""

    class State(models.TextChoices):
        PENDING = "pending", _("pending")
        """Started; its body has not run yet."""
        RUNNING = "running", _("running")
        """A step of it runs (or is due to), or its body is being replayed."""
        WAITING = "waiting", _("waiting")
        """Sleeping, or waiting for an event: a row and a due time, no thread and no connection."""
        SUCCESS = "success", _("success")
        """Its body returned; ``result`` holds the value. Final."""
        FAILED = "failed", _("failed")
        """Its body raised (an uncaught ``StepFailed``, ``WorkflowNondeterminism``...); see ``error``. Final."""
        CANCELED = "canceled", _("canceled")
        """Canceled: its pending steps never run. Final."""

    name = models.CharField(_("workflow"), max_length=255)
    args = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    # NULL, not "": runs started without a key pass the unique constraint (MySQL has no partial index)
    idempotency_key = models.CharField(max_length=255, null=True, blank=True)  # noqa: DJ001
    queue = models.CharField(max_length=100, default="default", help_text=_("the queue of the jobs replaying it"))
    inbox = models.JSONField(default=list, blank=True, help_text=_("events sent before a step waited for them"))
    created_at = models.DateTimeField(default=_now)
    finished_at = models.DateTimeField(null=True, blank=True)
    trace_context = models.CharField(  # noqa: DJ001 -- NULL: not started inside a trace
        max_length=1024,
        null=True,
        blank=True,
        editable=False,
        help_text=_("the W3C trace context it was started in: every replay and step continues that trace"),
    )

    class Meta:
        db_table = "scheduled_actions_workflow_run"
        verbose_name = _("workflow run")
        constraints = [models.UniqueConstraint(fields=["idempotency_key"], name="sa_workflow_key_unique")]
        indexes = [
            models.Index(fields=["state", "name"], name="sa_workflow_state_idx"),
            models.Index(fields=["finished_at"], name="sa_workflow_finished_idx"),
        ]

    def __str__(self) -> str:
        return f"workflow run #{self.pk} {self.name} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in FINISHED_RUN_STATES


FINISHED_RUN_STATES = (WorkflowRun.State.SUCCESS, WorkflowRun.State.FAILED, WorkflowRun.State.CANCELED)


class WorkflowStep(models.Model):
    """One journaled step of a run, at ``index`` (the order the body asks for steps). The items of a
    ``step.parallel`` are consecutive steps sharing ``group`` (the first item's index)."""

    class Kind(models.TextChoices):
        QUERY = "query", _("query")
        MUTATION = "mutation", _("mutation")
        ACTION = "action", _("action")
        SLEEP = "sleep", _("sleep")
        EVENT = "event", _("event")

    class State(models.TextChoices):
        RUNNING = "running", _("running")
        """Its job is scheduled or running."""
        WAITING = "waiting", _("waiting")
        """A sleep until ``wake_at``, or waiting for an event (until ``wake_at`` if it has a timeout)."""
        SUCCESS = "success", _("success")
        """Finished; ``result`` holds its value (an event's payload, None after a timeout). Final."""
        FAILED = "failed", _("failed")
        """Its job failed for good; ``error`` says why (the body got ``StepFailed``). Final."""
        CANCELED = "canceled", _("canceled")
        """The run was canceled first. Final."""

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="steps")
    index = models.PositiveIntegerField()
    kind = models.CharField(max_length=10, choices=Kind.choices)
    function = models.CharField(max_length=255, help_text=_("the function; an event's name; blank for a sleep"))
    group = models.PositiveIntegerField(null=True, blank=True, help_text=_("the first index of its parallel"))
    args = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=10, choices=State.choices, default=State.RUNNING)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    job_id = models.BigIntegerField(null=True, blank=True, help_text=_("the job running it, or waking it"))
    wake_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=_now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "scheduled_actions_workflow_step"
        verbose_name = _("workflow step")
        ordering = ["run", "index"]
        constraints = [models.UniqueConstraint(fields=["run", "index"], name="sa_workflow_step_unique")]
        indexes = [models.Index(fields=["state", "kind"], name="sa_workflow_step_state_idx")]

    def __str__(self) -> str:
        return f"{self.index}. {self.kind} {self.function} ({self.state})"

    @property
    def is_finished(self) -> bool:
        return self.state in (self.State.SUCCESS, self.State.FAILED, self.State.CANCELED)
