"""The worker's logic without a database: claims sized, grouped and recorded against an in-memory store
(tests/support/memory_store.py), the main loop stepped by hand (``worker.step()``) with a fixed clock; no
executor thread is started and nothing sleeps. The database tiers (tests/db, tests/process) keep every
guarantee test; these pin down the decisions between the writes."""

from __future__ import annotations

import queue
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

from django_scheduled_actions import RetryPolicy, internal_action
from django_scheduled_actions.models import State
from django_scheduled_actions.worker import actions
from django_scheduled_actions.worker.executor import Executor
from django_scheduled_actions.worker.ledger import Ledger
from django_scheduled_actions.worker.worker import Worker
from tests.support.memory_store import MemoryStore

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLL = 5.0


@internal_action(name="tests.unit.quick")
def quick(ctx) -> None:
    return None


@internal_action(name="tests.unit.failing", retry=RetryPolicy(max_attempts=2, initial_backoff=10, jitter=False))
def failing(ctx) -> None:
    raise RuntimeError("the provider said no")


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(lambda: NOW)


def stepped(store: MemoryStore, **options) -> Worker:
    return Worker(store=store, clock=lambda: NOW, crons=False, poll_interval=POLL, **options)


def claims_of(store: MemoryStore) -> list[int]:
    return [asked for method, asked in store.writes if method == "claim"]


def take(worker: Worker, n: int) -> None:
    """What n executor threads would do: take n waiting jobs and finish them."""
    for _ in range(n):
        worker.claims.jobs.get_nowait()
        worker.claims.job_done()


# --- claim sizing ---


def test_a_claim_asks_for_a_job_per_thread_plus_as_many_to_hold_then_waits_for_the_queue_to_run_down(store):
    for _ in range(100):
        store.add(quick.name)
    worker = stepped(store, concurrency=4)
    assert worker.step() == POLL  # a full claim: more may be due
    assert claims_of(store) == [8] and worker.claims.jobs.qsize() == 8
    assert worker.step() == POLL
    assert claims_of(store) == [8], "claimed again while more than half the prefetch was waiting"
    take(worker, 6)  # two left waiting, half the prefetch of 4: claim what tops the claimed up to 8 again
    worker.step()
    assert claims_of(store) == [8, 6] and worker.claims.inflight == 8


def test_the_prefetch_follows_the_rate_jobs_finished_at(store):
    claims = stepped(store, concurrency=4).claims
    claims._rate_mark, claims.completed_total = (100.0, 0), 1000
    claims.size(101.0)  # 1,000 jobs a second: 50 ms of work is 50 jobs
    assert claims.prefetch == 50
    claims.completed_total = 1000 + 10_000
    claims.size(102.0)
    assert claims.prefetch == 128  # at most PREFETCH_MAX
    claims.size(103.0)  # nothing finished for a second: long jobs, or idle
    assert claims.prefetch == 4  # one per thread


def test_max_jobs_caps_the_claims(store):
    for _ in range(20):
        store.add(quick.name)
    worker = stepped(store, concurrency=4, max_jobs=5)
    worker.step()
    assert claims_of(store) == [5]
    take(worker, 5)
    assert worker.step() is None  # done: every job it may claim has finished


# --- waiting ---


def test_an_idle_worker_sleeps_until_the_next_job_falls_due_by_the_stores_clock(store):
    store.add(quick.name, due_in=2.0)
    worker = stepped(store)
    assert worker.step() == 2.0  # the claim came back short: wait for the next due time, not the poll
    assert worker.claims.maybe_due is False
    store.jobs.clear()
    assert worker.step() == POLL  # nothing pending: the poll interval


def test_a_burst_worker_is_done_when_a_claim_finds_nothing_and_nothing_runs(store):
    worker = stepped(store, burst=True)
    assert worker.step() is None
    store.add(quick.name)
    worker = stepped(store, burst=True)
    assert worker.step() == POLL and worker.claims.inflight == 1  # claimed one: not done until it finished


def test_a_failed_claim_is_retried_with_backoff_and_what_it_may_have_taken_is_released(store):
    store.add(quick.name)
    store.fail_next("claim", 3)
    worker = stepped(store)
    assert [worker.step() for _ in range(3)] == [0.05, 0.1, 0.2]
    assert [m for m, _ in store.writes].count("release_claim") == 2  # each released by the next pass's upkeep
    assert worker.step() == POLL and worker.claims.inflight == 1  # the database is back: claimed, delay over
    assert worker.claims.failed == [] and worker.claims.delay == 0.0


# --- grouping (executor) ---


def run_all(store: MemoryStore, executor: Executor, jobs: list) -> None:
    token = jobs[0].token
    waiting = [(token, job) for job in jobs[1:]]
    assert executor.run(jobs[0], token, pull=lambda: waiting.pop(0) if waiting else None) is None


def claimed(store: MemoryStore, n: int, name: str = quick.name) -> list:
    for _ in range(n):
        store.add(name)
    return store.claim("w", n, timedelta(seconds=30), None, "t", 0, frozenset())


def test_quick_actions_start_in_groups_whose_successes_and_next_starts_are_one_write(store):
    jobs = claimed(store, 20)
    done = []
    run_all(store, Executor("w", store=store, clock=lambda: NOW, done=lambda job: done.append(job.pk)), jobs)
    assert [what for method, what in store.writes if method == "settle_actions"] == [
        ([], [1]),
        ([1], list(range(2, 10))),
        (list(range(2, 10)), list(range(10, 18))),
        (list(range(10, 18)), [18, 19, 20]),
        ([18, 19, 20], []),
    ]
    assert sorted(done) == list(range(1, 21)) and {store.state(j.pk) for j in jobs} == {State.SUCCESS}


def test_slow_actions_start_one_at_a_time(store, monkeypatch):
    monkeypatch.setattr(actions, "QUICK_ACTION_SECONDS", -1.0)  # no body counts as quick
    jobs = claimed(store, 3)
    run_all(store, Executor("w", store=store, clock=lambda: NOW), jobs)
    assert [what for method, what in store.writes if method == "settle_actions"] == [
        ([], [1]),
        ([1], [2]),
        ([2], [3]),
        ([3], []),
    ]


def test_a_failed_action_with_retries_left_is_scheduled_again_after_its_backoff(store):
    [job] = claimed(store, 1, failing.name)
    store.jobs[job.pk].max_attempts = job.max_attempts = 2
    Executor("w", store=store, clock=lambda: NOW).run(job, job.token)
    row = store.jobs[job.pk]
    assert (row.state, row.scheduled_time, row.attempts) == (State.PENDING, NOW + timedelta(seconds=10), 1)
    assert "the provider said no" in row.error


def test_a_write_that_loses_its_connection_is_repeated_on_a_new_one(store):
    jobs = claimed(store, 2)
    store.fail_next("settle_actions")
    run_all(store, Executor("w", store=store, clock=lambda: NOW), jobs)
    assert ("reconnect", None) in store.writes
    assert {store.state(j.pk) for j in jobs} == {State.SUCCESS}


# --- the ledger ---


class CountingQueue(queue.Queue):
    def __init__(self):
        super().__init__()
        self.puts = 0

    def put(self, item, *args, **kwargs):
        super().put(item, *args, **kwargs)
        self.puts += 1


def test_the_ledger_writes_what_threads_hand_in_during_a_write_as_one_commit():
    written, entered, release = [], threading.Event(), threading.Event()

    def write(outcomes, starts):
        written.append(sorted(job for _token, job in starts))
        if len(written) == 1:  # the first write is slow: the others arrive meanwhile
            entered.set()
            release.wait(10)
        return {job for _token, job in starts}, None

    ledger = Ledger(write, "default")
    ledger.requests = CountingQueue()
    ledger.start()
    results: dict[int, tuple] = {}

    def settle(n: int) -> None:
        results[n] = ledger.settle([], [("t", n)])

    threads = [threading.Thread(target=settle, args=(1,))]
    threads[0].start()
    assert entered.wait(10)
    threads += [threading.Thread(target=settle, args=(n,)) for n in (2, 3)]
    for thread in threads[1:]:
        thread.start()
    deadline = time.monotonic() + 10
    while ledger.requests.puts < 2 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for thread in threads:
        thread.join(10)
    ledger.stop()
    ledger.join(10)
    assert written == [[1], [2, 3]]  # the first on its caller's connection, then the two that waited, together
    assert results == {1: ({1}, None), 2: ({2, 3}, None), 3: ({2, 3}, None)}
