"""PostgreSQL: one statement per claim, per completion group and per settle of actions, each prepared once
per connection (postgresql.sql), and ``INSERT ... SELECT`` from one JSON array for many jobs."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field
from django.db.models.expressions import Col

from ...models import ScheduledFunction
from ..transactions import fetch_prepared
from .base import POSTGRESQL, Engine, MutationRow

if TYPE_CHECKING:
    from ..limits import Limits  # which imports the engines

Converters = list[tuple[int, Callable[..., Any], Col]]


def _json(value: Any) -> str | None:
    """A result as a ``jsonb`` parameter (SQL NULL for ``None``, as the ORM writes it)."""
    return None if value is None else json.dumps(value)


class PostgreSQL(Engine):
    vendor = "postgresql"

    def session_bounds(self, seconds: float) -> list[str]:
        return [
            f"SET idle_in_transaction_session_timeout = {int(seconds * 1000)}",
            f"SET lock_timeout = {int(seconds * 1000)}",
        ]

    def transaction_bounds(self, seconds: float) -> tuple[str, list[str]]:
        milliseconds = str(int(seconds * 1000))
        return (
            "SELECT set_config('idle_in_transaction_session_timeout', %s, true), set_config('lock_timeout', %s, true)",
            [milliseconds, milliseconds],
        )

    def wake_workers(self) -> None:
        with connections[self.using].cursor() as cursor:
            cursor.execute("SELECT pg_notify('scheduled_actions', '')")

    def next_due_time(self, queues: Iterable[str] | None) -> datetime | None:
        queues = list(queues) if queues else None
        sql = POSTGRESQL["next_due_time"].format(queues="AND queue = ANY(%s)" if queues else "")
        earliest: datetime | None = fetch_prepared(self.using, sql, [queues] if queues else [])[0][0]
        return earliest

    def claim_unlimited(
        self,
        limited: Limits,
        worker_id: str,
        token: str,
        limit: int,
        now: datetime | None,
        lease: timedelta,
        queues: Iterable[str] | None,
        start: int,
    ) -> list[ScheduledFunction]:
        """Each claim statement also names the next priority down (see ``claim`` in postgresql.sql)."""
        claimed, below = self._claim(None, limited, worker_id, token, limit, now, lease, queues, start)
        while below is not None and len(claimed) < limit:
            more, below = self._claim(
                below, limited, worker_id, token, limit - len(claimed), now, lease, queues, max(start - len(claimed), 0)
            )
            claimed += more
        return claimed

    def _claim(
        self,
        priority: int | None,
        limited: Limits,
        worker_id: str,
        token: str,
        limit: int,
        now: datetime | None,
        lease: timedelta,
        queues: Iterable[str] | None,
        start: int,
    ) -> tuple[list[ScheduledFunction], int | None]:
        """Claim at ``priority`` (None: the highest pending), starting the actions among the first ``start``;
        returns the jobs and the next lower priority with pending jobs, if any."""
        connection = connections[self.using]
        fields, converters = _claimed_fields(connection)
        params: list[object] = [now]
        if priority is not None:
            params.append(priority)
        conditions = []
        for clause, values in (
            ("queue = ANY(%s)", queues),
            ("name <> ALL(%s)", limited.unclaimed_names()),
            ("queue <> ALL(%s)", limited.queues),
            ("NOT (name LIKE ANY(%s))", [_like_prefix(p) for p in limited.unclaimed_prefixes()]),
        ):
            if values:
                conditions.append(f"AND {clause}")
                params.append(list(values))
        params += [limit, start, worker_id, token, lease]
        if priority is not None:
            params.append(priority)
        sql = POSTGRESQL["claim"].format(
            conditions=" ".join(conditions),
            columns=", ".join(_column(f) for f in fields),
            priority="(SELECT v FROM top)" if priority is None else "%s",
        )
        rows = fetch_prepared(self.using, sql, params)
        names = [f.attname for f in fields]
        claimed = [_job(connection, self.using, names, converters, row[1:]) for row in rows if row[1] is not None]
        for job in claimed:
            if job.started_at is not None:
                job.attempts -= 1  # as for any action, the executor counts the attempt when it runs the body
        claimed.sort(key=lambda j: (-j.priority, j.scheduled_time, j.pk))
        return claimed, rows[0][0]

    def insert(self, job: ScheduledFunction) -> None:
        """A prepared ``INSERT``: the ORM's took most of a scheduling mutation's time, in Python."""
        connection = connections[self.using]
        fields, sql = _insert_statement(self.using)
        params = [field.get_db_prep_save(getattr(job, field.attname), connection) for field in fields]
        job.pk = fetch_prepared(self.using, sql, params)[0][0]
        job._state.adding, job._state.db = False, self.using

    def insert_many(self, template: dict[str, Any], args: list[str]) -> list[int]:
        """One ``INSERT ... SELECT`` from one JSON array parameter (the constant fields sent once, the
        trigger's NOTIFY once)."""
        if not args:
            return []
        connection = connections[self.using]
        proto = ScheduledFunction(**template)
        columns, values, params = [], [], []
        for field in ScheduledFunction._meta.concrete_fields:
            if field.primary_key:
                continue
            columns.append(connection.ops.quote_name(_column(field)))
            if field.name == "args":
                values.append("u.a")
            else:
                values.append(f"CAST(%s AS {field.db_type(connection)})")
                params.append(field.get_db_prep_save(getattr(proto, field.attname), connection))
        with connection.cursor() as cursor:
            cursor.execute(
                f"INSERT INTO {ScheduledFunction._meta.db_table} ({', '.join(columns)}) "
                f"SELECT {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY "
                "AS u(a, n) ORDER BY u.n RETURNING id",
                [*params, f"[{','.join(args)}]"],
            )
            return sorted(row[0] for row in cursor.fetchall())  # ids are drawn in the ORDER BY's order

    def complete_mutations(self, rows: list[MutationRow], now: datetime) -> int:
        """In one statement, each row found by its ``ctid`` (see ``complete_mutations`` in postgresql.sql)."""
        if any(row[0] is None for row in rows):
            return super().complete_mutations(rows, now)
        columns = zip(
            *((ctid, job_id, token, _json(result), started) for ctid, job_id, token, result, started in rows),
            strict=True,
        )
        return len(fetch_prepared(self.using, POSTGRESQL["complete_mutations"], [now, *(list(c) for c in columns)]))

    def complete_mutation(
        self, ctid: str | None, job_id: int, token: str, result: Any, now: datetime, started_at: datetime
    ) -> int:
        """By ``ctid``; if the row moved since the claim (any update), by its id as elsewhere."""
        if ctid:
            with connections[self.using].cursor() as cursor:
                cursor.execute(POSTGRESQL["complete_mutation"], [_json(result), now, started_at, ctid, job_id, token])
                if cursor.rowcount:
                    completed: int = cursor.rowcount
                    return completed
        return super().complete_mutation(ctid, job_id, token, result, now, started_at)

    def settle_actions(
        self, outcomes: list[tuple[int, str, Any]], starts: list[tuple[int, str]], now: datetime
    ) -> tuple[set[int], set[int]]:
        if not outcomes and not starts:
            return set(), set()
        rows = fetch_prepared(
            self.using,
            POSTGRESQL["settle_actions"],
            {
                "now": now,
                "done_ids": [o[0] for o in outcomes],
                "done_tokens": [o[1] for o in outcomes],
                "results": [_json(o[2]) for o in outcomes],
                "start_ids": [s[0] for s in starts],
                "start_tokens": [s[1] for s in starts],
            },
        )
        return {job_id for done, job_id in rows if done}, {job_id for done, job_id in rows if not done}


def _column(field: Field[Any, Any]) -> str:
    return cast(str, field.column)  # a concrete field's column is never None


@functools.cache
def _insert_statement(using: str) -> tuple[list[Field[Any, Any]], str]:
    """The fields a job's ``INSERT`` writes (all but the id) and its statement, once per alias."""
    connection = connections[using]
    fields = [field for field in ScheduledFunction._meta.concrete_fields if not field.primary_key]
    columns = ", ".join(connection.ops.quote_name(_column(field)) for field in fields)
    values = ", ".join(f"%s::{field.db_type(connection)}" for field in fields)
    return fields, f"INSERT INTO {ScheduledFunction._meta.db_table} ({columns}) VALUES ({values}) RETURNING id"


def _claimed_fields(connection: BaseDatabaseWrapper) -> tuple[list[Field[Any, Any]], Converters]:
    """The columns a claim returns (all but the result and the error) and the converters Django applies
    to them when it reads them (JSON decoding, for instance)."""
    fields = [f for f in ScheduledFunction._meta.concrete_fields if f.name not in ("result", "error")]
    converters = []
    for i, field in enumerate(fields):
        col = field.get_col(ScheduledFunction._meta.db_table)
        converters += [
            (i, convert, col) for convert in connection.ops.get_db_converters(col) + col.get_db_converters(connection)
        ]
    return fields, converters


def _job(
    connection: BaseDatabaseWrapper, using: str, names: list[str], converters: Converters, row: tuple[Any, ...]
) -> ScheduledFunction:
    """A claimed row as a job (what ``QuerySet.raw`` does, without its per-row bookkeeping)."""
    values = list(row[1:])
    for i, convert, col in converters:
        values[i] = convert(values[i], col, connection)
    job = ScheduledFunction.from_db(using, names, values)
    job.ctid = row[0]
    return job


def _like_prefix(prefix: str) -> str:
    """A ``LIKE`` pattern matching the names that start with ``prefix`` (its wildcards escaped)."""
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
