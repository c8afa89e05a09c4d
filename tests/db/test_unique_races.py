"""A mutation that loses a unique-key race is retried, not failed (issue 15, item 1).

Under serializable isolation, a mutation that read "no such row" and then inserts one that a concurrent
transaction committed meanwhile raises a unique violation on PostgreSQL (its snapshot cannot see that
row), where MariaDB's locking reads deadlock (retried) and SQLite has one writer. The repeat sees the
committed row. A duplicate that is still there when retried is the application's error and propagates.
"""

from __future__ import annotations

import threading

import pytest
from django.core.management import call_command
from django.db import IntegrityError, connection
from patterns.functions.payments import process_payment
from patterns.models import Payment

from django_scheduled_actions import internal_mutation, run_mutation, scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import functions as f
from tests.app.models import Counter
from tests.db.test_idempotency import race

pytestmark = pytest.mark.django_db(transaction=True)
RACERS = 8


class Rendezvous:
    """The first ``parties`` bodies to arrive wait here for each other, so that all of them have read
    before any inserts; later runs (the retries) pass straight through. On SQLite, whose mutations take
    the one write lock at their start, bodies cannot overlap and nobody waits."""

    def __init__(self, parties: int):
        self.barrier = threading.Barrier(parties, timeout=30)  # a timeout only so a broken test fails
        self.arrived = 0
        self.lock = threading.Lock()

    def meet(self) -> None:
        with self.lock:
            self.arrived += 1
            first_round = self.arrived <= self.barrier.parties
        if first_round and connection.vendor != "sqlite":
            self.barrier.wait()


rendezvous = Rendezvous(RACERS)


@internal_mutation
def pay_once(ctx, key: str) -> int:
    """The guide's Pattern 4 on a unique key, all racers reading before any of them inserts."""
    existing = Counter.objects.filter(name=key).first()
    rendezvous.meet()
    if existing:
        return existing.pk
    return Counter.objects.create(name=key).pk


@internal_mutation
def create_counter(ctx, name: str) -> int:
    """Inserts without looking first: a duplicate is the caller's mistake, whatever the timing."""
    return Counter.objects.create(name=name).pk


@pytest.fixture(autouse=True)
def _fresh_rendezvous():
    global rendezvous
    rendezvous = Rendezvous(RACERS)


def test_callers_of_the_guides_idempotent_payment_racing_on_one_key_all_get_the_one_payment():
    args = {"idempotency_key": "pay-race", "amount_cents": 500, "customer_id": "cus_1"}
    results = race(RACERS, lambda: run_mutation(process_payment, args))
    assert len(set(results)) == 1 and isinstance(results[0], int), results
    assert list(Payment.objects.values_list("pk", flat=True)) == results[:1]
    assert ScheduledFunction.objects.count() == 1, "one payment, one charge scheduled"


def test_get_or_create_racing_on_a_fresh_key_loses_no_increment():
    results = race(RACERS, lambda: run_mutation(f.bump, {"name": "fresh"}))
    assert sorted(results) == list(range(1, RACERS + 1)), results
    assert Counter.objects.get(name="fresh").value == RACERS


def test_a_duplicate_that_persists_on_retry_raises_integrity_error():
    first = run_mutation(create_counter, {"name": "taken"})
    with pytest.raises(IntegrityError):
        run_mutation(create_counter, {"name": "taken"})
    assert list(Counter.objects.values_list("pk", flat=True)) == [first]


def test_scheduled_mutations_racing_on_one_key_in_a_worker_all_succeed_with_the_one_row():
    ids = [scheduler.run_after(0, pay_once, {"key": "job-race"}) for _ in range(RACERS)]
    # each mutation runs whole on one of the worker's connections: RACERS of them at once need that many
    # beside the heartbeat's (and the listener's)
    call_command("runworker", burst=True, concurrency=RACERS, db_connections=RACERS + 2)
    jobs = ScheduledFunction.objects.in_bulk(ids)
    assert {(job.state, job.error) for job in jobs.values()} == {(State.SUCCESS, "")}
    assert {job.result for job in jobs.values()} == {Counter.objects.get(name="job-race").pk}


def test_a_scheduled_mutation_inserting_a_duplicate_fails_with_the_integrity_error():
    run_mutation(create_counter, {"name": "taken"})
    job_id = scheduler.run_after(0, create_counter, {"name": "taken"})
    call_command("runworker", burst=True)
    job = ScheduledFunction.objects.get(pk=job_id)
    assert job.state == State.FAILED and "IntegrityError" in job.error
    assert Counter.objects.filter(name="taken").count() == 1
