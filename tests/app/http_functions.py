"""Functions called over HTTP by tests/db/test_http.py. Registered names are "tests.app.http_functions:<name>"."""

from __future__ import annotations

import threading
from datetime import date, datetime
from decimal import Decimal
from typing import Literal
from uuid import UUID

from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied

from django_scheduled_actions import action, internal_action, internal_mutation, internal_query, mutation, query

from .models import Counter, Note

# set by a test to hold slow_action until released
RELEASE = threading.Event()
STARTED = threading.Event()


def _caller(ctx) -> str | None:
    return ctx.auth.user.get_username() if ctx.auth.is_authenticated else None


@query
def whoami(ctx) -> dict:
    return {
        "authenticated": ctx.auth.is_authenticated,
        "username": _caller(ctx),
        "anonymous_user": ctx.auth.user.is_anonymous,
    }


@query
def describe(
    ctx, when: datetime, day: date, amount: Decimal, id: UUID, kind: Literal["a", "b"], tags: list[str] | None = None
) -> dict:
    """Echoes typed arguments, to show JSON strings arrive as Python values."""
    return {
        "when": when.isoformat(),
        "weekday": day.isoweekday(),
        "double": str(amount * 2),
        "uuid_version": id.version,
        "kind": kind,
        "tags": tags,
    }


@query
def count_notes(ctx) -> int:
    return Note.objects.count()


@mutation
def add_note(ctx, text: str) -> dict:
    """Signed-in callers only; returns the note and a counter that grows on every real run."""
    user = ctx.auth.require_user()
    note = Note.objects.create(text=f"{user.get_username()}: {text}")
    counter, _ = Counter.objects.get_or_create(name="add_note")
    counter.value += 1
    counter.save()
    return {"id": note.pk, "runs": counter.value}


@mutation
def staff_only(ctx) -> str:
    if not ctx.auth.user.is_staff:
        raise PermissionDenied("staff only")
    return "welcome"


@mutation
def broken(ctx) -> None:
    Note.objects.create(text="rolled back")
    raise RuntimeError("secret internals")


@action
def who_is_calling_everywhere(ctx) -> dict:
    """The caller as seen by the action and by everything it calls synchronously."""
    return {
        "action": _caller(ctx),
        "query": ctx.run_query(caller_in_query),
        "mutation": ctx.run_mutation(caller_in_mutation),
        "nested_action": ctx.run_action(caller_in_action),
    }


@internal_query
def caller_in_query(ctx) -> str | None:
    return _caller(ctx)


@internal_mutation
def caller_in_mutation(ctx) -> dict:
    return {"mutation": _caller(ctx), "query": ctx.run_query(caller_in_query)}


@internal_action
def caller_in_action(ctx) -> dict:
    return {"action": _caller(ctx), "mutation": ctx.run_mutation(caller_in_mutation)}


@action
def request_account_deletion(ctx) -> int:
    """The guide's pattern: a public function checks the caller, an internal one does the work."""
    user = ctx.auth.require_user()
    return ctx.scheduler.run_after(0, delete_all_user_data, {"user_id": user.pk})


@internal_action
def delete_all_user_data(ctx, user_id: int) -> dict:
    seen = {"authenticated": ctx.auth.is_authenticated, "anonymous_user": ctx.auth.user.is_anonymous}
    ctx.run_mutation(delete_user, {"user_id": user_id})
    return seen


@internal_mutation
def delete_user(ctx, user_id: int) -> None:
    get_user_model().objects.filter(pk=user_id).delete()


@action
def slow_action(ctx, label: str) -> str:
    STARTED.set()
    if not RELEASE.wait(10):
        raise TimeoutError("slow_action was never released")
    return label
