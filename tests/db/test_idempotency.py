"""Idempotency keys (DESIGN §6): scheduling once, calls that return the stored result, races."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection, transaction
from django.utils import timezone

from django_scheduled_actions import IdempotencyKeyInProgress, IdempotencyKeyReused, run_action, run_mutation, scheduler
from django_scheduled_actions.models import IdempotencyKey, ScheduledFunction
from django_scheduled_actions.worker.maintenance import prune
from tests.app import functions as f
from tests.app.models import Counter
from tests.support import wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def race(n, call):
    """Run ``call`` in ``n`` threads released together; returns results (or exceptions) in thread order."""
    barrier = threading.Barrier(n)
    results = [None] * n

    def run(i):
        try:
            barrier.wait()
            results[i] = call()
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return results


def test_eight_threads_scheduling_with_one_key_make_one_job():
    ids = race(8, lambda: scheduler.run_after(0, f.bump, {"name": "x"}, idempotency_key="race"))
    assert all(isinstance(i, int) for i in ids), ids
    assert len(set(ids)) == 1
    assert list(ScheduledFunction.objects.values_list("pk", flat=True)) == ids[:1]
    assert IdempotencyKey.objects.get().job_id == ids[0]


def test_mutation_with_a_key_runs_once_and_returns_the_stored_result():
    assert run_mutation(f.bump, {"name": "m"}, idempotency_key="m-1") == 1
    assert run_mutation(f.bump, {"name": "m"}, idempotency_key="m-1") == 1
    assert run_mutation(f.bump, {"name": "m"}, idempotency_key="m-2") == 2
    assert Counter.objects.get(name="m").value == 2


def test_mutation_key_is_stored_with_its_transaction():
    with pytest.raises(RuntimeError), transaction.atomic():
        run_mutation(f.bump, {"name": "m"}, idempotency_key="k")
        raise RuntimeError
    assert not IdempotencyKey.objects.exists()
    assert run_mutation(f.bump, {"name": "m"}, idempotency_key="k") == 1


def test_failed_mutation_keeps_no_key():
    with pytest.raises(ValueError):
        run_mutation(f.write_then_fail, {"text": "x"}, idempotency_key="k")
    assert not IdempotencyKey.objects.exists()


def test_racing_mutations_with_one_key_run_once():
    results = race(8, lambda: run_mutation(f.bump, {"name": "r"}, idempotency_key="same"))
    assert results == [1] * 8, results
    assert Counter.objects.get(name="r").value == 1


def test_action_with_a_key_runs_once():
    assert run_action(f.charge_once, {"name": "a"}, idempotency_key="pay-1") == "charge-1"
    assert run_action(f.charge_once, {"name": "a"}, idempotency_key="pay-1") == "charge-1"
    assert Counter.objects.get(name="a").value == 1


def test_failed_action_releases_its_key():
    with pytest.raises(ConnectionError):
        run_action(f.charge_once, {"name": "a", "fail": True}, idempotency_key="pay-1")
    assert not IdempotencyKey.objects.exists()
    assert run_action(f.charge_once, {"name": "a"}, idempotency_key="pay-1") == "charge-2"


def test_repeat_while_the_action_runs_says_in_progress():
    started = threading.Event()
    results = []

    def first():
        started.set()
        try:
            results.append(run_action(f.wait_for_release, {"name": "first", "seconds": 1.0}, idempotency_key="slow"))
        finally:
            connection.close()

    thread = threading.Thread(target=first)
    thread.start()
    started.wait()
    wait_until(lambda: IdempotencyKey.objects.filter(key="slow").exists(), message="the first call's key")
    with pytest.raises(IdempotencyKeyInProgress, match="still running"):
        run_action(f.wait_for_release, {"name": "first", "seconds": 1.0}, idempotency_key="slow")
    thread.join(10)
    assert results == ["first"]
    assert run_action(f.wait_for_release, {"name": "first", "seconds": 1.0}, idempotency_key="slow") == "first"


def test_a_key_reused_with_other_arguments_raises_and_runs_nothing():
    assert run_mutation(f.bump, {"name": "m"}, idempotency_key="m-1") == 1
    with pytest.raises(IdempotencyKeyReused, match="'m-1' .* tests.app.functions:bump with other arguments"):
        run_mutation(f.bump, {"name": "other"}, idempotency_key="m-1")
    with pytest.raises(IdempotencyKeyReused):
        run_mutation(f.bump, {"name": "m", "by": 1}, idempotency_key="m-1")  # as sent: a default given counts
    assert list(Counter.objects.values_list("name", "value")) == [("m", 1)]
    assert run_mutation(f.bump, {"name": "m"}, idempotency_key="m-1") == 1, "the same arguments: stored result"


def test_an_action_key_reused_with_other_arguments_raises_and_runs_nothing():
    assert run_action(f.charge_once, {"name": "a"}, idempotency_key="pay-1") == "charge-1"
    with pytest.raises(IdempotencyKeyReused):
        run_action(f.charge_once, {"name": "b"}, idempotency_key="pay-1")
    assert list(Counter.objects.values_list("name", "value")) == [("a", 1)]
    assert run_action(f.charge_once, {"name": "a"}, idempotency_key="pay-1") == "charge-1"


def test_a_key_belongs_to_one_function():
    run_mutation(f.bump, {"name": "x"}, idempotency_key="shared")
    with pytest.raises(ValueError, match="held by a call of tests.app.functions:bump"):
        run_mutation(f.record, {"key": "x"}, idempotency_key="shared")
    with pytest.raises(ValueError, match="idempotency_key must be a non-empty string"):
        run_mutation(f.bump, {"name": "x"}, idempotency_key="")


def test_expired_keys_run_again_and_are_pruned(settings):
    run_mutation(f.bump, {"name": "e"}, idempotency_key="e")
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    assert run_mutation(f.bump, {"name": "e"}, idempotency_key="e") == 2
    IdempotencyKey.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    prune(timezone.now(), timedelta(days=7))
    assert not IdempotencyKey.objects.exists()
