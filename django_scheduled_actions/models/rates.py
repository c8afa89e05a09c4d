"""Rate limit buckets: one row per (name, key), the tokens it held at ``updated_at`` (DESIGN section 13)."""

from __future__ import annotations

from datetime import datetime

from django.db import models
from django.utils.translation import gettext_lazy as _

from ..core import rates

FUNCTION_PREFIX = "function:"  # the bucket of a function's rate_limit= is named "function:<its name>", key ""


class RateLimitBucket(models.Model):
    """A token bucket. The tokens held now are ``tokens`` refilled for the time since ``updated_at`` at the
    rate last used on it (``rate``, ``burst``); whoever takes tokens locks the row (``SELECT ... FOR
    UPDATE``; SQLite's write lock) and writes both, on the database's clock (``store/rates.py``)."""

    name = models.CharField(_("name"), max_length=255)
    key = models.CharField(_("key"), max_length=255, blank=True, default="")
    tokens = models.FloatField(_("tokens"), help_text=_("tokens held at the last update"))
    updated_at = models.DateTimeField(_("updated at"))
    rate = models.CharField(_("rate"), max_length=32, help_text=_("the rate last used on it, e.g. 10/s"))
    burst = models.PositiveIntegerField(_("burst"), help_text=_("the most tokens it holds"))

    class Meta:
        db_table = "scheduled_actions_rate_limit_bucket"
        verbose_name = _("rate limit bucket")
        constraints = [models.UniqueConstraint(fields=["name", "key"], name="sa_rate_bucket_unique")]

    def __str__(self) -> str:
        return f"{self.name}[{self.key}]" if self.key else self.name

    @property
    def parsed_rate(self) -> rates.Rate:
        return rates.parse(self.rate, self.burst)

    def tokens_at(self, now: datetime) -> float:
        """The tokens it holds at ``now`` (refilled since ``updated_at``, never more than ``burst``)."""
        return self.parsed_rate.refilled(self.tokens, (now - self.updated_at).total_seconds())

    @property
    def function_name(self) -> str | None:
        """The function whose ``rate_limit=`` this bucket is, or None for a ``rate_limiter.limit`` bucket."""
        return self.name[len(FUNCTION_PREFIX) :] if self.name.startswith(FUNCTION_PREFIX) and not self.key else None
