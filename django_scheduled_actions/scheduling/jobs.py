"""Writing one job: the checks every way of scheduling shares, the one place a job row is built, the one
place its ``job_scheduled`` is announced on commit, and the write itself (with its idempotency key)."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from django.db import DatabaseError, IntegrityError, transaction

from .. import telemetry
from ..conf import app_settings
from ..core import values
from ..core.jobs import JobInfo
from ..core.registry import Function
from ..core.validation import dumps
from ..exceptions import ArgumentValidationError
from ..models import IdempotencyKey, ScheduledFunction, State
from ..signals import job_scheduled
from ..store.engines import engine
from ..store.errors import is_conflict
from ..store.transactions import in_transaction


def check_schedulable(fn: Any) -> Function:
    if not isinstance(fn, Function):
        raise TypeError(f"only functions decorated as mutations or actions can be scheduled, got {fn!r}")
    if fn.kind == "query":
        raise TypeError(f"{fn.name} is a query; only mutations and actions can be scheduled")
    return fn


def checked_args(fn: Function, args: Any, index: int | None = None) -> tuple[dict[str, Any], str]:
    """``args`` validated for ``fn`` (None: no arguments), as JSON and as its text, within
    ``SCHEDULED_ACTIONS_MAX_ARGS_BYTES``. ``index``: the item's position, named in errors."""
    try:
        json_args = fn.validator.to_json({} if args is None else args)
    except ArgumentValidationError as exc:
        if index is None:
            raise
        raise ArgumentValidationError(fn.name, f"item {index}: {exc.problem}", exc.argument) from None
    text = dumps(json_args)
    size = len(text.encode())
    if size > app_settings.MAX_ARGS_BYTES:
        where = "arguments" if index is None else f"item {index}: arguments"
        raise ArgumentValidationError(
            fn.name,
            f"{where} are {size} bytes serialised, over SCHEDULED_ACTIONS_MAX_ARGS_BYTES={app_settings.MAX_ARGS_BYTES}",
        )
    return json_args, text


def row(
    fn: Function,
    when: datetime,
    now: datetime,
    queue: Any = None,
    priority: Any = None,
    parent: JobInfo | None = None,
    **fields: Any,
) -> dict[str, Any]:
    """The fields of a new job of ``fn`` due at ``when``, but its arguments: the per-call ``queue`` and
    ``priority`` checked, else the function's; ``fields`` adds or overrides (a batch, a cron tick)."""
    return {
        "name": fn.name,
        "kind": fn.kind,
        "scheduled_time": when,
        "created_at": now,
        "queue": fn.options.queue if queue is None else values.queue_name(queue),
        "priority": fn.options.priority if priority is None else values.priority(priority),
        "max_attempts": fn.retry.max_attempts,
        "parent_id": parent.id if parent else None,
        "trace_context": telemetry.trace_context(),
        **fields,
    }


_workers: list[Callable[[], None]] = []  # how to wake each worker running in this process


@contextmanager
def waking(wake: Callable[[], None]) -> Iterator[None]:
    """While a worker runs: ``wake`` it when a job it runs has scheduled others. On PostgreSQL such jobs
    NOTIFY no one (migration 0013): their own worker looks for them, and wakes the others when it finds
    more than it takes (``Claims.claim``)."""
    _workers.append(wake)
    try:
        yield
    finally:
        _workers.remove(wake)


def _wake_workers() -> None:
    for wake in list(_workers):
        wake()


def announce(
    jobs: Sequence[ScheduledFunction] | Callable[[], Sequence[ScheduledFunction]],
    using: str,
    parent: JobInfo | None = None,
) -> None:
    """Send ``job_scheduled`` for each of ``jobs`` when the transaction commits, if anyone listens
    (``jobs`` may be a callable, built only then); jobs scheduled by a ``parent`` job wake its worker."""
    if parent is not None and _workers:
        transaction.on_commit(_wake_workers, using=using)
    if not job_scheduled.has_listeners(ScheduledFunction):
        return

    def send() -> None:
        for job in jobs() if callable(jobs) else jobs:
            job_scheduled.send_robust(ScheduledFunction, job=job)

    transaction.on_commit(send, using=using)


def as_read(template: dict[str, Any], ids: Sequence[int], texts: Sequence[str], using: str) -> list[ScheduledFunction]:
    """The jobs ``insert_many`` wrote, as instances built as from a query (3x cheaper than ``__init__``)."""
    proto = ScheduledFunction(**template)
    names = [field.attname for field in ScheduledFunction._meta.concrete_fields]
    fields = [getattr(proto, name) for name in names]
    pk_at, args_at = names.index("id"), names.index("args")
    jobs = []
    for pk, text in zip(ids, texts, strict=True):
        fields[pk_at], fields[args_at] = pk, json.loads(text)
        jobs.append(ScheduledFunction.from_db(using, names, fields))
    return jobs


def parent_canceled(parent: JobInfo | None, using: str) -> bool:
    """Whether the job scheduling this one was canceled: its children are then created canceled.

    A mutation job is not read: it completes in the transaction that schedules (a cancel landing
    first makes that completion fail and rolls the children back with it), and the read would cost
    a serializable transaction a predicate lock on the primary key's newest page, where every
    concurrent insert of a job lands: each scheduling mutation would conflict with all the others."""
    if parent is None or parent.kind == "mutation":
        return False
    return ScheduledFunction.objects.using(using).filter(pk=parent.id, state=State.CANCELED).exists()


def write(job: ScheduledFunction, parent: JobInfo | None, key: str | None, now: datetime, using: str) -> int | None:
    """Save the new ``job`` (created canceled if its ``parent`` was) and announce it on commit; returns its
    id. With ``key``: the id of the job already holding the key, if one does (None: since pruned)."""
    if parent_canceled(parent, using):
        job.state, job.completed_time = State.CANCELED, now
    if key is None:
        engine(using).insert(job)
    else:
        saved, holder = _write_once(job, values.key(key), now, using)
        if not saved:
            return holder
    announce([job], using, parent)
    return job.pk


def _write_once(job: ScheduledFunction, key: str, now: datetime, using: str) -> tuple[bool, int | None]:
    """Save ``job`` under ``key`` (``True, its id``), or find the job holding the key (``False, its id``)."""
    keys = IdempotencyKey.objects.using(using)
    joined = in_transaction(using)
    for _attempt in range(10):
        held = keys.filter(key=key).values("job_id", "name", "expires_at").first()
        if held is not None and held["expires_at"] > now:
            if held["name"] != job.name:
                raise ValueError(f"idempotency key {key!r} is held by a job of {held['name']}, not {job.name}")
            return False, held["job_id"]  # None when that job has since been pruned
        try:
            with transaction.atomic(using=using):
                if held is not None:
                    keys.filter(key=key, expires_at__lte=now).delete()
                engine(using).insert(job)
                keys.create(
                    key=key, name=job.name, job=job, created_at=now, expires_at=now + app_settings.IDEMPOTENCY_TTL
                )
            return True, job.pk
        except IntegrityError:
            job.pk = None  # a concurrent call took the key: read its job on the next turn
        except DatabaseError as exc:
            if joined or not is_conflict(exc):
                raise
            job.pk = None
    raise RuntimeError(f"could not settle idempotency key {key!r} after repeated conflicts")
