"""Idempotency keys for calls: ``run_mutation(..., idempotency_key=)`` and ``run_action(...)``.

A repeat with a held key returns the stored result of the first call without running again. The key
keeps a fingerprint of the first call's arguments: a repeat with other arguments (or of another function)
raises ``IdempotencyKeyReused`` and runs nothing.

- Mutations store the key and the result in the mutation's own transaction: exactly once, and a
  concurrent duplicate conflicts on the key's unique constraint, rolls back, and reads the winner's result.
- Actions claim the key in its own commit first (held for the action's timeout), run, then store the
  result (held for ``SCHEDULED_ACTIONS_IDEMPOTENCY_TTL``). A repeat while the first still runs raises
  ``IdempotencyKeyInProgress``; a failed action releases the key so a retry runs again.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from ..conf import app_settings
from ..core import guards
from ..exceptions import IdempotencyKeyInProgress, IdempotencyKeyReused
from ..models import IdempotencyKey
from ..store.transactions import run_in_mutation_transaction

if TYPE_CHECKING:
    from ..core.registry import Function

MISSING = object()
ACTION_KEY_MARGIN = timedelta(seconds=60)


def fingerprint(fn: Function, kwargs: dict[str, Any]) -> str:
    """A digest of a call's arguments as sent (their JSON form, keys sorted): a default passed explicitly
    makes another fingerprint than the same default left out."""
    canonical = json.dumps(fn.validator.to_json(kwargs), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def stored_result(key: str, name: str, using: str, now: datetime, args_fingerprint: str) -> Any:
    """The stored result under a held key, ``MISSING`` if the key is free; raises if it is held by another
    call, or while it is in progress."""
    row = (
        IdempotencyKey.objects.using(using)
        .held(now)
        .filter(key=key)
        .values("name", "args_fingerprint", "completed", "result")
        .first()
    )
    if row is None:
        return MISSING
    if row["name"] != name:
        raise IdempotencyKeyReused(f"idempotency key {key!r} is held by a call of {row['name']}, not {name}")
    if row["args_fingerprint"] not in (None, args_fingerprint):  # None: written before fingerprints were kept
        raise IdempotencyKeyReused(
            f"idempotency key {key!r} is held by a call of {name} with other arguments; use a new key for a new call"
        )
    if not row["completed"]:
        raise IdempotencyKeyInProgress(f"a call of {name} with idempotency key {key!r} is still running")
    return row["result"]


def _replace_expired(key: str, using: str, now: datetime) -> None:
    keys = IdempotencyKey.objects.using(using)
    if keys.expired(now).filter(key=key).exists():
        keys.expired(now).filter(key=key).delete()


def run_mutation_once(key: str, name: str, using: str, body: Callable[[], Any], args_fingerprint: str) -> Any:
    now = timezone.now()

    def once() -> Any:
        found = stored_result(key, name, using, now, args_fingerprint)
        if found is not MISSING:
            return found
        _replace_expired(key, using, now)
        result = body()
        IdempotencyKey.objects.using(using).create(
            key=key,
            name=name,
            args_fingerprint=args_fingerprint,
            result=result,
            completed=True,
            created_at=now,
            expires_at=now + app_settings.IDEMPOTENCY_TTL,
        )
        return result

    with guards.policy("allow"):
        try:
            return run_in_mutation_transaction(once, using)
        except IntegrityError:
            found = stored_result(key, name, using, timezone.now(), args_fingerprint)
            if found is MISSING:
                raise
            return found


def run_action_once(
    key: str, name: str, using: str, timeout: float, body: Callable[[], Any], args_fingerprint: str
) -> Any:
    now = timezone.now()
    keys = IdempotencyKey.objects.using(using)
    with guards.policy("allow"):
        found = stored_result(key, name, using, now, args_fingerprint)
        if found is not MISSING:
            return found
        try:
            with transaction.atomic(using=using):
                _replace_expired(key, using, now)
                keys.create(
                    key=key,
                    name=name,
                    args_fingerprint=args_fingerprint,
                    completed=False,
                    created_at=now,
                    expires_at=now + timedelta(seconds=timeout) + ACTION_KEY_MARGIN,
                )
        except IntegrityError:
            found = stored_result(key, name, using, timezone.now(), args_fingerprint)
            if found is MISSING:
                raise
            return found
    try:
        result = body()
    except BaseException:
        with guards.policy("allow"):
            keys.filter(key=key, completed=False).delete()
        raise
    with guards.policy("allow"):
        keys.filter(key=key).update(
            completed=True, result=result, expires_at=timezone.now() + app_settings.IDEMPOTENCY_TTL
        )
    return result
