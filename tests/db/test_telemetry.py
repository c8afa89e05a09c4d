"""OpenTelemetry tracing and metrics of jobs (docs/how-to/observability.md), read from the SDK's in-memory
exporter and reader, on every database: one trace from a view through two jobs run by the worker."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone
from opentelemetry import trace
from opentelemetry.trace import StatusCode

from django_scheduled_actions import scheduler, workflows
from django_scheduled_actions import telemetry as seam
from django_scheduled_actions.cron.definitions import CronRegistry
from django_scheduled_actions.cron.ticker import CronScheduler, sync
from django_scheduled_actions.models import CronJob, ScheduledFunction, State, WorkerProcess, WorkflowRun
from django_scheduled_actions.telemetry import metrics as telemetry_metrics
from tests.app import cron_functions as cf
from tests.app import telemetry_functions as tf
from tests.support import telemetry

pytestmark = pytest.mark.django_db(transaction=True)
telemetry.install()
seam.reset()  # the providers are set now: resolve again (a test run before this module may have resolved)
tracer = trace.get_tracer("tests")


@pytest.fixture(autouse=True)
def fresh(monkeypatch, settings):
    settings.SCHEDULED_ACTIONS_TELEMETRY = True  # tests.settings has it off for the other tests
    telemetry.SPANS.clear()
    monkeypatch.setattr(telemetry_metrics, "SNAPSHOT_SECONDS", 0.0)  # each read queries: no second-long cache


def job_spans(name: str | None = None) -> list:
    return [s for s in telemetry.spans() if s.name.startswith("job.run ") and (name is None or s.name.endswith(name))]


def one(spans: list, name: str):
    (found,) = [s for s in spans if s.name == name]
    return found


@pytest.mark.urls("tests.app.telemetry_urls")
def test_one_trace_from_a_view_through_a_mutation_and_the_action_it_schedules(client):
    response = client.post("/order", {"name": "ada"})
    mutation_id = response.json()["job"]
    assert ScheduledFunction.objects.get(pk=mutation_id).trace_context.startswith("00-")
    call_command("runworker", burst=True)

    spans = telemetry.spans()
    view = one(spans, "POST /order")
    mutation = one(spans, f"job.run {tf.place_order.name}")
    action = one(spans, f"job.run {tf.charge_order.name}")
    assert {s.context.trace_id for s in spans} == {view.context.trace_id}
    assert mutation.parent.span_id == view.context.span_id
    assert action.parent.span_id == mutation.context.span_id
    action_job = ScheduledFunction.objects.get(parent_id=mutation_id)
    assert dict(action.attributes) == {
        "job.id": action_job.pk,
        "job.function": tf.charge_order.name,
        "job.kind": "action",
        "job.queue": "default",
        "job.attempt": 1,
        "job.outcome": "success",
    }
    assert mutation.attributes["job.kind"] == "mutation" and mutation.attributes["job.id"] == mutation_id
    in_action = [s for s in spans if s.name.startswith("run_") and s.parent.span_id == action.context.span_id]
    assert sorted(s.name for s in in_action) == [
        f"run_mutation {tf.traced_bump.name}",
        f"run_query {tf.traced_count.name}",
    ]
    in_mutation = [s for s in spans if s.name.startswith("run_") and s.parent.span_id == mutation.context.span_id]
    assert [s.name for s in in_mutation] == [f"run_mutation {tf.traced_bump.name}"]


@pytest.mark.urls("tests.app.telemetry_urls")
def test_a_failing_body_records_its_exception_on_its_span(client):
    client.post("/order", {"name": "bob", "fail": "1"})
    call_command("runworker", burst=True)
    action = one(job_spans(), f"job.run {tf.charge_order.name}")
    assert action.attributes["job.outcome"] == "failed"
    assert action.status.status_code is StatusCode.ERROR
    (event,) = action.events
    assert event.name == "exception"
    assert event.attributes["exception.type"] == "RuntimeError"
    assert event.attributes["exception.message"] == "card declined for bob"
    assert ScheduledFunction.objects.get(name=tf.charge_order.name).state == State.FAILED


def test_a_job_scheduled_outside_a_trace_stores_none_and_starts_its_own():
    job_id = scheduler.run_after(0, tf.traced_bump, {"name": "root"})
    assert ScheduledFunction.objects.get(pk=job_id).trace_context is None
    call_command("runworker", burst=True)
    (span,) = job_spans()
    assert span.parent is None


def test_an_async_action_s_ctx_calls_and_what_it_schedules_continue_its_trace():
    with tracer.start_as_current_span("caller") as caller:
        scheduler.run_after(0, tf.async_charge, {"name": "eve"})
    call_command("runworker", burst=True)
    spans = telemetry.spans()
    action = one(spans, f"job.run {tf.async_charge.name}")
    after = one(spans, f"job.run {tf.traced_bump.name}")
    assert action.parent.span_id == caller.get_span_context().span_id
    assert after.parent.span_id == action.context.span_id
    children = sorted(s.name for s in spans if s.parent is not None and s.parent.span_id == action.context.span_id)
    assert children == [
        f"job.run {tf.traced_bump.name}",
        f"run_mutation {tf.traced_bump.name}",
        f"run_query {tf.traced_count.name}",
    ]
    assert {s.context.trace_id for s in spans} == {caller.get_span_context().trace_id}


def test_a_workflow_s_replays_and_steps_share_its_trace():
    with tracer.start_as_current_span("start") as start:
        run_id = workflows.start(tf.traced_flow, {"name": "wf"})
    call_command("runworker", burst=True)
    assert WorkflowRun.objects.get(pk=run_id).state == "success"
    spans = job_spans()
    names = {s.name for s in spans}
    assert f"job.run workflow-step:{tf.traced_bump.name}" in names
    assert f"job.run workflow-step:{tf.charge_order.name}" in names
    assert len([s for s in spans if "resume" in s.name]) >= 3  # a replay after each step
    assert {s.context.trace_id for s in spans} == {start.get_span_context().trace_id}


def test_telemetry_off_stores_and_records_nothing():
    with override_settings(SCHEDULED_ACTIONS_TELEMETRY=False):
        with tracer.start_as_current_span("caller"):
            job_id = scheduler.run_after(0, tf.traced_bump, {"name": "off"})
        before = telemetry.value("scheduled_actions.jobs.started", function=tf.traced_bump.name)
        call_command("runworker", burst=True)
        assert ScheduledFunction.objects.get(pk=job_id).trace_context is None
        assert job_spans() == []
        assert telemetry.value("scheduled_actions.jobs.started", function=tf.traced_bump.name) == before


def test_with_the_api_alone_and_no_provider_set_nothing_is_made():
    from opentelemetry.metrics import NoOpMeterProvider
    from opentelemetry.trace import ProxyTracerProvider

    assert not seam._configured(ProxyTracerProvider(), NoOpMeterProvider())
    assert seam._configured(trace.get_tracer_provider(), NoOpMeterProvider())  # the SDK's, set above
    assert seam.active() is not None


# --- metrics ---


def test_job_counters_and_histograms_by_function_and_queue():
    fn, labels = tf.charge_order.name, {"queue": "mail"}
    metric = "scheduled_actions.jobs."
    before = {
        name: telemetry.value(metric + name, function=fn, **labels)
        for name in ("scheduled", "started", "succeeded", "failed")
    }
    durations = telemetry.value("scheduled_actions.job.duration", function=fn, outcome="failed", **labels)
    latencies = telemetry.value("scheduled_actions.job.start_latency", function=fn, **labels)
    for name in ("a", "b"):
        scheduler.run_after(0, tf.charge_order, {"name": name}, queue="mail")
    scheduler.run_after(0, tf.charge_order, {"name": "c", "fail": True}, queue="mail")
    call_command("runworker", burst=True)
    after = {name: telemetry.value(metric + name, function=fn, **labels) - before[name] for name in before}
    assert after == {"scheduled": 3, "started": 3, "succeeded": 2, "failed": 1}
    assert telemetry.value(metric + "failed", function=fn, will_retry=False, **labels) >= 1
    assert telemetry.value("scheduled_actions.job.duration", function=fn, outcome="failed", **labels) == durations + 1
    assert telemetry.value("scheduled_actions.job.start_latency", function=fn, **labels) == latencies + 3
    assert telemetry.value(metric + "in_flight", function=fn, **labels) == 0


def test_gauges_read_lag_pending_by_queue_and_live_workers():
    now = timezone.now()
    overdue = scheduler.run_after(0, tf.traced_bump, {"name": "x"}, queue="slow")
    ScheduledFunction.objects.filter(pk=overdue).update(scheduled_time=now - timedelta(seconds=30))  # no worker ran
    scheduler.run_after(3600, tf.traced_bump, {"name": "y"}, queue="slow")
    scheduler.run_after(3600, tf.traced_bump, {"name": "z"}, queue="fast")
    WorkerProcess.objects.create(
        worker_id="alive",
        hostname="h",
        pid=1,
        concurrency=1,
        started_at=now,
        heartbeat_at=now,
        expires_at=now + timedelta(minutes=1),
    )
    WorkerProcess.objects.create(
        worker_id="gone",
        hostname="h",
        pid=2,
        concurrency=1,
        started_at=now,
        heartbeat_at=now,
        expires_at=now - timedelta(minutes=1),
    )
    assert 30 <= telemetry.value("scheduled_actions.scheduler.lag") < 300
    assert telemetry.value("scheduled_actions.jobs.pending", queue="slow") == 2
    assert telemetry.value("scheduled_actions.jobs.pending", queue="fast") == 1
    assert telemetry.value("scheduled_actions.workers.alive") == 1
    ScheduledFunction.objects.filter(pk=overdue).update(state=State.SUCCESS)
    assert telemetry.value("scheduled_actions.scheduler.lag") == 0
    assert telemetry.value("scheduled_actions.jobs.pending", queue="slow") == 1


def test_cron_ticks_fired_and_skipped_are_counted():
    registry = CronRegistry()
    registry.jobs("tests.crons").interval("telemetry tick", {"seconds": 1}, cf.mark, {"label": "t"})
    t0 = timezone.now().replace(microsecond=0)
    sync(t0, registry)
    row = CronJob.objects.get(name="telemetry tick")
    fired = telemetry.value("scheduled_actions.cron.fired", function=cf.mark.name)
    skipped = telemetry.value("scheduled_actions.cron.skipped", cron=row.name, reason="overlap")
    ticker = CronScheduler()
    ticker.tick(t0 + timedelta(seconds=1))  # fires
    ticker.tick(t0 + timedelta(seconds=2))  # the first still pending: skipped
    assert telemetry.value("scheduled_actions.cron.fired", function=cf.mark.name) == fired + 1
    assert telemetry.value("scheduled_actions.cron.skipped", cron=row.name, reason="overlap") == skipped + 1


# --- without the extra ---

BLOCKED = """
import sys
for name in ("opentelemetry", "opentelemetry.trace", "opentelemetry.metrics", "opentelemetry.context"):
    sys.modules[name] = None  # what an environment without the [otel] extra imports: nothing
import tests.settings as project
project.DATABASES["default"]["NAME"] = {name!r}
import django
django.setup()
from django.core.management import call_command
from django_scheduled_actions import scheduler
from tests.app import telemetry_functions as tf
job_id = scheduler.run_after(0, tf.place_order, {{"name": "plain"}})
call_command("runworker", burst=True)
from django_scheduled_actions.models import ScheduledFunction
ours = ScheduledFunction.objects.filter(name__startswith="tests.app.telemetry")
states = sorted(ours.values_list("state", flat=True))
loaded = sorted(m for m, v in sys.modules.items() if m.startswith("opentelemetry") and v is not None)
print(states, loaded)
"""


def test_without_opentelemetry_importable_nothing_of_it_is_imported_and_jobs_run():
    script = textwrap.dedent(BLOCKED.format(name=connection.settings_dict["NAME"]))
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[-2] == "['success', 'success'] []"
