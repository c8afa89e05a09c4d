"""Lifecycle signals and the app's own logging, which is a receiver of them (DESIGN §7)."""

from __future__ import annotations

import logging

import pytest
from django.core.management import call_command

from django_scheduled_actions import scheduler, signals
from tests.app import functions as f

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def received():
    seen = []
    receivers = {}
    for name in ("job_started", "job_succeeded", "job_failed"):

        def receiver(sender, job, _name=name, **kwargs):
            seen.append((_name, job.pk, kwargs.get("will_retry")))

        receivers[name] = receiver
        getattr(signals, name).connect(receiver)
    yield seen
    for name, receiver in receivers.items():
        getattr(signals, name).disconnect(receiver)


def test_signals_follow_a_job_through_retries(received):
    job_id = scheduler.run_after(0, f.flaky_action, {"name": "s", "fail_times": 1})
    call_command("runworker", burst=True)
    assert received == [
        ("job_started", job_id, None),
        ("job_failed", job_id, True),
        ("job_started", job_id, None),
        ("job_succeeded", job_id, None),
    ]


def test_a_receiver_that_raises_does_not_disturb_the_worker(caplog):
    def broken(sender, **kwargs):
        raise RuntimeError("receiver bug")

    signals.job_succeeded.connect(broken)
    try:
        job_id = scheduler.run_after(0, f.bump, {"name": "x"})
        call_command("runworker", burst=True)
    finally:
        signals.job_succeeded.disconnect(broken)
    from django_scheduled_actions.models import ScheduledFunction

    assert ScheduledFunction.objects.get(pk=job_id).state == "success"
    assert any("signal receiver failed" in r.getMessage() for r in caplog.records)


def test_failures_are_logged_with_traceback_and_key_values(caplog):
    caplog.set_level(logging.INFO, logger="django_scheduled_actions")
    job_id = scheduler.run_after(0, f.failing_action, {})
    retried = scheduler.run_after(0, f.flaky_action, {"name": "x", "fail_times": 1})
    call_command("runworker", burst=True)
    failed = [r for r in caplog.records if r.getMessage().startswith("job failed job=")]
    assert len(failed) == 1 and failed[0].levelno == logging.ERROR and failed[0].exc_info[0] is RuntimeError
    assert f"job={job_id} name=tests.app.functions:failing_action attempt=1" in failed[0].getMessage()
    retry = [r for r in caplog.records if r.getMessage().startswith("job failed, will retry")]
    assert len(retry) == 1 and retry[0].levelno == logging.WARNING and f"job={retried}" in retry[0].getMessage()
    assert any(r.getMessage().startswith(f"job succeeded job={retried}") for r in caplog.records)
