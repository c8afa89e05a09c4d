"""A django.tasks task of the new release (Django 6+): known to a worker that can import it."""

from __future__ import annotations

from django.tasks import task

from tests.app.models import Effect


@task()
def new_task(key: str) -> int:
    return Effect.objects.create(key=key).pk
