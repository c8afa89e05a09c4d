"""The database's clock, by which leases are judged (DESIGN section 11).

Workers run on machines whose clocks drift or jump; the database is the one clock they share. Lease
expiries (the workers' rows and the jobs' claims) are written as the database's time plus the lease,
and recovery compares them with the database's time, so a worker whose clock runs minutes ahead takes
no live worker's jobs, and one whose clock runs behind loses none of its own. Claims compare due times
with the database's clock too (``scheduled_time`` is written by whoever schedules: its own clock).

- PostgreSQL: ``statement_timestamp()`` (``now()`` would be the time its transaction began).
- MySQL/MariaDB: ``UTC_TIMESTAMP(6)``: Django stores UTC there, and ``CURRENT_TIMESTAMP`` is in the
  session's time zone, which Django does not set.
- SQLite: its own clock, which is this machine's (SQLite has no server).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, connections
from django.db.models import DateTimeField, ExpressionWrapper
from django.db.models.functions import Now
from django.db.models.sql import Query
from django.db.models.sql.compiler import SQLCompiler
from django.utils import timezone

if TYPE_CHECKING:
    from django.db.backends.base.base import BaseDatabaseWrapper
    from django.db.models.expressions import CombinedExpression
    from django.db.models.sql.compiler import _AsSqlType

logger = logging.getLogger("django_scheduled_actions")


class DatabaseNow(Now):
    """The database's present time, as an ORM expression (``Now``, UTC on MySQL/MariaDB)."""

    def as_mysql(self, compiler: SQLCompiler, connection: BaseDatabaseWrapper, **extra_context: Any) -> _AsSqlType:
        template = "UTC_TIMESTAMP(6)" if settings.USE_TZ else "CURRENT_TIMESTAMP(6)"
        return self.as_sql(compiler, connection, template=template, **extra_context)


def after(delta: timedelta) -> ExpressionWrapper[CombinedExpression]:
    """The database's time plus ``delta``: a lease's expiry, written by the database."""
    return ExpressionWrapper(DatabaseNow() + delta, output_field=DateTimeField())


def due_by(now: datetime | None) -> datetime | DatabaseNow:
    """What a claim compares due times with: the caller's ``now``, else the database's present."""
    return DatabaseNow() if now is None else now


def now(using: str = DEFAULT_DB_ALIAS) -> datetime:
    """The database's present time, read with one query."""
    connection = connections[using]
    sql, params = SQLCompiler(Query(None), connection, using).compile(DatabaseNow())  # as each vendor renders it
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {sql}", params)
        value: datetime | str = cursor.fetchone()[0]
    if isinstance(value, str):  # SQLite
        value = datetime.fromisoformat(value)
    if settings.USE_TZ and timezone.is_naive(value):
        return value.replace(tzinfo=UTC)
    if not settings.USE_TZ and timezone.is_aware(value):
        return timezone.make_naive(value)
    return value


class Corrected:
    """This machine's clock corrected by its offset from the database's, the worker's clock: the times it
    writes (started, completed, cron ticks, registrations) agree with the database's time that leases and
    due times are judged by, without a query per reading. ``measure()`` (the worker's upkeep calls it every
    few seconds) reads the database's time once and keeps the offset; the first call logs a warning when
    the two clocks are more than ``WARN_AFTER`` apart."""

    WARN_AFTER = timedelta(seconds=1)
    UNCERTAIN = timedelta(milliseconds=50)
    STEADY = timedelta(milliseconds=250)

    def __init__(self, using: str = DEFAULT_DB_ALIAS, local: Callable[[], datetime] = timezone.now):
        self.using, self.local = using, local
        self.offset = timedelta(0)
        self.measured = False

    def __call__(self) -> datetime:
        return self.local() + self.offset

    def measure(self) -> timedelta:
        """Read the offset again. A reading whose round trip took long (a reconnect) is too uncertain to
        keep, and one within ``STEADY`` of the offset kept is noise: keeping the offset steady keeps a
        job's recorded start before its completion, however short the job."""
        before = self.local()
        database = now(self.using)
        after = self.local()
        offset = database - (before + (after - before) / 2)
        if self.measured and (after - before > self.UNCERTAIN or abs(offset - self.offset) < self.STEADY):
            return self.offset
        self.offset = offset
        if not self.measured and abs(self.offset) > self.WARN_AFTER:
            logger.warning(
                "this machine's clock is %.1fs %s the database's: the worker writes the database's time",
                abs(self.offset.total_seconds()),
                "behind" if self.offset > timedelta(0) else "ahead of",
            )
        self.measured = True
        return self.offset
