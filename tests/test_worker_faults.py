"""Faults the chaos suite found, each reproduced in-process:

- a claim whose commit reached the server but whose answer was lost (connection killed mid-COMMIT) must not
  leave its jobs in progress under a live worker;
- a bookkeeping write (an action's start, its success, a failure) whose commit landed but whose answer was
  lost is repeated by the worker: the repeat must match the row it already wrote, count no second attempt
  and still report the job's outcome (signals, batches);
- a worker restarted under the same ``--worker-id`` (a StatefulSet pod, a systemd unit with a fixed name)
  must not keep its previous incarnation's claims alive: they are recovered like any lost worker's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from django_scheduled_actions import leases, scheduler, signals
from django_scheduled_actions.leases import claim, register_worker
from django_scheduled_actions.models import ScheduledFunction, State
from django_scheduled_actions.models.jobs import ScheduledFunctionQuerySet
from tests.app import functions as f
from tests.conftest import wait_until
from tests.threads import WorkerThread

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_claim_committed_but_unacknowledged_is_handed_back(monkeypatch):
    job_id = scheduler.run_after(0, f.noop_mutation, {"i": 2})
    real_claim, calls = leases.claim, []

    def claim_then_lose_the_answer(*args, **kwargs):
        result = real_claim(*args, **kwargs)
        calls.append(result)
        if len(calls) == 1:  # committed on the server; the client never hears back
            raise OperationalError(2013, "Lost connection to server during query")
        return result

    monkeypatch.setattr(leases, "claim", claim_then_lose_the_answer)
    with WorkerThread(crons=False):
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS, 8,
                   "the job of the unacknowledged claim to be handed back and run")
    assert [j.pk for j in calls[0][1]] == [job_id]


def _lose_each_first_answer(monkeypatch, method: str) -> list[tuple]:
    """Every distinct call of the job queryset's ``method`` commits, then its caller hears of a lost
    connection (as when the server is killed mid-COMMIT); the caller's repeat gets the answer."""
    real, calls = getattr(ScheduledFunctionQuerySet, method), []

    def write_then_lose_the_answer(self, *args):
        result = real(self, *args)
        if args not in calls:
            calls.append(args)
            raise OperationalError(2013, "Lost connection to server during query")
        return result

    monkeypatch.setattr(ScheduledFunctionQuerySet, method, write_then_lose_the_answer)
    return calls


@pytest.mark.parametrize("function, outcome, signal", [
    (f.noop_action, State.SUCCESS, signals.job_succeeded),
    (f.failing_action, State.FAILED, signals.job_failed),
])
def test_an_action_whose_writes_landed_unacknowledged_counts_one_attempt_and_one_outcome(
        monkeypatch, function, outcome, signal):
    repeated = [_lose_each_first_answer(monkeypatch, method) for method in ("settle_actions", "mark_failed")]
    heard = []
    receiver = lambda job, **kwargs: heard.append(job.pk)  # noqa: E731
    signal.connect(receiver, sender=ScheduledFunction, weak=False)
    try:
        job_id = scheduler.run_after(0, function, {})
        with WorkerThread(crons=False):
            wait_until(lambda: heard, 8, f"the action to be reported {outcome}")
    finally:
        signal.disconnect(receiver, sender=ScheduledFunction)
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.state, job.attempts, heard) == (outcome, 1, [job_id])
    assert any(repeated), "no write was repeated: the test exercised nothing"


@override_settings(SCHEDULED_ACTIONS_LEASE_SECONDS=1)
def test_a_restart_under_the_same_worker_id_recovers_the_previous_claims():
    job_id = scheduler.run_after(0, f.noop_mutation, {"i": 1})
    lease = timedelta(seconds=1)
    register_worker("pod-0", hostname="h", pid=1, queues=None, concurrency=1, now=timezone.now(), lease=lease)
    _token, claimed = claim("pod-0", 1, timezone.now(), lease)  # ... and then the process is killed
    assert [job.pk for job in claimed] == [job_id]

    with WorkerThread(worker_id="pod-0", crons=False):
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS, 8,
                   "the previous incarnation's claim to be recovered and run")
