"""``manage.py scheduledactions`` as an operator runs it from a shell, beside a real worker: the process's
exit codes (0, 1, 2), its JSON on stdout and its errors on stderr."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import functions as f
from tests.support import ROOT, subprocess_env

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]


def command(*args: str, check: int | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=subprocess_env(),
    )
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def test_the_shell_sees_the_exit_codes_and_the_jobs_a_worker_ran():
    ran, failed = scheduler.run_after(0, f.bump, {"name": "cli"}), scheduler.run_after(0, f.failing_action, {})
    waiting = scheduler.run_after(3600, f.bump, {"name": "later"})
    command("runworker", "--burst", "--worker-id", "cli-worker", check=0)

    listed = json.loads(command("scheduledactions", "jobs", "--json", check=0).stdout)
    assert [(job["id"], job["state"]) for job in listed["jobs"]] == [
        (waiting, "pending"),
        (failed, "failed"),
        (ran, "success"),
    ]
    [worker] = json.loads(command("scheduledactions", "workers", "--json", check=0).stdout)["workers"]
    assert (worker["worker_id"], worker["status"], worker["running"]) == ("cli-worker", "stopped", 0)

    canceled = command("scheduledactions", "cancel", str(waiting), str(ran), check=1)
    assert canceled.stdout.splitlines() == [f"#{waiting} canceled", f"#{ran} not cancelable: it is success"]
    assert canceled.stderr.strip() == "CommandError: 1 of 2 job(s) could not be canceled"
    retried = json.loads(command("scheduledactions", "retry", str(failed), "--json", check=0).stdout)
    new_id = retried["results"][0]["new_job_id"]
    command("runworker", "--burst", check=0)
    assert ScheduledFunction.objects.get(pk=new_id).state == State.FAILED  # it ran, and failed again
    assert ScheduledFunction.objects.get(pk=waiting).state == State.CANCELED

    usage = command("scheduledactions", "jobs", "--state", "bogus", check=2)
    assert "unknown job state 'bogus': the states are pending, in_progress" in usage.stderr
    assert usage.stdout == ""
    assert command("scheduledactions", "show", "987654", check=1).stdout.strip() == "#987654 not found"
