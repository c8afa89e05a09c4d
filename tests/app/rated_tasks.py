"""A Django ``@task`` with a rate limit (Django 6+ only: imported by tests/db/test_rate_limits.py)."""

from __future__ import annotations

from django.tasks import task


@task(rate_limit="2/m")
def rated_task(n: int) -> int:
    return n
