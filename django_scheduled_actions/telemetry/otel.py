"""OpenTelemetry's side of the seam: the spans of job bodies and of ``ctx.run_*`` calls, the trace
context stored on jobs, and the metrics (``metrics.py``). Imported only once ``opentelemetry`` is known
to import (``telemetry.active``)."""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from django.utils import timezone
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from opentelemetry.util.types import AttributeValue

from ..core.jobs import JobInfo
from ..models import ScheduledFunction
from .metrics import Key, Metrics

T = TypeVar("T")
SCOPE = "django_scheduled_actions"
_propagator = TraceContextTextMapPropagator()


class Telemetry:
    """The app's tracer and meter (from the global providers: set yours before the first job runs, or
    at any time: OpenTelemetry's proxies pass on to the provider set later)."""

    def __init__(self) -> None:
        self.tracer = trace.get_tracer(SCOPE)
        self.metrics = Metrics.shared()

    def close(self) -> None:
        self.metrics.close()

    # --- the trace context stored on jobs ---

    def inject(self) -> str | None:
        """The active span's context as stored text: ``traceparent``, then a newline and ``tracestate``
        if there is one; None when no valid span is active (nothing stored, nothing to continue)."""
        if not trace.get_current_span().get_span_context().is_valid:
            return None
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        parent, state = carrier.get("traceparent"), carrier.get("tracestate")
        if parent is None:
            return None
        return f"{parent}\n{state}" if state else parent

    @staticmethod
    def extract(stored: str) -> otel_context.Context:
        parent, _, state = stored.partition("\n")
        carrier = {"traceparent": parent, **({"tracestate": state} if state else {})}
        return _propagator.extract(carrier)

    @contextmanager
    def attached(self, stored: str) -> Iterator[None]:
        token = otel_context.attach(self.extract(stored))
        try:
            yield
        finally:
            otel_context.detach(token)

    # --- spans ---

    def _start(self, job: ScheduledFunction, info: JobInfo) -> tuple[Any, Key]:
        attributes: dict[str, AttributeValue] = {
            "job.id": job.pk,
            "job.function": job.name,
            "job.kind": job.kind,
            "job.queue": job.queue,
            "job.attempt": info.attempt,
        }
        parent = self.extract(job.trace_context) if job.trace_context else None
        span = self.tracer.start_span(
            f"job.run {job.name}", context=parent, kind=SpanKind.CONSUMER, attributes=attributes
        )
        return span, self.metrics.started(job, (timezone.now() - job.scheduled_time).total_seconds())

    def _end(self, job: ScheduledFunction, span: Any, key: Key, began: float, exc: BaseException | None) -> None:
        outcome = "success" if exc is None else "failed"
        span.set_attribute("job.outcome", outcome)
        if exc is not None:
            span.record_exception(exc)
            span.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"))
        span.end()
        self.metrics.ran(job, key, outcome, time.perf_counter() - began)

    def run_job(self, job: ScheduledFunction, info: JobInfo, body: Callable[[], T]) -> T:
        """``body()`` (a job's body) in the span ``job.run <function>``, a child of the context the job
        was scheduled in: what the body schedules is a child of this span."""
        span, key = self._start(job, info)
        began = time.perf_counter()
        token = otel_context.attach(trace.set_span_in_context(span))  # what use_span does, at half its cost
        try:
            result = body()
        except BaseException as exc:
            otel_context.detach(token)
            self._end(job, span, key, began, exc)
            raise
        otel_context.detach(token)
        self._end(job, span, key, began, None)
        return result

    async def run_async_job(self, job: ScheduledFunction, info: JobInfo, body: Callable[[], Awaitable[T]]) -> T:
        """``run_job`` for an async action's body (the span is current in its task only)."""
        span, key = self._start(job, info)
        began = time.perf_counter()
        token = otel_context.attach(trace.set_span_in_context(span))  # what use_span does, at half its cost
        try:
            result = await body()
        except BaseException as exc:
            otel_context.detach(token)
            self._end(job, span, key, began, exc)
            raise
        otel_context.detach(token)
        self._end(job, span, key, began, None)
        return result

    @contextmanager
    def call_span(self, kind: str, fn: Any) -> Iterator[None]:
        """``ctx.run_query`` and its twins: a child span of the body's, ``run_query <function>``."""
        name = getattr(fn, "name", repr(fn))
        with self.tracer.start_as_current_span(
            f"run_{kind} {name}", kind=SpanKind.INTERNAL, attributes={"function": name, "function.kind": kind}
        ):
            yield
