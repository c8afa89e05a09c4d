"""Functions used by the tests. Registered names are "tests.app.functions:<name>"."""

from __future__ import annotations

import threading
import time
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Literal
from uuid import UUID

from django_scheduled_actions import (
    NonRetryableError,
    RetryPolicy,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    query,
    schedule_on_delete,
    schedule_on_save,
)

from . import (
    async_functions,  # noqa: F401 - registers the async actions of the async and connection tests
    http_functions,  # noqa: F401 - registers the functions of the HTTP tests
    orchestration_functions,  # noqa: F401 - registers the functions of the batch, limit and saga tests
    process_functions,  # noqa: F401 - registers the functions of the process tests
    rate_functions,  # noqa: F401 - registers the functions of the rate limit tests
    telemetry_functions,  # noqa: F401 - registers the functions of the telemetry tests
    workflow_functions,  # noqa: F401 - registers the functions and workflows of the workflow tests
)
from .models import Batch, Counter, Effect, Note, Order


@internal_query
def count(ctx, name: str) -> int:
    counter = Counter.objects.filter(name=name).first()
    return counter.value if counter else 0


@query
def try_write_in_query(ctx, text: str) -> None:
    Note.objects.create(text=text)


@internal_mutation
def bump(ctx, name: str, by: int = 1) -> int:
    counter, _ = Counter.objects.get_or_create(name=name)
    counter.value += by
    counter.save()
    return counter.value


@internal_mutation
def record(ctx, key: str) -> dict:
    job = ctx.job
    Effect.objects.create(key=key, job_id=job.id if job else None, attempt=job.attempt if job else 0)
    return {"key": key}


@internal_mutation
def record_many(ctx, keys: list[str], delay: float = 0) -> list[int]:
    """Schedules ``record`` once per key, in bulk, from inside a mutation."""
    return ctx.scheduler.run_many(record, [{"key": key} for key in keys], delay=delay)


@internal_mutation
def write_then_fail(ctx, text: str) -> None:
    Note.objects.create(text=text)
    raise ValueError(f"failing after writing {text!r}")


@mutation
def add_note_and_schedule(ctx, text: str, delay: float = 0) -> int:
    Note.objects.create(text=text)
    return ctx.scheduler.run_after(delay, record, {"key": text})


@internal_mutation
def outer_with_failing_inner(ctx, text: str) -> str:
    Note.objects.create(text=f"outer {text}")
    try:
        ctx.run_mutation(write_then_fail, {"text": f"inner {text}"})
    except ValueError as exc:
        return str(exc)
    return "no error"


@internal_action
def direct_orm_in_action(ctx) -> int:
    return Note.objects.count()


@internal_action
def action_via_ctx(ctx, name: str) -> int:
    ctx.run_mutation(bump, {"name": name})
    return ctx.run_query(count, {"name": name})


@internal_action
def read_via_ctx(ctx, name: str) -> int:
    return ctx.run_query(count, {"name": name})


@internal_action
def noop_action(ctx, i: int = 0) -> int:
    return i


@internal_mutation
def noop_mutation(ctx, i: int = 0) -> int:
    return i


@internal_action
def clock_action(ctx, i: int = 0) -> float:
    """A no-op action whose result is when its body ran (the benchmark's enqueue->start probe)."""
    return time.time()


@internal_action(retry=RetryPolicy(max_attempts=3, initial_backoff=0.0, jitter=False))
def flaky_action(ctx, name: str, fail_times: int) -> int:
    attempt = ctx.job.attempt if ctx.job else 1
    ctx.run_mutation(bump, {"name": name})
    if attempt <= fail_times:
        raise ConnectionError(f"attempt {attempt} fails")
    return attempt


@internal_action(retry=RetryPolicy(max_attempts=5, initial_backoff=0.0))
def non_retryable(ctx) -> None:
    raise NonRetryableError("this cannot succeed")


@internal_action
def failing_action(ctx) -> None:
    raise RuntimeError("boom")


@internal_action(timeout=0.5)
def slow_action(ctx, seconds: float, name: str = "slow") -> str:
    time.sleep(seconds)
    return "finished"


@internal_action
def schedule_after_sleep(ctx, seconds: float, name: str) -> int:
    time.sleep(seconds)
    return ctx.scheduler.run_after(0, bump, {"name": name})


@internal_action
def returns_unserialisable(ctx) -> Any:  # Any checks nothing: JSON refuses it
    return object()


@internal_mutation
def typed(
    ctx,
    n: int,
    x: float,
    s: str,
    flag: bool,
    when: datetime,
    day: date,
    uid: UUID,
    amount: Decimal,
    tags: list[str],
    scores: dict[str, int],
    maybe: int | None = None,
    mode: Literal["a", "b"] = "a",
) -> dict:
    return {
        "n": n,
        "x": x,
        "s": s,
        "flag": flag,
        "when": when.isoformat(),
        "day": day.isoformat(),
        "uid": str(uid),
        "amount": str(amount),
        "tags": tags,
        "scores": scores,
        "maybe": maybe,
        "mode": mode,
        "types": [type(v).__name__ for v in (when, day, uid, amount)],
    }


@internal_mutation(name="fan.start")
def start_batch(ctx, size: int) -> int:
    batch = Batch.objects.create(total=size)
    for i in range(size):
        ctx.scheduler.run_after(0, fan_item, {"batch_id": batch.pk, "i": i})
    return batch.pk


@internal_action(name="fan.item")
def fan_item(ctx, batch_id: int, i: int) -> None:
    ctx.run_mutation(complete_item, {"batch_id": batch_id})


@internal_mutation(name="fan.complete_item")
def complete_item(ctx, batch_id: int) -> None:
    batch = Batch.objects.get(pk=batch_id)
    batch.completed += 1
    batch.save()
    if batch.completed == batch.total:
        ctx.scheduler.run_after(0, on_batch_complete, {"batch_id": batch_id})


@internal_mutation(name="fan.on_complete")
def on_batch_complete(ctx, batch_id: int) -> None:
    batch = Batch.objects.get(pk=batch_id)
    batch.on_complete_runs += 1
    batch.save()


@internal_action
def schedule_then_fail(ctx, name: str) -> None:
    ctx.scheduler.run_after(0, bump, {"name": name})
    raise RuntimeError("action fails after scheduling")


@internal_mutation
def isolation_level(ctx) -> str:
    """The isolation level of the transaction this mutation runs in, as the database reports it."""
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SHOW transaction_isolation")
        elif connection.vendor == "mysql":
            cursor.execute("SELECT COUNT(*) FROM testapp_note")  # starts the InnoDB transaction
            time.sleep(0.15)  # information_schema.innodb_trx is a cache refreshed at most every 0.1 s
            cursor.execute(
                "SELECT trx_isolation_level FROM information_schema.innodb_trx "
                "WHERE trx_mysql_thread_id = CONNECTION_ID()"
            )
        else:
            return "sqlite"
        return cursor.fetchone()[0].lower()


@internal_action
def charge_once(ctx, name: str, fail: bool = False) -> str:
    """Counts its runs through a mutation; used with idempotency keys."""
    value = ctx.run_mutation(bump, {"name": name})
    if fail:
        raise ConnectionError("provider down")
    return f"charge-{value}"


@internal_action
def wait_for_release(ctx, name: str, seconds: float) -> str:
    time.sleep(seconds)
    return name


@internal_mutation
def process_order(ctx, order_id: int) -> None:
    Effect.objects.create(key=f"order-{order_id}")


@internal_action
def order_deleted(ctx, order_id: int) -> None:
    return None


def _order_args(order: Order) -> dict:
    # a negative total makes invalid arguments: shows that a failed enqueue rolls the save back
    return {"order_id": order.pk if order.total >= 0 else "not-an-int"}


schedule_on_save(Order, process_order, args=_order_args, when=lambda order, created: created)
schedule_on_delete(Order, order_deleted, args=lambda order: {"order_id": order.pk}, delay=30)


_CONNECTION_KILLED: set[str] = set()


def kill_connection(connection) -> None:
    """Have the server kill ``connection`` (PostgreSQL or MySQL/MariaDB), from a second connection."""
    from django.db import connections

    own_id = "SELECT pg_backend_pid()" if connection.vendor == "postgresql" else "SELECT CONNECTION_ID()"
    with connection.cursor() as cursor:
        cursor.execute(own_id)
        (pid,) = cursor.fetchone()
    killer = connections.create_connection(connection.alias)
    try:
        with killer.cursor() as cursor:
            cursor.execute(
                "SELECT pg_terminate_backend(%s)" if connection.vendor == "postgresql" else "KILL CONNECTION %s", [pid]
            )
    finally:
        killer.close()


@internal_mutation
def lose_connection_once(ctx, key: str) -> None:
    """Writes an Effect; in its first run the server then kills the connection the body runs on, so the
    body's next statement fails as in a server restart."""
    from django.db import connection

    Effect.objects.create(key=key)
    if key not in _CONNECTION_KILLED:
        _CONNECTION_KILLED.add(key)
        kill_connection(connection)
        Effect.objects.count()


@internal_query
def count_losing_connection_once(ctx, key: str) -> int:
    """Counts ``key``'s Effects; in its first run the server kills its connection before it reads."""
    from django.db import connection

    from django_scheduled_actions.core import guards

    if f"query:{key}" not in _CONNECTION_KILLED:
        _CONNECTION_KILLED.add(f"query:{key}")
        with guards.policy("allow"):  # the test's doing, not the query's (MariaDB's KILL reads as a write)
            kill_connection(connection)
    return Effect.objects.filter(key=key).count()


@internal_action
def calls_across_lost_connections(ctx, key: str) -> int:
    """An action whose ``ctx.run_mutation`` and ``ctx.run_query`` each lose their connection once."""
    ctx.run_mutation(lose_connection_once, {"key": key})
    return ctx.run_query(count_losing_connection_once, {"key": key})


BODY_RUNS: dict[str, int] = {}  # body runs per key (mutations retried after a conflict run again)
_BODY_RUNS_LOCK = threading.Lock()


@internal_mutation
def insert_and_schedule(ctx, key: str) -> int:
    """The guide's core pattern: write a row, schedule the next job (far ahead: only the writes matter)."""
    with _BODY_RUNS_LOCK:
        BODY_RUNS[key] = BODY_RUNS.get(key, 0) + 1
    Note.objects.create(text=key)
    return ctx.scheduler.run_after(3600, bump, {"name": key})


@internal_mutation
def chain_step(ctx, chain: int, k: int, steps: int) -> None:
    """The guide's chain of steps: step ``k`` of ``chain`` writes its row, then schedules step ``k + 1``
    (committed together), until ``steps`` are done (the benchmark's chain, and its exactly-once check)."""
    Note.objects.create(text=f"{chain}:{k}")
    if k < steps:
        ctx.scheduler.run_after(0, chain_step, {"chain": chain, "k": k + 1, "steps": steps})
