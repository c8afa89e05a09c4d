"""``runworker`` says what it does in a fresh project (no LOGGING): a start line, each job's outcome,
failures with their traceback, ``-v`` picking the level; and a project that configures logging stays in
charge of it (no second handler, no duplicate lines). Real worker processes, their stderr read as a user
reads it."""

from __future__ import annotations

import subprocess
import sys

import pytest

from django_scheduled_actions import scheduler
from tests.app import functions as f
from tests.app import process_functions as pf
from tests.support import ROOT, subprocess_env

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def run_worker(*args: str, settings: str = "tests.fresh_settings", **env: str) -> str:
    """``runworker --burst`` on two jobs scheduled now, one succeeding and one failing; returns its stderr."""
    proc = subprocess.run(
        [sys.executable, "-m", "django", "runworker", "--burst", "--worker-id", "fresh", "--concurrency", "2", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(DJANGO_SETTINGS_MODULE=settings, **env),
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "", proc.stdout
    return proc.stderr


@pytest.fixture
def jobs():
    return scheduler.run_after(0, pf.tally, {"name": "logged"}), scheduler.run_after(0, f.failing_action, {})


def lines(output: str, text: str) -> list[str]:
    return [line for line in output.splitlines() if text in line]


def test_a_fresh_project_sees_the_start_line_each_outcome_and_failures_with_their_traceback(jobs, vendor):
    ok, failed = jobs
    output = run_worker()
    [start] = lines(output, "worker starting")
    assert " INFO worker starting worker_id=fresh concurrency=2 queues=all database=default (" in start
    assert f"({vendor} " in start
    assert len(lines(output, f"job succeeded job={ok} ")) == 1
    [failure] = lines(output, f"job failed job={failed} ")
    assert " ERROR " in failure
    traceback = output.split(failure, 1)[1]
    assert "Traceback (most recent call last):" in traceback and "RuntimeError: boom" in traceback
    assert lines(output, "worker stopped worker_id=fresh jobs=2")
    assert not lines(output, "job started")  # DEBUG: -v 2


@pytest.mark.parametrize(
    ("verbosity", "shown", "hidden"),
    [
        ("0", ["job failed"], ["worker starting", "job succeeded", "job started"]),
        ("2", ["worker starting", "job succeeded", "job failed", "job started"], []),
        ("3", ["[scheduled-actions-executor-", "job started"], []),
    ],
)
def test_verbosity_picks_the_level(jobs, verbosity, shown, hidden):
    output = run_worker("-v", verbosity)
    assert all(lines(output, text) for text in shown), output
    assert not any(lines(output, text) for text in hidden), output
    assert "RuntimeError: boom" in output


def test_a_project_that_logs_through_root_stays_in_charge(jobs):
    ok, _failed = jobs
    output = run_worker("-v", "2", FRESH_ROOT_LOGGING="1")
    assert [line[:20] for line in lines(output, "worker starting")] == ["ROOT INFO worker sta"]
    assert len(lines(output, f"job succeeded job={ok} ")) == 1
    assert not lines(output, "job started")  # the project's level (INFO), not -v 2's


def test_a_project_that_configures_the_apps_logger_stays_in_charge(jobs):
    ok, _failed = jobs
    output = run_worker("-v", "0", settings="tests.settings", TEST_LOG_LEVEL="INFO")
    assert len(lines(output, "worker starting")) == 1  # the project's level, not -v 0's; printed once
    assert len(lines(output, f"job succeeded job={ok} ")) == 1
