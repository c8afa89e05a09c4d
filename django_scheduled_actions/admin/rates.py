"""Rate limits in the admin: each bucket with its rate, the tokens it holds now and the jobs waiting on it;
and which pending jobs of the job list wait for their function's rate (``mark_rate_limited``)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from django.contrib import admin
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html
from django.utils.http import urlencode

from ..core.registry import registry
from ..models import RateLimitBucket, ScheduledFunction, State
from ..models.rates import FUNCTION_PREFIX
from ..store import dbclock

RATE_LIMITED = "rate limited"  # a due pending job whose function's bucket is empty: it starts when a token comes


def empty_buckets(names: Iterable[str], now: datetime) -> set[str]:
    """The functions among ``names`` with a ``rate_limit=`` whose bucket holds less than a token at ``now``."""
    rates = {}
    for name in set(names):
        try:
            rate = registry.get(name).rate
        except LookupError:
            continue
        if rate is not None:
            rates[FUNCTION_PREFIX + name] = rate
    if not rates:
        return set()
    buckets = RateLimitBucket.objects.filter(name__in=list(rates), key="")
    return {b.name[len(FUNCTION_PREFIX) :] for b in buckets if rates[b.name].refilled(b.tokens, _since(b, now)) < 1}


def mark_rate_limited(jobs: Iterable[ScheduledFunction]) -> None:
    """Set ``rate_limited`` on each due pending job whose function's bucket is empty: one query of the
    buckets, whatever the number of jobs; none when no job listed has a function with a rate."""
    jobs = list(jobs)
    now = timezone.now()  # as the job list judges "overdue"
    due = {job.pk: job.name for job in jobs if job.state == State.PENDING and job.scheduled_time <= now}
    empty = empty_buckets(due.values(), now)
    for job in jobs:
        job.rate_limited = due.get(job.pk) in empty


def _since(bucket: RateLimitBucket, now: datetime) -> float:
    return (now - bucket.updated_at).total_seconds()


@admin.register(RateLimitBucket)
class RateLimitBucketAdmin(admin.ModelAdmin):
    """Written by claims and ``rate_limiter.limit``; deleting a bucket resets it (the next take finds it full)."""

    list_display = ("name", "key", "rate_display", "tokens_now", "jobs_waiting", "updated_at")
    search_fields = ("name", "key")
    ordering = ("name", "key")
    fields = ("name", "key", "rate_display", "tokens_now", "jobs_waiting", "updated_at")
    readonly_fields = fields

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    @admin.display(description="rate")
    def rate_display(self, obj):
        function = obj.function_name
        rate = _function_rate(function) if function else None
        return str(rate or obj.parsed_rate)

    @admin.display(description="tokens left now")
    def tokens_now(self, obj):
        function = obj.function_name
        rate = (_function_rate(function) if function else None) or obj.parsed_rate
        return f"{rate.refilled(obj.tokens, _since(obj, dbclock.now())):.2f} of {rate.burst}"

    @admin.display(description="jobs waiting")
    def jobs_waiting(self, obj):
        """A function's due pending jobs, linked to the job list; none for a ``rate_limiter`` bucket."""
        function = obj.function_name
        if function is None:
            return "-"
        count = ScheduledFunction.objects.filter(
            name=function, state=State.PENDING, scheduled_time__lte=dbclock.DatabaseNow()
        ).count()
        url = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
        return format_html('<a href="{}?{}">{}</a>', url, urlencode({"name": function, "state": "pending"}), count)


def _function_rate(name: str):
    try:
        return registry.get(name).rate
    except LookupError:
        return None
