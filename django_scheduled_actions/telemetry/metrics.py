"""The app's OpenTelemetry metrics (docs/how-to/observability.md lists them). Counters and histograms are
recorded where things happen: scheduling, cron ticks and outcomes by the app's signals, starts and
durations by the job span (``otel.py``). The gauges read by the database (scheduler lag, pending jobs by
queue, live workers) are observed by callbacks, only when a reader collects: never on a worker's path,
one snapshot of three bounded queries per collection however many gauges ask."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections
from django.dispatch import Signal
from django.utils import timezone
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .. import signals
from ..core import guards
from ..models import ScheduledFunction, State, WorkerProcess
from ..store.engines import engine

logger = logging.getLogger("django_scheduled_actions")
SCOPE = "django_scheduled_actions"
PENDING_COUNTED = 10_000  # the most pending jobs one collection counts (the gauge then reads "at least")
SNAPSHOT_SECONDS = 1.0  # gauges asked within this of a snapshot share it
UID = "scheduled_actions_metrics_"
DURATIONS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 600)


class Metrics:
    """The instruments, made once per process (``shared``; OpenTelemetry keeps instruments for good), and
    the receivers that feed them, connected while telemetry is on (``open`` / ``close``)."""

    _shared: Metrics | None = None
    _lock = threading.Lock()

    @classmethod
    def shared(cls) -> Metrics:
        with cls._lock:
            if cls._shared is None:
                cls._shared = cls()
            cls._shared.open()
            return cls._shared

    def __init__(self, using: str = DEFAULT_DB_ALIAS) -> None:
        meter = metrics.get_meter(SCOPE)
        # counts are tallied here and observed when a reader collects: a tally is a dict increment on the
        # path that counts, where an SDK counter's add costs some 10 us (most of it checking its attributes)
        self.scheduled, self.started_jobs, self.succeeded, self.failed = Tally(), Tally(), Tally(), Tally()
        self.in_flight, self.cron_fired, self.cron_skipped = Tally(), Tally(), Tally()
        for name, tally, unit, description in [
            ("scheduled_actions.jobs.scheduled", self.scheduled, "{job}", "jobs scheduled"),
            ("scheduled_actions.jobs.started", self.started_jobs, "{job}", "job bodies started"),
            ("scheduled_actions.jobs.succeeded", self.succeeded, "{job}", "jobs succeeded"),
            ("scheduled_actions.jobs.failed", self.failed, "{job}", "job attempts failed"),
            ("scheduled_actions.cron.fired", self.cron_fired, "{tick}", "cron ticks fired"),
            ("scheduled_actions.cron.skipped", self.cron_skipped, "{tick}", "cron ticks skipped"),
        ]:
            meter.create_observable_counter(name, [tally.observe], unit, description)
        meter.create_observable_up_down_counter(
            "scheduled_actions.jobs.in_flight", [self.in_flight.observe], "{job}", "job bodies running"
        )
        # histograms (function, queue; the duration's outcome too): one record each per job
        self.duration = meter.create_histogram(
            "scheduled_actions.job.duration",
            "s",
            "how long job bodies ran",
            explicit_bucket_boundaries_advisory=DURATIONS,
        )
        self.latency = meter.create_histogram(
            "scheduled_actions.job.start_latency",
            "s",
            "from the time a job was due to its body's start",
            explicit_bucket_boundaries_advisory=DURATIONS,
        )
        self.snapshot = Snapshot(using)
        meter.create_observable_gauge(
            "scheduled_actions.scheduler.lag", [self.snapshot.lag], "s", "age of the oldest due pending job"
        )
        meter.create_observable_gauge(
            "scheduled_actions.jobs.pending", [self.snapshot.pending], "{job}", "pending jobs by queue"
        )
        meter.create_observable_gauge(
            "scheduled_actions.workers.alive", [self.snapshot.workers], "{worker}", "workers whose lease runs"
        )
        self._receivers: list[tuple[Signal, Callable[..., None]]] = [
            (signals.job_scheduled, self._on_scheduled),
            (signals.job_succeeded, self._on_succeeded),
            (signals.job_failed, self._on_failed),
            (signals.cron_skipped, self._on_cron_skipped),
        ]

    def open(self) -> None:
        self.snapshot.observed = True
        for signal, receiver in self._receivers:
            signal.connect(receiver, dispatch_uid=UID + receiver.__name__, weak=False)

    def close(self) -> None:
        self.snapshot.observed = False
        for signal, receiver in self._receivers:
            signal.disconnect(dispatch_uid=UID + receiver.__name__)

    # --- from the job span ---

    def started(self, job: ScheduledFunction, latency: float) -> Key:
        key = (("function", job.name), ("queue", job.queue), ("kind", job.kind))
        self.started_jobs.add(key)
        self.in_flight.add(key)
        self.latency.record(max(latency, 0.0), {"function": job.name, "queue": job.queue})
        return key

    def ran(self, job: ScheduledFunction, key: Key, outcome: str, seconds: float) -> None:
        self.in_flight.add(key, -1)
        self.duration.record(seconds, {"function": job.name, "queue": job.queue, "outcome": outcome})

    # --- from the app's signals ---

    def _on_scheduled(self, sender: Any, job: ScheduledFunction, **kwargs: Any) -> None:
        self.scheduled.add(_key(job))
        if job.cron_id is not None:
            self.cron_fired.add((("function", job.name),))

    def _on_succeeded(self, sender: Any, job: ScheduledFunction, **kwargs: Any) -> None:
        self.succeeded.add(_key(job))

    def _on_failed(self, sender: Any, job: ScheduledFunction, will_retry: bool = False, **kwargs: Any) -> None:
        self.failed.add((*_key(job), ("will_retry", bool(will_retry))))

    def _on_cron_skipped(self, sender: Any, cron: Any, reason: str = "", count: int = 1, **kwargs: Any) -> None:
        self.cron_skipped.add((("cron", getattr(cron, "name", str(cron))), ("reason", str(reason))), count)


Key = tuple[tuple[str, Any], ...]  # a tally's attributes, as (name, value) pairs


class Tally:
    """Counts by attributes, kept in this process and reported, cumulative, when a reader collects."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[Key, int] = {}

    def add(self, key: Key, n: int = 1) -> None:
        with self._lock:
            self._counts[key] = self._counts.get(key, 0) + n

    def observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            counts = list(self._counts.items())
        return [Observation(n, dict(key)) for key, n in counts]


def _key(job: ScheduledFunction) -> Key:
    return (("function", job.name), ("queue", job.queue), ("kind", job.kind))


class Snapshot:
    """What the database gauges report, read at most once per ``SNAPSHOT_SECONDS`` by three bounded
    queries: the earliest due time (the due index's first entry per priority, as the worker's own
    ``next_due_time``), the queues of at most ``PENDING_COUNTED`` pending jobs, and the live workers'
    rows. A connection opened for it is closed after (a worker's stays within ``--db-connections``)."""

    def __init__(self, using: str) -> None:
        self.using = using
        self.observed = True  # False while telemetry is off: the gauges report nothing, query nothing
        self._lock = threading.Lock()
        self._taken = -SNAPSHOT_SECONDS
        self._values: tuple[float, dict[str, int], int] | None = None

    def lag(self, options: CallbackOptions) -> Iterable[Observation]:
        values = self._read()
        return [] if values is None else [Observation(values[0])]

    def pending(self, options: CallbackOptions) -> Iterable[Observation]:
        values = self._read()
        return [] if values is None else [Observation(n, {"queue": q}) for q, n in sorted(values[1].items())]

    def workers(self, options: CallbackOptions) -> Iterable[Observation]:
        values = self._read()
        return [] if values is None else [Observation(values[2])]

    def _read(self) -> tuple[float, dict[str, int], int] | None:
        if not self.observed:
            return None
        with self._lock:
            if time.monotonic() - self._taken >= SNAPSHOT_SECONDS:
                self._values = self._query()
                self._taken = time.monotonic()
            return self._values

    def _query(self) -> tuple[float, dict[str, int], int] | None:
        connection = connections[self.using]
        opened_here = connection.connection is None
        try:
            with guards.policy("allow"):
                now = timezone.now()
                due = engine(self.using).next_due_time(None)
                lag = max((now - due).total_seconds(), 0.0) if due is not None else 0.0
                queues = ScheduledFunction.objects.using(self.using).filter(state=State.PENDING)
                pending = collections.Counter(queues.values_list("queue", flat=True)[:PENDING_COUNTED])
                alive = WorkerProcess.objects.using(self.using).alive(now).filter(stopped_at__isnull=True).count()
            return lag, dict(pending), alive
        except DatabaseError as exc:
            logger.warning("could not read the job gauges error=%r", exc)
            return None
        finally:
            if opened_here and not connection.in_atomic_block:
                connection.close()
