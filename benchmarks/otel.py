"""OpenTelemetry's SDK as a production worker would have it, exporting nowhere (``bench.py --telemetry``):
spans through a ``BatchSpanProcessor`` to an exporter that drops them, metrics collected every second by
a ``PeriodicExportingMetricReader`` (which runs the database gauges' queries) to an exporter that drops
them. What is measured is the app's instrumentation and the SDK's work, not an exporter's network."""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricExporter, MetricExportResult, PeriodicExportingMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult


class DroppingSpans(SpanExporter):
    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


class DroppingMetrics(MetricExporter):
    def export(self, metrics_data: Any, timeout_millis: float = 10_000, **kwargs: Any) -> MetricExportResult:
        return MetricExportResult.SUCCESS

    def force_flush(self, timeout_millis: float = 10_000) -> bool:
        return True

    def shutdown(self, timeout_millis: float = 30_000, **kwargs: Any) -> None:
        pass


def install(what: str = "traces,metrics") -> None:
    """The SDK's providers for ``what``: ``traces``, ``metrics`` or both (the others stay the API's no-op)."""
    if "traces" in what:
        provider = TracerProvider()
        provider.add_span_processor(BatchSpanProcessor(DroppingSpans()))
        trace.set_tracer_provider(provider)
    if "metrics" in what:
        interval = float(os.environ.get("BENCH_OTEL_INTERVAL_MS", "1000"))
        reader = PeriodicExportingMetricReader(DroppingMetrics(), export_interval_millis=interval)
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
