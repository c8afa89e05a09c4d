"""Batches, concurrency limits and sagas."""

from __future__ import annotations

from django.db import models
from django.utils.timezone import now as _now
from django.utils.translation import gettext_lazy as _

from .jobs import ScheduledFunction


class Batch(models.Model):
    """Jobs scheduled together by ``scheduler.batch()``: fan-out, then fan-in. Each item's final state is
    counted once (``ScheduledFunction.batch_counted``); ``on_complete`` is scheduled once, in the transaction
    that counts the last item and sets ``finished_at``."""

    name = models.CharField(_("function"), max_length=255, help_text=_("the function each item runs"))
    total = models.PositiveIntegerField()
    succeeded = models.PositiveIntegerField(default=0)
    failed = models.PositiveIntegerField(default=0)
    canceled = models.PositiveIntegerField(default=0)
    on_complete = models.CharField(
        max_length=255, blank=True, default="", help_text=_("the function scheduled once every item has finished")
    )
    on_complete_args = models.JSONField(default=dict, blank=True)
    on_complete_job = models.ForeignKey(
        ScheduledFunction,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="+",
        help_text=_("the job that runs on_complete"),
    )
    created_at = models.DateTimeField(default=_now)
    finished_at = models.DateTimeField(null=True, blank=True, help_text=_("when the last item finished"))

    class Meta:
        db_table = "scheduled_actions_batch"
        verbose_name = _("batch")
        verbose_name_plural = _("batches")
        indexes = [models.Index(fields=["finished_at"], name="sa_batch_finished_idx")]

    def __str__(self) -> str:
        return f"batch #{self.pk} {self.name} ({self.done}/{self.total})"

    @property
    def done(self) -> int:
        return self.succeeded + self.failed + self.canceled


class ConcurrencyLimit(models.Model):
    """The row a claim locks (``SELECT ... FOR UPDATE``) before counting the running jobs of a limited
    function (``function:<name>``) or queue (``queue:<name>``): claims of limited jobs are serialised so
    that no number of workers exceeds the limit. The limits themselves live in code and settings."""

    key = models.CharField(max_length=300)

    class Meta:
        db_table = "scheduled_actions_concurrency_limit"
        verbose_name = _("concurrency limit")
        constraints = [models.UniqueConstraint(fields=["key"], name="sa_concurrency_key_unique")]

    def __str__(self) -> str:
        return self.key


class Saga(models.Model):
    """A saga's journal (``django_scheduled_actions.saga``): its steps and their compensations."""

    class State(models.TextChoices):
        RUNNING = "running", _("running")
        """Steps are being run; a retry resumes after the journaled steps."""
        COMPLETED = "completed", _("completed")
        """Every step succeeded. Final."""
        ROLLING_BACK = "rolling_back", _("rolling back")
        """A step failed; the completed steps are being compensated, newest first."""
        ROLLED_BACK = "rolled_back", _("rolled back")
        """Every completed step was compensated. Final."""
        FAILED = "failed", _("compensation failed")
        """A compensation raised or was interrupted by a crash: look at the steps. Final."""
        ABANDONED = "abandoned", _("abandoned")
        """Its job ended for good while it was running (worker lost, timed out, no retry left): retrying the
        job (from the admin) resumes it after the journaled steps; a body still running finishes it."""

    key = models.CharField(max_length=255)
    job_id = models.BigIntegerField(null=True, blank=True, help_text=_("the job that ran it last"))
    state = models.CharField(max_length=12, choices=State.choices, default=State.RUNNING)
    error = models.TextField(blank=True, default="", help_text=_("why the saga rolled back"))
    created_at = models.DateTimeField(default=_now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "scheduled_actions_saga"
        verbose_name = _("saga")
        constraints = [models.UniqueConstraint(fields=["key"], name="sa_saga_key_unique")]
        indexes = [models.Index(fields=["state"], name="sa_saga_state_idx")]  # the running ones, for recovery

    def __str__(self) -> str:
        return f"{self.key} ({self.state})"


class SagaStep(models.Model):
    """One completed step of a saga, with the compensation that undoes it."""

    class State(models.TextChoices):
        DONE = "done", _("done")
        COMPENSATING = "compensating", _("compensating")
        """The compensation was started; an action compensation interrupted here never runs again."""
        COMPENSATED = "compensated", _("compensated")
        COMPENSATION_FAILED = "comp_failed", _("compensation failed")

    saga = models.ForeignKey(Saga, on_delete=models.CASCADE, related_name="steps")
    position = models.PositiveIntegerField()
    name = models.CharField(max_length=200)
    function = models.CharField(max_length=255)
    result = models.JSONField(null=True, blank=True)
    compensation = models.CharField(max_length=255, blank=True, default="")
    compensation_args = models.JSONField(default=dict, blank=True)
    state = models.CharField(max_length=12, choices=State.choices, default=State.DONE)
    error = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(default=_now)
    compensated_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "scheduled_actions_saga_step"
        verbose_name = _("saga step")
        ordering = ["saga", "position"]
        constraints = [
            models.UniqueConstraint(fields=["saga", "name"], name="sa_saga_step_name_unique"),
            models.UniqueConstraint(fields=["saga", "position"], name="sa_saga_step_position_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.position}. {self.name} ({self.state})"
