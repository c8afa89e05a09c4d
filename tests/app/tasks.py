"""Django ``@task`` functions run by the ScheduledActionsBackend in tests (Django 6+ only: imported by
tests/db/test_tasks_backend.py, never autodiscovered)."""

from __future__ import annotations

import asyncio
import time

from django.tasks import task

from django_scheduled_actions import RetryPolicy

from .models import Counter, Note


class TaskFailure(Exception):
    """A custom exception, to check the class path stored in TaskResult.errors."""


@task
def noop_task(*args, **kwargs) -> None:
    return None


@task
async def noop_task_async(*args, **kwargs) -> None:
    await asyncio.sleep(0)


@task
def calculate_meaning_of_life() -> int:
    return 42


@task
def echo(*args, **kwargs):
    return {"args": args, "kwargs": kwargs}  # the tuple comes back as a JSON list


@task
async def add_async(a: int, b: int) -> int:
    await asyncio.sleep(0)
    return a + b


@task
def write_note(text: str) -> int:
    """A task body may use the ORM, unlike an action body."""
    return Note.objects.create(text=text).pk


@task
def failing_task_value_error() -> None:
    raise ValueError("This Task failed due to ValueError")


@task
def failing_task_custom() -> None:
    raise TaskFailure("custom failure")


@task
def failing_task_system_exit() -> None:
    raise SystemExit("This Task failed due to SystemExit")


@task
def complex_return_value():
    return {1, 2}  # a set is not JSON


@task(takes_context=True)
def get_context(context, label: str = "") -> dict:
    result = context.task_result
    return {
        "id": result.id,
        "attempt": context.attempt,
        "status": result.status,
        "label": label,
        "args": result.args,
        "kwargs": result.kwargs,
    }


@task(takes_context=True)
async def get_context_async(context) -> str:
    return context.task_result.id


@task(takes_context=True, retry=RetryPolicy(max_attempts=3, initial_backoff=0, jitter=False))
def flaky(context, name: str, fail_times: int) -> int:
    counter, _ = Counter.objects.get_or_create(name=name)
    Counter.objects.filter(pk=counter.pk).update(value=counter.value + 1)
    if context.attempt <= fail_times:
        raise ConnectionError(f"attempt {context.attempt} fails")
    return context.attempt


@task(timeout=0.3)
def sleepy(seconds: float) -> str:
    time.sleep(seconds)
    return "woke up"


@task(priority=10, queue_name="tasks-other")
def other_queue_task() -> str:
    return "other"
