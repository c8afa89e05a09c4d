"""Idempotency keys."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils.timezone import now as _now
from django.utils.translation import gettext_lazy as _

from .jobs import ScheduledFunction


class IdempotencyKeyQuerySet(models.QuerySet["IdempotencyKey"]):
    def held(self, now: datetime) -> IdempotencyKeyQuerySet:
        return self.filter(expires_at__gt=now)

    def expired(self, now: datetime) -> IdempotencyKeyQuerySet:
        return self.filter(expires_at__lte=now)


class IdempotencyKey(models.Model):
    """A key that makes a schedule or a call happen once while it is held."""

    key = models.CharField(max_length=255)
    name = models.CharField(_("function"), max_length=255)
    job = models.ForeignKey(  # no database constraint, as ScheduledFunction.parent (the key is written first)
        ScheduledFunction,
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="idempotency_keys",
        db_constraint=False,
    )
    args_fingerprint = models.CharField(  # noqa: DJ001 - NULL: not recorded (scheduler keys, older keys)
        _("arguments' fingerprint"),
        max_length=64,
        null=True,
        blank=True,
        help_text=_(
            "SHA-256 of the call's arguments (run_mutation / run_action); a repeat with other arguments "
            "is refused. Empty for scheduler keys and keys written before it was recorded."
        ),
    )
    result = models.JSONField(null=True, blank=True)
    completed = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=_now)
    expires_at = models.DateTimeField()

    objects = IdempotencyKeyQuerySet.as_manager()

    class Meta:
        db_table = "scheduled_actions_idempotency_key"
        verbose_name = _("idempotency key")
        constraints = [models.UniqueConstraint(fields=["key"], name="sa_idempotency_key_unique")]
        indexes = [models.Index(fields=["expires_at"], name="sa_idempotency_expiry_idx")]

    def __str__(self) -> str:
        return self.key


# --- orchestration: batches, concurrency limits, sagas ---
