"""An abandoned transaction cannot hold the queue (issue 23): the worker's own sessions are bounded by
the database (idle in a transaction, waiting for a lock) at half a lease, and a lock wait that times out
in a worker's mutation is retried, never the job's failure."""

from __future__ import annotations

import logging
import threading

import pytest
from django.db import connection, transaction
from django.test import override_settings

from django_scheduled_actions import internal_mutation, scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from django_scheduled_actions.store import sessions
from tests.app import functions as f
from tests.app.models import Counter
from tests.support import wait_until
from tests.support.threads import WorkerThread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor == "sqlite",
        reason="SQLite has no sessions to bound: one writer at a time, bounded by its busy timeout",
    ),
]
Jobs = ScheduledFunction.objects
SHORT_LEASE = override_settings(SCHEDULED_ACTIONS_LEASE_SECONDS=2)  # bounds of one second


@internal_mutation
def session_bounds(ctx) -> list:
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT current_setting('idle_in_transaction_session_timeout'), current_setting('lock_timeout')"
            )
        else:
            cursor.execute("SELECT @@session.idle_transaction_timeout, @@session.innodb_lock_wait_timeout")
        return [str(value) for value in cursor.fetchone()]


def own_bounds() -> list:
    return session_bounds.fn(None)


@SHORT_LEASE
def test_the_worker_bounds_its_own_sessions_and_no_others():
    unbounded = own_bounds()
    job_id = scheduler.run_after(0, session_bounds, {})
    with WorkerThread(concurrency=1, crons=False):
        wait_until(lambda: Jobs.filter(pk=job_id, state=State.SUCCESS).exists(), 10, "the job")
    assert Jobs.get(pk=job_id).result == (["1s", "1s"] if connection.vendor == "postgresql" else ["1", "1"])
    assert own_bounds() == unbounded


def hold_lock(
    name: str, bounded: bool, locked: threading.Event, release: threading.Event, errors: list
) -> threading.Thread:
    """A thread that locks the counter ``name`` in a transaction and then sits idle in it until released."""

    def run() -> None:
        if bounded:
            sessions.bound(connection.alias)
        try:
            with transaction.atomic():
                Counter.objects.select_for_update().get(name=name)
                locked.set()
                release.wait(30)
                Counter.objects.filter(name=name).update(value=-1)  # the paused worker's next statement
        except Exception as exc:  # reported to the test
            errors.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@SHORT_LEASE
def test_a_transaction_abandoned_by_a_worker_session_is_ended_by_the_database():
    Counter.objects.create(name="held")
    locked, release, errors = threading.Event(), threading.Event(), []
    paused = hold_lock("held", True, locked, release, errors)
    assert locked.wait(10)
    updated = []
    waiter = threading.Thread(target=lambda: updated.append(Counter.objects.filter(name="held").update(value=1)))
    waiter.start()
    waiter.join(30)  # the database ends the paused session; without the bound, this waits for ever
    release.set()
    paused.join(10)
    assert updated == [1] and Counter.objects.get(name="held").value == 1
    assert len(errors) == 1, "the paused session's transaction must be gone when it resumes"


@SHORT_LEASE
def test_a_lock_wait_that_times_out_in_a_workers_mutation_is_retried_not_failed(caplog):
    Counter.objects.create(name="c")
    locked, release, errors = threading.Event(), threading.Event(), []
    holder = hold_lock("c", False, locked, release, errors)  # another session: an admin save, a report
    assert locked.wait(10)
    caplog.set_level(logging.DEBUG, logger="django_scheduled_actions")
    job_id = scheduler.run_after(0, f.bump, {"name": "c"})
    with WorkerThread(concurrency=1, crons=False):
        try:
            wait_until(lambda: "transaction conflict, retrying" in caplog.text, 20, "a lock wait to time out")
        finally:
            release.set()
        holder.join(10)
        wait_until(
            lambda: Jobs.filter(pk=job_id).exclude(state__in=[State.PENDING, State.IN_PROGRESS]).exists(),
            30,
            "the job to finish",
        )
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts, job.error) == (State.SUCCESS, 1, "")
    assert Counter.objects.get(name="c").value == 0  # -1 from the holder, then the job's +1


def test_a_heartbeat_never_waits_for_its_locked_row_and_keeps_the_jobs_leases():
    """Reported: the worker's row locked by another session for three leases made a live worker lost."""
    from datetime import timedelta

    from django_scheduled_actions.models import WorkerProcess
    from django_scheduled_actions.store import dbclock
    from django_scheduled_actions.store.leases import claim, heartbeat, register_worker
    from django_scheduled_actions.worker.maintenance import recover_expired

    job_id = scheduler.run_after(0, f.bump, {"name": "x"})
    short = timedelta(seconds=2)
    register_worker("locked", hostname="h", pid=1, queues=None, concurrency=1, now=dbclock.now(), lease=short)
    claim("locked", 1, None, short)
    locked, release, beats = threading.Event(), threading.Event(), []

    def lock_row() -> None:
        with transaction.atomic():
            WorkerProcess.objects.select_for_update().get(worker_id="locked")
            locked.set()
            release.wait(30)
        connection.close()

    holder = threading.Thread(target=lock_row, daemon=True)
    holder.start()
    assert locked.wait(10)
    beating = threading.Thread(
        target=lambda: beats.append(heartbeat("locked", timedelta(seconds=60))) or connection.close()
    )
    beating.start()
    beating.join(10)  # without NOWAIT it waits for as long as the row is held
    release.set()
    holder.join(10)
    assert beats == [1]
    assert recover_expired(dbclock.now() + timedelta(seconds=10)) == 0  # the worker row expired, the job's lease not
    assert Jobs.get(pk=job_id).state == State.IN_PROGRESS
