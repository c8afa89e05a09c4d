"""Scheduling from actions: retry with exponential backoff and jitter (orchestration pattern 3, and the
thundering-herd pitfall), written out by hand as in the guide, and the same with a ``RetryPolicy``."""

from __future__ import annotations

import random
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from django_scheduled_actions import RetryPolicy, internal_action, internal_mutation, internal_query, mutation

from .. import provider
from ..models import ProcessingJob

BASE_DELAY = 1.0  # seconds: the guide's Math.pow(2, attempt) * 1000 ms
JITTER = 1.0  # seconds: the guide's Math.random() * 1000 ms


def backoff_delay(attempt: int) -> float:
    """Exponential backoff with jitter, so that retries of many jobs do not arrive all at once."""
    return 2**attempt * BASE_DELAY + random.random() * JITTER


@mutation
def submit_job(ctx, data: dict[str, Any]) -> int:
    """Fire and forget: the job row and its processing commit together."""
    job = ProcessingJob.objects.create(data=data)
    ctx.scheduler.run_after(0, process_with_retry, {"job_id": job.pk, "attempt": 1})
    return job.pk


@internal_query
def get_job(ctx, job_id: int) -> dict | None:
    return ProcessingJob.objects.filter(pk=job_id).values("data", "status").first()


@internal_mutation
def mark_complete(ctx, job_id: int, result: dict[str, Any]) -> None:
    ProcessingJob.objects.filter(pk=job_id).update(status=ProcessingJob.Status.COMPLETED, result=result, error="")


@internal_mutation
def update_attempt(ctx, job_id: int, attempt: int, next_retry_at: datetime, error: str) -> None:
    ProcessingJob.objects.filter(pk=job_id).update(attempt=attempt, next_retry_at=next_retry_at, error=error)


@internal_mutation
def mark_failed(ctx, job_id: int, error: str, final_attempt: int) -> None:
    ProcessingJob.objects.filter(pk=job_id).update(
        status=ProcessingJob.Status.FAILED, error=error, attempt=final_attempt, next_retry_at=None
    )


@internal_action
def process_with_retry(ctx, job_id: int, attempt: int, max_attempts: int = 5) -> None:
    try:
        job = ctx.run_query(get_job, {"job_id": job_id})
        if job is None:
            return
        response = provider.post("process", job["data"])
        ctx.run_mutation(mark_complete, {"job_id": job_id, "result": response["result"]})
    except provider.ProviderError as exc:
        if attempt < max_attempts:
            delay = backoff_delay(attempt)
            ctx.scheduler.run_after(
                delay, process_with_retry, {"job_id": job_id, "attempt": attempt + 1, "max_attempts": max_attempts}
            )
            ctx.run_mutation(
                update_attempt,
                {
                    "job_id": job_id,
                    "attempt": attempt + 1,
                    "error": str(exc),
                    "next_retry_at": timezone.now() + timedelta(seconds=delay),
                },
            )
        else:
            ctx.run_mutation(mark_failed, {"job_id": job_id, "error": str(exc), "final_attempt": attempt})


@internal_action(retry=RetryPolicy(max_attempts=5, initial_backoff=2.0, base=2.0, jitter=True))
def process_with_policy(ctx, job_id: int) -> dict:
    """The same, letting the scheduler retry: raise, and the job is retried after 2 s, 4 s, 8 s, ...
    (times [0.5, 1.5) of jitter); its ``attempts`` and last ``error`` are on the job row."""
    job = ctx.run_query(get_job, {"job_id": job_id})
    if job is None:
        return {}
    result = provider.post("process", job["data"])["result"]
    ctx.run_mutation(mark_complete, {"job_id": job_id, "result": result})
    return result
