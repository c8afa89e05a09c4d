"""Registered as "tests.release2.functions:<name>"; each run leaves one Effect row under its key."""

from __future__ import annotations

from django_scheduled_actions import internal_action, internal_mutation
from tests.app.models import Effect


@internal_mutation
def new_mutation(ctx, key: str) -> int:
    return Effect.objects.create(key=key, job_id=ctx.job.id if ctx.job else None).pk


@internal_action
def new_action(ctx, key: str) -> int:
    return ctx.run_mutation(new_mutation, {"key": key})
