"""The chaos load's functions. Every run of a body that commits leaves one ``Effect`` row keyed by the
job's key, so the suite counts effects per job: exactly once, at most once, at most ``max_attempts``."""

from __future__ import annotations

from django_scheduled_actions import RetryPolicy, internal_action, internal_mutation
from tests.app.models import Effect

MAX_ATTEMPTS = 3


@internal_mutation
def effect(ctx, key: str) -> int:
    """A mutation: one Effect row per committed run."""
    job = ctx.job
    return Effect.objects.create(key=key, job_id=job.id if job else None, attempt=job.attempt if job else 0).pk


@internal_action
def once(ctx, key: str) -> int:
    """An action without a retry policy: at most once."""
    return ctx.run_mutation(effect, {"key": key})


@internal_action(retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_backoff=0.2, max_backoff=1.0))
def retried(ctx, key: str, fail_first: bool = False) -> int:
    """An action with a retry policy: at least once, at most ``MAX_ATTEMPTS``; some fail their first attempt."""
    ctx.run_mutation(effect, {"key": key})
    if fail_first and ctx.job.attempt == 1:
        raise RuntimeError("planned failure of the first attempt")
    return ctx.job.attempt
