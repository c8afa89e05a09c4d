"""The view of the telemetry tests: a traced request that schedules a job (pytest.mark.urls)."""

from django.http import HttpRequest, JsonResponse
from django.urls import path
from opentelemetry import trace

from django_scheduled_actions import scheduler

from . import telemetry_functions as tf


def order(request: HttpRequest) -> JsonResponse:
    # the span opentelemetry-instrumentation-django opens around a request, opened by hand here
    with trace.get_tracer("tests").start_as_current_span("POST /order", kind=trace.SpanKind.SERVER):
        job_id = scheduler.run_after(
            0, tf.place_order, {"name": request.POST["name"], "fail": request.POST.get("fail") == "1"}
        )
    return JsonResponse({"job": job_id})


urlpatterns = [path("order", order)]
