"""The seam between the app and OpenTelemetry (docs/how-to/observability.md): tracing and metrics when the
``[otel]`` extra is installed, an SDK's tracer or meter provider is set, and ``SCHEDULED_ACTIONS_TELEMETRY``
is on (the default); nothing otherwise.

Nothing here imports OpenTelemetry: ``active()`` resolves once (again after a change of the setting) to a
``Telemetry`` (``otel.py``, which does) or to None. The worker asks once, when it is built, and keeps
its plain callables when the answer is None: without the extra its code path is the one it always had.
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any, TypeVar

from django.core.signals import setting_changed

if TYPE_CHECKING:
    from .otel import Telemetry

T = TypeVar("T")
_UNRESOLVED: Any = object()
_active: Telemetry | None = _UNRESOLVED


def active() -> Telemetry | None:
    """The app's telemetry, or None: the setting is off, or ``opentelemetry`` cannot be imported."""
    global _active
    if _active is _UNRESOLVED:
        _active = _resolve()
    return _active


def _resolve() -> Telemetry | None:
    from ..conf import app_settings  # here: conf reads the settings, which this module must not at import

    if not app_settings.TELEMETRY:
        return None
    try:
        from opentelemetry import metrics, trace
    except ImportError:
        return None
    if not _configured(trace.get_tracer_provider(), metrics.get_meter_provider()):
        return None  # the API alone: everything would go to its no-op providers, so nothing is made
    from .otel import Telemetry  # here: it imports opentelemetry, an optional dependency (the [otel] extra)

    return Telemetry()


def _configured(tracer_provider: Any, meter_provider: Any) -> bool:
    """Whether a tracer or a meter provider was set (an SDK's): the API's own are no-ops or proxies."""
    unset = ("ProxyTracerProvider", "NoOpTracerProvider", "_ProxyMeterProvider", "NoOpMeterProvider")
    return type(tracer_provider).__name__ not in unset or type(meter_provider).__name__ not in unset


def reset(**kwargs: Any) -> None:
    """Resolve again on next use: after ``override_settings(SCHEDULED_ACTIONS_TELEMETRY=...)``, and after
    setting OpenTelemetry's providers later than the app first looked (a worker already built keeps
    what it resolved)."""
    global _active
    setting = kwargs.get("setting")
    if setting is not None and setting != "SCHEDULED_ACTIONS_TELEMETRY":
        return
    if _active is not _UNRESOLVED and _active is not None:
        _active.close()
    _active = _UNRESOLVED


setting_changed.connect(reset, dispatch_uid="scheduled_actions_telemetry_reset")


def trace_context() -> str | None:
    """The W3C trace context of the span active here, to store on a job scheduled now (None: none)."""
    telemetry = active()
    return None if telemetry is None else telemetry.inject()


def continuing(stored: str | None) -> AbstractContextManager[None]:
    """Within it, ``stored`` (a trace context read from a row) is the active one: what is scheduled
    there joins that trace (a workflow run's replays)."""
    telemetry = active()
    if telemetry is None or not stored:
        return nullcontext()
    return telemetry.attached(stored)


_NOTHING: AbstractContextManager[None] = nullcontext()


def call_span(kind: str, fn: Any) -> AbstractContextManager[None]:
    """The span of a ``ctx.run_query`` / ``run_mutation`` / ``run_action`` call (nothing without telemetry)."""
    telemetry = active()
    return _NOTHING if telemetry is None else telemetry.call_span(kind, fn)


def carrying(through: Callable[[Callable[[], T]], T]) -> Callable[[Callable[[], T]], T]:
    """``through`` (the worker's: work runs on another thread) carrying the caller's context along, so a
    job scheduled by a body's ``ctx`` joins the body's trace; ``through`` itself without telemetry."""
    if active() is None:
        return through

    def carried(work: Callable[[], T]) -> T:
        context = contextvars.copy_context()
        return through(lambda: context.run(work))

    return carried


def carrying_awaited(
    awaited: Callable[[Callable[[], T]], Awaitable[T]],
) -> Callable[[Callable[[], T]], Awaitable[T]]:
    """``carrying`` for the awaited work of an async action's ``ctx``."""
    if active() is None:
        return awaited

    def carried(work: Callable[[], T]) -> Awaitable[T]:
        context = contextvars.copy_context()
        return awaited(lambda: context.run(work))

    return carried
