"""Faults the chaos suite found, each reproduced in-process:

- a claim whose commit reached the server but whose answer was lost (connection killed mid-COMMIT) must not
  leave its jobs in progress under a live worker;
- a bookkeeping write (an action's start, its success, a failure) whose commit landed but whose answer was
  lost is repeated by the worker: the repeat must match the row it already wrote, count no second attempt
  and still report the job's outcome (signals, batches);
- a mutation whose connection the server kills mid-body is handed back and runs again, whatever the
  isolation handling then meets on the dead connection;
- a worker restarted under the same ``--worker-id`` (a StatefulSet pod, a systemd unit with a fixed name)
  must not keep its previous incarnation's claims alive: they are recovered like any lost worker's.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError
from django.test import override_settings
from django.utils import timezone

from django_scheduled_actions import scheduler, signals
from django_scheduled_actions.models import ScheduledFunction, State
from django_scheduled_actions.models.jobs import ScheduledFunctionQuerySet
from django_scheduled_actions.store import leases
from django_scheduled_actions.store.engines import engine
from django_scheduled_actions.store.leases import claim, register_worker
from tests.app import functions as f
from tests.support import wait_until
from tests.support.threads import WorkerThread

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
        wait_until(
            lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS,
            8,
            "the job of the unacknowledged claim to be handed back and run",
        )
    assert [j.pk for j in calls[0][1]] == [job_id]


def _lose_each_first_answer(monkeypatch, owner: type, method: str) -> list[tuple]:
    """Every distinct call of ``owner.method`` (the job queryset's, the store engine's) commits, then its
    caller hears of a lost connection (as when the server is killed mid-COMMIT); the repeat gets the answer."""
    real, calls = getattr(owner, method), []

    def write_then_lose_the_answer(self, *args):
        result = real(self, *args)
        if args not in calls:
            calls.append(args)
            raise OperationalError(2013, "Lost connection to server during query")
        return result

    monkeypatch.setattr(owner, method, write_then_lose_the_answer)
    return calls


@pytest.mark.parametrize(
    "function, outcome, signal",
    [
        (f.noop_action, State.SUCCESS, signals.job_succeeded),
        (f.failing_action, State.FAILED, signals.job_failed),
    ],
)
def test_an_action_whose_writes_landed_unacknowledged_counts_one_attempt_and_one_outcome(
    monkeypatch, function, outcome, signal
):
    repeated = [
        _lose_each_first_answer(monkeypatch, type(engine("default")), "settle_actions"),
        _lose_each_first_answer(monkeypatch, ScheduledFunctionQuerySet, "mark_failed"),
    ]
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


@pytest.mark.parametrize("isolation", ["serializable", None])
@pytest.mark.parametrize("others", [0, 3], ids=["alone", "in-a-shared-transaction"])
def test_mutations_whose_connection_was_killed_mid_body_run_again(isolation, others, settings):
    from django.db import connection

    from tests.app.models import Effect

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server to kill a connection")
    settings.SCHEDULED_ACTIONS_MUTATION_ISOLATION = isolation
    key = f"killed-{isolation}-{others}"
    job_ids = [scheduler.run_after(0, f.record, {"key": f"{key}-{i}"}) for i in range(others)]
    job_ids.append(scheduler.run_after(0, f.lose_connection_once, {"key": key}))
    with WorkerThread(crons=False):
        wait_until(
            lambda: (
                not ScheduledFunction.objects.filter(
                    pk__in=job_ids, state__in=(State.PENDING, State.IN_PROGRESS)
                ).exists()
            ),
            8,
            "the mutations to finish",
        )
    jobs = ScheduledFunction.objects.filter(pk__in=job_ids).order_by("pk")
    assert [(job.state, job.attempts, job.error) for job in jobs] == [(State.SUCCESS, 1, "")] * len(job_ids)
    assert Effect.objects.filter(key=key).count() == 1


def test_an_actions_mutation_and_query_that_lose_their_connection_run_again_on_a_new_one():
    """A connection killed under an action's ``ctx.run_mutation`` before its commit (nothing of it committed)
    or under its ``ctx.run_query`` (read-only) costs the action nothing: the call runs again on a new
    connection, and the action succeeds at its first attempt with the mutation's effect once."""
    from django.db import connection

    from tests.app.models import Effect

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server to kill a connection")
    job_id = scheduler.run_after(0, f.calls_across_lost_connections, {"key": "lost-under-action"})
    with WorkerThread(crons=False):
        wait_until(
            lambda: ScheduledFunction.objects.get(pk=job_id).state in (State.SUCCESS, State.FAILED), 15, "the action"
        )
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.state, job.attempts, job.error, job.result) == (State.SUCCESS, 1, "", 1)
    assert Effect.objects.filter(key="lost-under-action").count() == 1


def test_a_transaction_on_a_connection_lost_underneath_reopens_it_or_reports_it_lost():
    """A connection the server killed while Django was setting it up stays assigned to Django: the next
    mutation's transaction must not turn that into a failure of its job (the chaos suite saw psycopg's own
    "the connection is lost" escape Django's error wrapping and fail a mutation)."""
    from django.db import DatabaseError, connection

    from django_scheduled_actions.store.errors import is_connection_error
    from django_scheduled_actions.store.transactions import outermost
    from tests.app.models import Effect

    if connection.vendor == "sqlite":
        pytest.skip("SQLite has no server to kill a connection")
    f.kill_connection(connection)
    raw = connection.connection
    with pytest.raises(Exception):  # noqa: B017 - the driver's own error, as in Django's connection setup
        raw.execute("SELECT 1") if connection.vendor == "postgresql" else raw.query("SELECT 1")
    try:
        with outermost("default", "serializable"):
            count = Effect.objects.count()
    except DatabaseError as exc:
        assert is_connection_error(exc), f"{exc!r} is not seen as a lost connection: the job would fail"
        connection.close()
    else:
        assert count == 0
        assert connection.vendor == "postgresql", "only PostgreSQL reopens it itself"


@override_settings(SCHEDULED_ACTIONS_LEASE_SECONDS=1)
def test_a_restart_under_the_same_worker_id_recovers_the_previous_claims():
    job_id = scheduler.run_after(0, f.noop_mutation, {"i": 1})
    lease = timedelta(seconds=1)
    register_worker("pod-0", hostname="h", pid=1, queues=None, concurrency=1, now=timezone.now(), lease=lease)
    _token, claimed = claim("pod-0", 1, timezone.now(), lease)  # ... and then the process is killed
    assert [job.pk for job in claimed] == [job_id]

    with WorkerThread(worker_id="pod-0", crons=False):
        wait_until(
            lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS,
            8,
            "the previous incarnation's claim to be recovered and run",
        )
