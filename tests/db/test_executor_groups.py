"""Jobs that share a write (executor.py): mutations waiting together run in one transaction, quick actions
are started in groups. What each job gets must not change: exactly once, at most once, its own outcome."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from django_scheduled_actions import internal_action, internal_mutation, scheduler
from django_scheduled_actions.models import ScheduledFunction, State
from django_scheduled_actions.store.leases import claim
from django_scheduled_actions.worker import actions, mutations
from django_scheduled_actions.worker.executor import Executor
from tests.app import functions as f
from tests.app.models import Effect, Note

pytestmark = pytest.mark.django_db(transaction=True)
SLOW = 0.3  # seconds a slow action takes
Jobs = ScheduledFunction.objects
bodies: list[str] = []  # every run of the bodies below, committed or rolled back


@internal_mutation
def counted_failure(ctx, text: str) -> None:
    bodies.append(text)
    Note.objects.create(text=text)
    raise ValueError(f"{text} fails")


@internal_action
def counted_action(ctx, name: str, seconds: float = 0.0) -> str:
    bodies.append(name)
    time.sleep(seconds)
    return name


@pytest.fixture(autouse=True)
def _clear_bodies():
    bodies.clear()


@pytest.fixture(autouse=True)
def _time_limits_a_loaded_machine_keeps(monkeypatch):
    """A group of mutations closes after ``MUTATION_BATCH_SECONDS`` (20 ms) and actions are quick under
    ``QUICK_ACTION_SECONDS`` (5 ms): on a loaded machine no-op bodies can take longer, and which jobs share
    a write is what these tests check. Here a no-op is quick and a slow action sleeps well past it."""
    monkeypatch.setattr(mutations, "MUTATION_BATCH_SECONDS", 60.0)
    monkeypatch.setattr(actions, "QUICK_ACTION_SECONDS", SLOW / 3)


def claimed(*job_ids: int) -> list[tuple[str, ScheduledFunction]]:
    """Claim ``job_ids``: (token, job) in that order, as the worker's queue holds them."""
    token, jobs = claim("w", len(job_ids), timezone.now(), timedelta(minutes=5))
    by_id = {job.pk: job for job in jobs}
    assert sorted(by_id) == sorted(job_ids)
    return [(token, by_id[pk]) for pk in job_ids]


def run_claimed(*job_ids: int, **options) -> list[int]:
    return drain(claimed(*job_ids), **options)


def drain(waiting: list[tuple[str, ScheduledFunction]], **options) -> list[int]:
    """Run claimed jobs as an executor thread does: take one, let the executor pull the ones waiting, go
    on with what it hands back. Returns the ids it reported done, in order."""
    done: list[int] = []
    executor = Executor("w", done=lambda job: done.append(job.pk), **options)
    item = waiting.pop(0)
    while item is not None:
        item = executor.run(item[1], item[0], pull=lambda: waiting.pop(0) if waiting else None) or (
            waiting.pop(0) if waiting else None
        )
    return done


def test_waiting_mutations_commit_together_and_each_takes_effect_once():
    ids = [scheduler.run_after(0, f.record, {"key": f"k{i}"}) for i in range(3)]
    assert run_claimed(*ids) == ids
    rows = Jobs.in_bulk(ids)
    assert {(r.state, r.attempts, r.result["key"]) for r in rows.values()} == {
        (State.SUCCESS, 1, "k0"),
        (State.SUCCESS, 1, "k1"),
        (State.SUCCESS, 1, "k2"),
    }
    assert len({r.completed_time for r in rows.values()}) == 1, "one transaction completes all three"
    assert sorted(Effect.objects.values_list("key", flat=True)) == ["k0", "k1", "k2"]


def test_a_failing_body_in_a_shared_transaction_fails_alone_and_is_not_run_again():
    first = scheduler.run_after(0, f.record, {"key": "before"})
    failing = scheduler.run_after(0, counted_failure, {"text": "x"})
    last = scheduler.run_after(0, f.record, {"key": "after"})
    assert run_claimed(first, failing, last) == [first, failing, last]
    rows = Jobs.in_bulk([first, failing, last])
    assert (rows[first].state, rows[last].state) == (State.SUCCESS, State.SUCCESS)
    assert rows[failing].state == State.FAILED and "x fails" in rows[failing].error
    assert rows[failing].attempts == 1
    assert bodies == ["x"], "the failing body ran once"
    assert not Note.objects.exists(), "the failing body's write was rolled back"
    assert sorted(Effect.objects.values_list("key", flat=True)) == ["after", "before"], "each took effect once"


def test_a_claim_lost_before_its_shared_transaction_commits_rolls_back_only_that_job():
    ids = [scheduler.run_after(0, f.record, {"key": f"k{i}"}) for i in range(3)]
    (token, first), *waiting = claimed(*ids)
    Jobs.filter(pk=ids[1]).update(token="another-claim")  # as if its lease had been recovered and re-claimed
    assert Executor("w").run(first, token, pull=lambda: waiting.pop(0) if waiting else None) is None
    assert not waiting
    rows = Jobs.in_bulk(ids)
    assert [rows[pk].state for pk in ids] == [State.SUCCESS, State.IN_PROGRESS, State.SUCCESS]
    assert rows[ids[1]].token == "another-claim" and rows[ids[1]].attempts == 0
    assert sorted(Effect.objects.values_list("key", flat=True)) == ["k0", "k2"], "the lost job's body left nothing"


def test_a_shared_transaction_stops_at_the_first_job_of_another_kind():
    mutation = scheduler.run_after(0, f.record, {"key": "m"})
    action = scheduler.run_after(0, f.noop_action, {"i": 1})
    later = scheduler.run_after(0, f.record, {"key": "later"})
    (token, first), *waiting = claimed(mutation, action, later)
    done: list[int] = []
    leftover = Executor("w", done=lambda job: done.append(job.pk)).run(
        first, token, pull=lambda: waiting.pop(0) if waiting else None
    )
    assert done == [mutation]
    assert leftover[1].pk == action, "the action is handed back to be run next, unstarted"
    assert Jobs.get(pk=action).started_at is None
    assert Jobs.get(pk=later).state == State.IN_PROGRESS, "nothing after the action was taken"


def test_quick_actions_are_started_in_groups_and_each_success_is_written_with_the_next_start():
    ids = [scheduler.run_after(0, counted_action, {"name": f"a{i}"}) for i in range(5)]
    assert run_claimed(*ids) == ids
    rows = [Jobs.get(pk=pk) for pk in ids]
    assert [(r.state, r.result, r.attempts) for r in rows] == [(State.SUCCESS, f"a{i}", 1) for i in range(5)]
    assert bodies == [f"a{i}" for i in range(5)]
    assert len({r.started_at for r in rows[1:]}) == 1, "the four waiting quick actions started in one write"
    assert rows[0].completed_time == rows[1].started_at, "the first success was written with their start"
    assert rows[0].started_at < rows[1].started_at


def test_after_a_slow_action_the_next_one_starts_alone():
    slow = scheduler.run_after(0, counted_action, {"name": "slow", "seconds": SLOW})
    ids = [scheduler.run_after(0, counted_action, {"name": f"a{i}"}) for i in range(3)]
    run_claimed(slow, *ids)
    started = [Jobs.get(pk=pk).started_at for pk in ids]
    assert started[0] < started[1] == started[2], "alone after the slow one, then together after a quick one"


def test_the_action_group_size_is_the_workers_option():
    ids = [scheduler.run_after(0, counted_action, {"name": f"a{i}"}) for i in range(4)]
    assert run_claimed(*ids, action_group=1) == ids
    assert len({Jobs.get(pk=pk).started_at for pk in ids}) == 4, "one start per write"


def test_an_action_canceled_after_its_claim_is_never_started():
    ids = [scheduler.run_after(0, counted_action, {"name": f"a{i}"}) for i in range(4)]
    waiting = claimed(*ids)
    scheduler.cancel(ids[0])
    scheduler.cancel(ids[2])
    assert sorted(drain(waiting)) == sorted(ids)
    assert bodies == ["a1", "a3"], "the canceled ones never ran"
    rows = Jobs.in_bulk(ids)
    assert [rows[pk].state for pk in ids] == [State.CANCELED, State.SUCCESS, State.CANCELED, State.SUCCESS]
    assert (rows[ids[0]].started_at, rows[ids[0]].attempts) == (None, 0)
    assert (rows[ids[2]].started_at, rows[ids[2]].attempts) == (None, 0)
