"""Leases are judged on the database's clock (DESIGN section 11, issue 23): a worker whose clock is two
minutes off takes no live worker's jobs and loses none of its own; two claims of one job never share a
transaction, and a body is never failed for what another claim's body did."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.utils import timezone

from django_scheduled_actions import internal_action, internal_mutation, scheduler
from django_scheduled_actions.models import ScheduledFunction, State, WorkerProcess
from django_scheduled_actions.store import dbclock
from django_scheduled_actions.store.leases import claim, register_worker
from django_scheduled_actions.worker.maintenance import recover_expired
from django_scheduled_actions.worker.worker import Worker
from tests.app.models import Counter
from tests.db.test_executor_groups import claimed, drain
from tests.support import wait_until
from tests.support.threads import WorkerThread

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects
SKEW = timedelta(seconds=120)
release = threading.Event()


@internal_mutation
def create_counter(ctx, name: str) -> str:
    """Inserts a unique row: a second run in one transaction raises IntegrityError."""
    Counter.objects.create(name=name)
    return name


@internal_action
def held_action(ctx) -> str:
    release.wait(30)
    return "done"


@pytest.fixture(autouse=True)
def _release():
    release.clear()
    yield
    release.set()


def skewed(offset: timedelta):
    return lambda: timezone.now() + offset


def test_the_database_clock_is_the_database_servers_time():
    before = timezone.now()
    now = dbclock.now()
    assert timezone.is_aware(now) and before - timedelta(seconds=5) < now < timezone.now() + timedelta(seconds=5)


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_the_workers_clock_is_corrected_to_the_databases_and_holds_steady(offset, caplog):
    clock = dbclock.Corrected("default", local=skewed(offset))
    assert abs(clock() - dbclock.now()) > SKEW / 2  # not measured yet: the machine's clock
    clock.measure()
    assert abs(clock() - dbclock.now()) < timedelta(seconds=1)
    assert "clock is 120.0s" in caplog.text and ("ahead" if offset > timedelta(0) else "behind") in caplog.text
    kept = clock.offset
    clock.local = skewed(offset + dbclock.Corrected.STEADY / 2)  # jitter: the offset kept stays
    clock.measure()
    assert clock.offset == kept
    clock.local = skewed(offset + timedelta(seconds=5))  # the machine's clock stepped: followed
    clock.measure()
    assert abs(clock() - dbclock.now()) < timedelta(seconds=1)


def test_a_worker_writes_the_databases_time_whatever_its_machines_clock_says():
    job_id = scheduler.run_after(0, create_counter, {"name": "times"})
    worker = Worker(burst=True, crons=False, poll_interval=0.05)
    worker.corrected.local = skewed(SKEW)
    worker.run()
    job = Jobs.get(pk=job_id)
    database_now = dbclock.now()
    assert job.state == State.SUCCESS
    assert job.started_at <= job.completed_time <= database_now + timedelta(seconds=1)
    assert database_now - job.completed_time < timedelta(seconds=30)


def test_a_worker_whose_clock_runs_ahead_takes_no_live_workers_jobs():
    job_id = scheduler.run_after(0, create_counter, {"name": "alive's"})
    lease = timedelta(seconds=60)
    register_worker("alive", hostname="h", pid=1, queues=None, concurrency=1, now=timezone.now(), lease=lease)
    token, _ = claim("alive", 1, None, lease)
    Worker(burst=True, crons=False, clock=skewed(SKEW), poll_interval=0.05).run()  # recovers, claims, runs
    job = Jobs.get(pk=job_id)
    assert (job.state, job.worker_id, job.token, job.error) == (State.IN_PROGRESS, "alive", token, "")
    assert not Counter.objects.exists()


@pytest.mark.parametrize("offset", [SKEW, -SKEW], ids=["ahead", "behind"])
def test_a_worker_whose_clock_is_off_runs_due_jobs_and_keeps_its_leases(offset):
    job_id = scheduler.run_after(0, held_action, {})  # due now on the database's clock
    with WorkerThread(concurrency=1, crons=False, clock=skewed(offset), worker_id="skewed") as worker:
        wait_until(lambda: Jobs.filter(pk=job_id, started_at__isnull=False).exists(), 10, "the action to start")
        assert recover_expired() == 0  # judged on the database's clock: the worker and its claim are alive
        assert WorkerProcess.objects.alive(dbclock.now()).filter(worker_id=worker.worker_id).exists()
        release.set()
        wait_until(lambda: Jobs.filter(pk=job_id, state=State.SUCCESS).exists(), 10, "the action to finish")
    assert Jobs.get(pk=job_id).attempts == 1


def test_a_second_claim_of_a_job_never_shares_the_first_claims_transaction():
    """Reported: a recovery took a job whose first claim still waited in the worker's queue, and the same
    worker claimed it again; both claims ran in one transaction, the second's insert hit the first's row,
    and the job was failed with IntegrityError and no effect."""
    job_id = scheduler.run_after(0, create_counter, {"name": "once"})
    first = claimed(job_id)
    Jobs.filter(pk=job_id).unclaim()  # recovered while it waited
    second = claimed(job_id)
    drain(first + second)
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts, job.error) == (State.SUCCESS, 1, "")
    assert list(Counter.objects.values_list("name", flat=True)) == ["once"]


def test_a_body_is_not_failed_for_what_a_lost_claims_body_did_before_it():
    stale = scheduler.run_after(0, create_counter, {"name": "shared"})
    other = scheduler.run_after(0, create_counter, {"name": "shared"})
    waiting = claimed(stale, other)
    Jobs.filter(pk=stale).update(token="taken-by-another-worker")  # its claim lost while it waited
    drain(waiting)
    job = Jobs.get(pk=other)
    assert (job.state, job.attempts, job.error) == (State.SUCCESS, 1, "")
    assert Counter.objects.count() == 1
