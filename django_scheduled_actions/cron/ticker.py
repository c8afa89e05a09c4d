"""The cron scheduler: syncs code-defined crons to ``CronJob`` and enqueues the run of each due tick.

It only enqueues; workers claim and run the jobs like any other. Every worker runs a ``CronLoop``
thread and no worker leads: for each due tick the workers race in the database.

- **One run per tick**: the run is a ``ScheduledFunction`` with ``cron`` and ``cron_tick`` set, and the
  unique constraint ``sa_job_cron_tick_unique`` lets only one insert per (cron, tick) commit; the others
  get ``Outcome.ALREADY_FIRED``.
- **One cursor move per tick**: in the same transaction the cron's ``next_run_at`` is moved by a
  compare-and-set; a worker that finds it already moved rolls back (``Outcome.TAKEN``). So skipped ticks
  are counted once, whichever worker sees them.
- **No overlap**: a tick that finds the cron's previous run still pending or in progress is skipped
  (``SkipReason.OVERLAP``). After downtime only the latest overdue tick fires; the ones before it are
  skipped (``SkipReason.MISSED``). Each skip is logged, counted in ``CronJob.skipped_count`` and sent
  as ``cron_skipped(cron, tick, reason, count)`` on commit.

The clock is passed in: ``tick(now)``, ``sync(now)``.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, IntegrityError, connections, transaction
from django.utils import timezone

from .. import signals
from ..core import guards
from ..core.registry import Function, registry
from ..exceptions import FunctionNotFound
from ..models import CronJob, ScheduledFunction, State
from ..scheduling import jobs
from ..store.errors import is_conflict
from ..store.transactions import outermost
from . import schedules
from .definitions import CronDefinition, CronRegistry, cron_registry

logger = logging.getLogger("django_scheduled_actions")
MISSED_COUNT_LIMIT = 100_000  # cron expressions: counting missed ticks stops here after a long downtime
SCHEDULE_FIELDS = ("expression", "interval_seconds", "timezone")


class Outcome(enum.Enum):
    FIRED = "fired"
    """This worker enqueued the tick's run."""
    SKIPPED = "skipped"
    """The tick did not fire (see ``SkipReason``); this worker recorded it."""
    ALREADY_FIRED = "already fired"
    """Another worker's run of this tick is in the database (the unique constraint refused ours)."""
    TAKEN = "taken"
    """Another worker moved the cron's cursor first; nothing was written."""


class SkipReason(enum.StrEnum):
    OVERLAP = "overlap"
    """The cron's previous run was still pending or in progress."""
    MISSED = "missed"
    """Workers were down (or late) for this tick; a later tick fired instead."""
    INVALID = "invalid"
    """The cron's function is not registered, or its arguments no longer match the signature."""


@dataclass(frozen=True)
class TickResult:
    cron: str
    tick: datetime
    outcome: Outcome
    job_id: int | None = None
    skipped: int = 0
    reason: SkipReason | None = None


# --- syncing code-defined crons ---


@dataclass
class SyncReport:
    added: list[str]
    updated: list[str]
    removed: list[str]


def sync(now: datetime, crons: CronRegistry = cron_registry, using: str = DEFAULT_DB_ALIAS) -> SyncReport:
    """Make the code-defined ``CronJob`` rows match the definitions: add, update, remove (one log line each).
    ``enabled`` is the admin's to change and is kept. Safe to run from several workers at once."""
    problems = crons.problems()
    if problems:
        from django.core.exceptions import ImproperlyConfigured

        raise ImproperlyConfigured("invalid cron definitions: " + "; ".join(p.message for p in problems))
    report = SyncReport([], [], [])
    rows = {row.name: row for row in CronJob.objects.using(using)}
    with guards.policy("allow"):
        for definition in crons.all():
            row = rows.get(definition.name)
            if row is None:
                _add(definition, now, using, report)
            else:
                _update(row, definition, now, using, report)
        code_names = {d.name for d in crons.all()}
        for name, row in rows.items():
            if row.source == CronJob.Source.CODE and name not in code_names:
                CronJob.objects.using(using).filter(pk=row.pk, source=CronJob.Source.CODE).delete()
                report.removed.append(name)
                logger.info("cron removed name=%r (no longer defined in code)", name)
    return report


def _add(definition: CronDefinition, now: datetime, using: str, report: SyncReport) -> None:
    fields = definition.model_fields()
    try:
        with transaction.atomic(using=using):
            CronJob.objects.using(using).create(
                name=definition.name,
                source=CronJob.Source.CODE,
                next_run_at=definition.schedule.next_after(now),
                **fields,
            )
    except IntegrityError:
        return  # another worker added it at the same moment
    report.added.append(definition.name)
    logger.info(
        "cron added name=%r schedule=%r function=%s",
        definition.name,
        definition.schedule.describe(),
        definition.function.name,
    )


def _update(row: CronJob, definition: CronDefinition, now: datetime, using: str, report: SyncReport) -> None:
    fields = definition.model_fields()
    changed = [name for name, value in fields.items() if getattr(row, name) != value]
    if row.source != CronJob.Source.CODE:
        logger.warning("cron name=%r was defined in the admin and is now defined in code; code wins", row.name)
        changed.append("source")
    if not changed:
        return
    updates = {**fields, "source": CronJob.Source.CODE, "updated_at": now}
    if set(changed) & set(SCHEDULE_FIELDS) or row.next_run_at is None:
        updates["next_run_at"] = definition.schedule.next_after(now)
    CronJob.objects.using(using).filter(pk=row.pk).update(**updates)
    report.updated.append(definition.name)
    logger.info("cron updated name=%r changed=%s", definition.name, ",".join(changed))


# --- ticking ---


class CronScheduler:
    """Enqueues the runs of due cron ticks. ``tick(now)`` is one pass; the clock is the caller's."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS):
        self.using = using
        self._schedules: dict[tuple[str, float | None, str], schedules.Schedule] = {}

    def tick(self, now: datetime) -> list[TickResult]:
        crons = CronJob.objects.using(self.using)
        with guards.policy("allow"):
            for row in crons.unscheduled():
                if self._usable(row):
                    self._start(row, now)
            due = crons.due(now).order_by("next_run_at", "pk")
            return [self.handle(row, now) for row in due if self._usable(row)]

    def next_tick(self) -> datetime | None:
        """When the earliest enabled cron is next due."""
        with guards.policy("allow"):
            return CronJob.objects.using(self.using).next_tick()

    def schedule_of(self, row: CronJob) -> schedules.Schedule:
        key = (row.expression, row.interval_seconds, row.timezone)
        if key not in self._schedules:
            self._schedules[key] = schedules.for_row(row)
        return self._schedules[key]

    def _usable(self, row: CronJob) -> bool:
        """A row whose schedule does not parse (written around the admin's validation, or a time zone gone
        from the tz database) is disabled with an error, so that it cannot hold up the other crons."""
        try:
            self.schedule_of(row)
        except schedules.InvalidSchedule as exc:
            logger.error("cron disabled: invalid schedule name=%r error=%s", row.name, exc)
            CronJob.objects.using(self.using).filter(pk=row.pk).update(enabled=False)
            return False
        return True

    def _start(self, row: CronJob, now: datetime) -> None:
        """A cron saved without a cursor (e.g. created in a shell) starts at its next tick."""
        CronJob.objects.using(self.using).advance(row.pk, None, self.schedule_of(row).next_after(now))

    def handle(self, row: CronJob, now: datetime) -> TickResult:
        """Fire or skip the latest due tick of ``row`` (as read from the database, due at ``now``)."""
        schedule = self.schedule_of(row)
        assert row.next_run_at is not None  # due(now) selected it: next_run_at <= now
        tick, count = schedule.due(row.next_run_at, now, limit=MISSED_COUNT_LIMIT)
        assert tick is not None
        missed, following = count - 1, schedule.next_after(tick)
        try:
            fn = _function(row)
            args = fn.validator.to_json(row.args, from_json=True)
        except (FunctionNotFound, ValueError) as exc:
            logger.error("cron cannot run name=%r function=%s error=%s", row.name, row.function, exc)
            return self._skip(row, tick, following, missed + 1, SkipReason.INVALID)
        if self._running(row):
            return self._skip(row, tick, following, missed + 1, SkipReason.OVERLAP)
        return self._fire(row, fn, args, tick, following, missed, now)

    def _running(self, row: CronJob) -> bool:
        return (
            ScheduledFunction.objects.using(self.using)
            .filter(cron=row, state__in=(State.PENDING, State.IN_PROGRESS))
            .exists()
        )

    def _fire(
        self,
        row: CronJob,
        fn: Function,
        args: dict[str, Any],
        tick: datetime,
        following: datetime,
        missed: int,
        now: datetime,
    ) -> TickResult:
        job = _run_of(row, fn, args, now, tick)
        crons = CronJob.objects.using(self.using)
        try:
            with outermost(self.using, None):
                try:
                    with transaction.atomic(using=self.using):
                        job.save(using=self.using, force_insert=True)
                except IntegrityError:  # sa_job_cron_tick_unique: this tick has its run already
                    crons.advance(row.pk, row.next_run_at, following)
                    return TickResult(row.name, tick, Outcome.ALREADY_FIRED)
                if not crons.advance(row.pk, row.next_run_at, following, fired=tick, skipped=missed):
                    raise _Taken
                _on_commit_fired(job, self.using)
                if missed:
                    assert row.next_run_at is not None  # the first of the missed ticks
                    _on_commit_skipped(row, row.next_run_at, missed, SkipReason.MISSED, self.using)
        except _Taken:
            return TickResult(row.name, tick, Outcome.TAKEN)
        logger.info("cron fired name=%r tick=%s job=%s missed=%d", row.name, tick.isoformat(), job.pk, missed)
        return TickResult(
            row.name, tick, Outcome.FIRED, job_id=job.pk, skipped=missed, reason=SkipReason.MISSED if missed else None
        )

    def _skip(self, row: CronJob, tick: datetime, following: datetime, count: int, reason: SkipReason) -> TickResult:
        crons = CronJob.objects.using(self.using)
        with outermost(self.using, None):
            if not crons.advance(row.pk, row.next_run_at, following, skipped=count):
                return TickResult(row.name, tick, Outcome.TAKEN)
            _on_commit_skipped(row, tick, count, reason, self.using)
        return TickResult(row.name, tick, Outcome.SKIPPED, skipped=count, reason=reason)


class _Taken(Exception):
    """Another worker moved the cursor first: roll back this tick's insert."""


def _function(row: CronJob) -> Function:
    fn = registry.get(row.function)
    if fn.kind not in ("mutation", "action"):
        raise FunctionNotFound(f"{fn.name} is a {fn.kind}; only mutations and actions can run as crons")
    return fn


def _run_of(
    row: CronJob, fn: Function, args: dict[str, Any], now: datetime, tick: datetime | None
) -> ScheduledFunction:
    return ScheduledFunction(args=args, **jobs.row(fn, tick or now, now, cron=row, cron_tick=tick))


def _on_commit_fired(job: ScheduledFunction, using: str) -> None:
    jobs.announce([job], using)


def _on_commit_skipped(row: CronJob, tick: datetime, count: int, reason: SkipReason, using: str) -> None:
    def send() -> None:
        logger.warning(
            "cron tick skipped name=%r tick=%s reason=%s count=%d", row.name, tick.isoformat(), reason, count
        )
        responses = signals.cron_skipped.send_robust(CronJob, cron=row, tick=tick, reason=reason, count=count)
        for receiver, response in responses:
            if isinstance(response, Exception):
                logger.error("signal receiver failed receiver=%r cron=%r", receiver, row.name, exc_info=response)

    transaction.on_commit(send, using=using)


def run_now(row: CronJob, now: datetime | None = None, using: str = DEFAULT_DB_ALIAS) -> int:
    """Enqueue a run of ``row`` now, outside its schedule (the admin's "run now"); returns the job id."""
    now = now or timezone.now()
    fn = _function(row)
    job = _run_of(row, fn, fn.validator.to_json(row.args, from_json=True), now, None)
    with guards.policy("allow"):
        job.save(using=using, force_insert=True)
    _on_commit_fired(job, using)
    return job.pk


# --- the worker's cron thread ---


class CronLoop(threading.Thread):
    """Runs in every worker (not with ``--burst`` or ``--no-crons``): syncs the code-defined crons once,
    then sleeps until the next tick is due (or ``recheck`` seconds, to see crons edited in the admin) and
    ticks. ``on_fired`` is called after a tick enqueued something (the worker wakes its claim loop)."""

    def __init__(
        self,
        stopping: threading.Event,
        *,
        clock: Callable[[], datetime] = timezone.now,
        using: str = DEFAULT_DB_ALIAS,
        recheck: float = 1.0,
        on_fired: Callable[[], None] = lambda: None,
        crons: CronRegistry | None = None,
        through: Callable[[Callable[[], Any]], Any] = lambda work: work(),
    ):
        super().__init__(name="scheduled-actions-crons", daemon=True)
        self.through = through  # where its database work runs: the worker's connections
        self.crons = crons or cron_registry
        self.stopping = stopping
        self.clock = clock
        self.using = using
        self.recheck = recheck
        self.on_fired = on_fired
        self.scheduler = CronScheduler(using)

    def run(self) -> None:
        try:
            if self._sync():
                while not self.stopping.is_set():
                    self.stopping.wait(self._step())
        finally:
            connections.close_all()

    def _sync(self) -> bool:
        while not self.stopping.is_set():
            try:
                report = self.through(lambda: sync(self.clock(), self.crons, using=self.using))
            except DatabaseError as exc:
                logger.warning("cron sync failed, retrying error=%r", exc)
                self.through(lambda: connections[self.using].close())
                self.stopping.wait(self.recheck)
                continue
            except Exception:
                logger.exception("cron sync failed; this worker runs no crons")
                return False
            logger.info(
                "crons synced added=%d updated=%d removed=%d",
                len(report.added),
                len(report.updated),
                len(report.removed),
            )
            return True
        return False

    def _step(self) -> float:
        """One tick; returns how long to sleep."""
        try:
            results = self.through(lambda: self.scheduler.tick(self.clock()))
            if any(r.outcome is Outcome.FIRED for r in results):
                self.on_fired()
            upcoming: datetime | None = self.through(self.scheduler.next_tick)
        except DatabaseError as exc:
            reason = "a transaction conflict" if is_conflict(exc) else "database unavailable?"
            logger.warning("cron tick failed (%s), retrying error=%r", reason, exc)
            self.through(lambda: connections[self.using].close())
            return self.recheck
        except Exception:
            logger.exception("cron tick failed, retrying")
            return self.recheck
        if upcoming is None:
            return self.recheck
        return min(max((upcoming - self.clock()).total_seconds(), 0.0), self.recheck)
