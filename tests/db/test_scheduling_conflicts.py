"""Mutations that schedule (the guide's core pattern) under serializable isolation: scheduling takes no
predicate lock wider than the rows it touches, so concurrent scheduling mutations do not conflict."""

from __future__ import annotations

import threading
import time

import pytest
from django.core.management import call_command
from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from django_scheduled_actions import internal_action, internal_mutation, scheduler
from django_scheduled_actions.core.jobs import JobInfo
from django_scheduled_actions.models import ScheduledFunction, State
from django_scheduled_actions.scheduling.scheduler import Scheduler
from django_scheduled_actions.store.leases import claim
from django_scheduled_actions.worker.executor import Executor
from tests.app import functions as f
from tests.app.models import Note
from tests.support.threads import WorkerThread, at_once

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects
THREADS, PER_THREAD = 8, 500


def test_eight_threads_of_scheduling_mutations_rarely_conflict():
    """8 worker threads run 4,000 mutations that each insert a row and schedule a job: under 1% of them
    run their body again after a conflict, and every row and every scheduled job exists exactly once."""
    f.BODY_RUNS.clear()
    keys = [f"k{i}" for i in range(THREADS * PER_THREAD)]
    scheduler.run_many(f.insert_and_schedule, [{"key": k} for k in keys])
    call_command("runworker", burst=True, concurrency=THREADS)

    assert Jobs.filter(name=f.insert_and_schedule.name, state=State.SUCCESS).count() == len(keys)
    assert sorted(Note.objects.values_list("text", flat=True)) == sorted(keys)
    children = Jobs.filter(name=f.bump.name, state=State.PENDING)
    assert sorted(c.args["name"] for c in children) == sorted(keys)
    reruns = sum(f.BODY_RUNS.values()) - len(keys)
    assert set(f.BODY_RUNS) == set(keys)
    assert reruns < 0.01 * len(keys), f"{reruns} of {len(keys)} bodies ran again after a conflict"


SCHEDULED, CANCELED = threading.Event(), threading.Event()


@internal_mutation
def schedule_then_wait(ctx) -> int:
    """Schedules a child, then waits for the test to cancel this job from another connection."""
    child = ctx.scheduler.run_after(0, f.bump, {"name": "child"})
    SCHEDULED.set()
    CANCELED.wait(2)  # SQLite: the cancel waits for this transaction's write lock, so it lands after
    return child


def test_a_mutation_canceled_while_it_schedules_leaves_no_child(vendor):
    """The scheduling mutation does not read its own job's state: a cancel landing before its commit
    makes its completion fail, and the child it scheduled rolls back with it."""
    SCHEDULED.clear(), CANCELED.clear()
    job_id = scheduler.run_after(0, schedule_then_wait, {})
    token, [job] = claim("w", 1, timezone.now(), timezone.timedelta(seconds=60))

    def cancel() -> None:
        SCHEDULED.wait(5)
        scheduler.cancel(job_id)
        CANCELED.set()

    def run() -> None:
        Executor("w").run(job, token)

    assert at_once([run, cancel]) == []
    children, state = Jobs.exclude(pk=job_id).count(), Jobs.get(pk=job_id).state
    # either the cancel landed first and nothing of the job stays, or it came after the commit (a no-op)
    assert (state, children) in [(State.CANCELED, 0), (State.SUCCESS, 1)]
    if vendor == "postgresql":  # the cancel does not wait for the mutation: it lands first
        assert (state, children) == (State.CANCELED, 0)
    # SQLite: one writer, the cancel waits for the commit; MariaDB: the child's foreign key check
    # share-locks the job row, so cancel and completion deadlock and whichever loses is retried


CHILD_RAN = threading.Event()


@internal_mutation
def mark_child_ran(ctx) -> None:
    CHILD_RAN.set()


@internal_action
def schedule_and_wait_for_the_child(ctx) -> bool:
    ctx.scheduler.run_after(0, mark_child_ran, {})
    return CHILD_RAN.wait(10)


def test_a_job_scheduled_by_a_running_action_wakes_its_worker():
    """A job's children wake its own worker in the process: here the worker polls once a minute and
    PostgreSQL sends no NOTIFY for them, yet the child runs while the action that scheduled it waits."""
    CHILD_RAN.clear()
    job_id = scheduler.run_after(0, schedule_and_wait_for_the_child, {})
    with WorkerThread(concurrency=2, crons=False, poll_interval=60):
        deadline = time.monotonic() + 20
        while Jobs.get(pk=job_id).state != State.SUCCESS and time.monotonic() < deadline:
            time.sleep(0.05)
    assert Jobs.get(pk=job_id).result is True
    assert Jobs.get(name=mark_child_ran.name).parent_id == job_id


def test_only_jobs_without_a_parent_notify_the_workers(vendor):
    """Scheduling from inside a job sends no NOTIFY: at commit, NOTIFY takes a database-wide lock held
    through the commit's flush, so every scheduling mutation waited for all the others' commits."""
    if vendor != "postgresql":
        pytest.skip("LISTEN / NOTIFY are PostgreSQL's")
    listener = connections.create_connection(DEFAULT_DB_ALIAS)
    try:
        listener.set_autocommit(True)
        with listener.cursor() as cursor:
            cursor.execute("LISTEN scheduled_actions")
        parent = JobInfo(scheduler.run_after(60, f.bump, {"name": "p"}), f.bump.name, 1, timezone.now(), "mutation")
        assert _notices(listener) == 1  # the parent, scheduled from outside any job
        Scheduler(parent=parent).run_after(0, f.bump, {"name": "child"})
        Scheduler(parent=parent).run_many(f.bump, [{"name": "a"}, {"name": "b"}])
        assert _notices(listener) == 0
        scheduler.run_many(f.bump, [{"name": "c"}, {"name": "d"}])
        assert _notices(listener) == 1
    finally:
        listener.close()


def _notices(listener) -> int:
    return len(list(listener.connection.notifies(timeout=0.5)))
