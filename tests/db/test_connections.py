"""The worker's connections (worker/connections.py): lanes and the shared connection threads draw on one
budget; a share the shared threads grew into is given back when an executor thread wants its lane."""

from __future__ import annotations

import threading

import pytest

from django_scheduled_actions.worker.connections import Connections

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_lane_lent_to_the_shared_threads_is_given_back_when_an_executor_thread_wants_it():
    pool = Connections(3, "default", executors=1)  # a budget of 3: at most one lane
    release, busy = threading.Event(), threading.Barrier(4)

    def hold() -> str:
        busy.wait(10)
        release.wait(10)
        return threading.current_thread().name

    # three callers without lanes: the shared threads grow into the whole budget, the lane's share too
    holders = [threading.Thread(target=pool.call, args=(hold,)) for _ in range(3)]
    for thread in holders:
        thread.start()
    busy.wait(10)
    assert len(pool._threads) == 3
    ran_on: list[str] = []

    def executor_thread() -> None:
        with pool.lane():
            ran_on.append(pool.call(lambda: threading.current_thread().name))  # lane asked back: shared
            ran_on.append(pool.call(lambda: threading.current_thread().name))  # the lane, given back

    executor = threading.Thread(target=executor_thread, name="executor")
    executor.start()
    release.set()
    executor.join(10)
    for thread in holders:
        thread.join(10)
    try:
        assert not executor.is_alive()
        assert ran_on[0].startswith("scheduled-actions-db_"), ran_on
        assert ran_on[1] == "executor", ran_on
        assert len(pool._threads) == 2  # one left for the lane: 2 shared + 1 lane = the budget
    finally:
        pool.close()


def test_an_executor_thread_takes_a_lane_while_the_budget_has_one():
    pool = Connections(4, "default", executors=2)
    names: list[str] = []

    def executor_thread(i: int) -> None:
        with pool.lane():
            names.append(pool.call(lambda: threading.current_thread().name))

    threads = [threading.Thread(target=executor_thread, args=(i,), name=f"executor-{i}") for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    try:
        assert sorted(names) == ["executor-0", "executor-1"]  # each ran its work itself
        assert pool._threads == []  # no shared thread was needed
    finally:
        pool.close()
