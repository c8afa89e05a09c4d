"""OpenTelemetry's SDK, set up once per test process with the in-memory span exporter and metric reader
(the global providers can be set only once)."""

from __future__ import annotations

from typing import Any

from opentelemetry import metrics, trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS = InMemorySpanExporter()
READER = InMemoryMetricReader()


def install() -> None:
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(SPANS))
        trace.set_tracer_provider(provider)
    if not isinstance(metrics.get_meter_provider(), MeterProvider):
        metrics.set_meter_provider(MeterProvider(metric_readers=[READER]))


def spans() -> list[ReadableSpan]:
    return list(SPANS.get_finished_spans())


def points(name: str) -> list[Any]:
    """The data points of the metric ``name`` now (cumulative since the process started)."""
    data = READER.get_metrics_data()
    found = []
    for resource in data.resource_metrics if data else []:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == name:
                    found += list(metric.data.data_points)
    return found


def value(name: str, **attributes: Any) -> float:
    """The sum of the points of ``name`` whose attributes include ``attributes`` (a histogram: its count)."""
    total = 0.0
    for point in points(name):
        if all(point.attributes.get(k) == v for k, v in attributes.items()):
            total += point.count if hasattr(point, "bucket_counts") else point.value
    return total
