"""``async def`` actions (DESIGN section 11): awaited ctx calls, run from sync code, run by the worker on its
event loop with timeouts that cancel the coroutine, retries and idempotency keys; and the decorators refuse
what cannot run. The same bodies on SQLite, PostgreSQL and MariaDB."""

from __future__ import annotations

import logging
import threading
import time

import pytest

from django_scheduled_actions import (
    IdempotencyKeyReused,
    ReturnValidationError,
    internal_action,
    internal_mutation,
    internal_query,
    run_action,
    scheduler,
    signals,
)
from django_scheduled_actions.models import ScheduledFunction, State, WorkerProcess
from django_scheduled_actions.testing import run_due_jobs
from tests.app import async_functions as af
from tests.app.models import Counter
from tests.support import wait_until
from tests.support.threads import WorkerThread

pytestmark = pytest.mark.django_db(transaction=True)


def count(name: str) -> int:
    return Counter.objects.filter(name=name).values_list("value", flat=True).first() or 0


# --- what cannot run is refused at once ---


@pytest.mark.parametrize("decorator, kind", [(internal_query, "query"), (internal_mutation, "mutation")])
def test_an_async_query_or_mutation_is_refused_when_decorated(decorator, kind):
    async def body(ctx) -> None: ...

    with pytest.raises(TypeError, match=f"a {kind} cannot be async def"):
        decorator(name=f"tests.refused.async_{kind}")(body)


def test_a_function_without_a_context_parameter_is_refused():
    async def no_params() -> None: ...

    def first_is_an_argument(order_id: int) -> None: ...

    with pytest.raises(TypeError, match="takes the context as its first parameter"):
        internal_action(name="tests.refused.none")(no_params)
    with pytest.raises(TypeError, match="first parameter 'order_id' is annotated"):
        internal_action(name="tests.refused.int")(first_is_an_argument)


# --- run from sync code ---


def test_run_action_runs_an_async_action_to_completion_with_awaited_ctx_calls():
    assert run_action(af.fetch_and_record, {"name": "sync-caller"}) == 1
    assert count("sync-caller") == 1
    [later] = ScheduledFunction.objects.filter(name=af.note_later.name)
    assert later.args == {"text": "sync-caller:1"} and later.state == State.PENDING


def test_an_async_action_awaits_async_and_sync_actions():
    assert run_action(af.calls_other_actions, {"name": "nested"}) == [1, 2]
    assert count("nested") == 2


def test_an_async_actions_result_is_checked_against_its_annotation():
    with pytest.raises(ReturnValidationError, match="returns_the_wrong_type returned a value"):
        run_action(af.returns_the_wrong_type)


def test_an_idempotency_key_runs_an_async_action_once():
    first = run_action(af.fetch_and_record, {"name": "keyed"}, idempotency_key="async-key")
    assert run_action(af.fetch_and_record, {"name": "keyed"}, idempotency_key="async-key") == first
    assert count("keyed") == 1
    with pytest.raises(IdempotencyKeyReused):
        run_action(af.fetch_and_record, {"name": "other"}, idempotency_key="async-key")


def test_the_test_helper_runs_due_async_actions():
    job_id = scheduler.run_after(0, af.fetch_and_record, {"name": "helper"})
    run_due_jobs()
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.state, job.result, job.attempts) == (State.SUCCESS, 1, 1)


# --- the worker's event loop ---


def test_a_worker_keeps_many_async_actions_in_flight_on_few_threads():
    """One executor thread, 100 loop slots: the bodies' waits overlap (counted by the bodies themselves,
    not timed: a loaded machine slows the rest, not the overlap)."""
    af.WAITING.update(now=0, most=0)
    jobs = [scheduler.run_after(0, af.fetch_and_record, {"name": f"many{i % 5}", "wait": 1.0}) for i in range(100)]
    with WorkerThread(concurrency=1, async_concurrency=100, crons=False):
        wait_until(
            lambda: not ScheduledFunction.objects.filter(pk__in=jobs).exclude(state=State.SUCCESS).exists(),
            60,
            "the async actions to succeed",
        )
    assert sum(count(f"many{i}") for i in range(5)) == 100  # each body's mutation once
    assert af.WAITING["most"] >= 25, f"at most {af.WAITING['most']} of 100 one-second waits overlapped"
    assert set(ScheduledFunction.objects.filter(pk__in=jobs).values_list("attempts", flat=True)) == {1}


def test_a_timeout_cancels_the_coroutine_and_fails_the_job():
    job_id = scheduler.run_after(0, af.sleeps_past_its_timeout, {"seconds": 30})
    with WorkerThread(concurrency=1, crons=False):
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).state == State.FAILED, 10, "the timeout")
    job = ScheduledFunction.objects.get(pk=job_id)
    assert "JobTimeout" in job.error and "cancelled" in job.error
    assert af.CANCELLED.count(job_id) == 1


def test_an_async_action_is_retried_per_its_policy():
    job_id = scheduler.run_after(0, af.fails_on_first_attempt, {"name": "retried"})
    with WorkerThread(concurrency=1, crons=False):
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS, 10, "the retry")
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.attempts, job.result, count("retried")) == (2, 2, 2)


def test_a_canceled_async_action_finishes_but_stays_canceled():
    job_id = scheduler.run_after(0, af.fetch_and_record, {"name": "canceled", "wait": 1.0})
    with WorkerThread(concurrency=1, crons=False):
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).started_at is not None, 10, "the start")
        scheduler.cancel(job_id)
        wait_until(lambda: count("canceled") == 1, 10, "the body to finish")
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).result is not None, 10, "the late result")
    assert ScheduledFunction.objects.get(pk=job_id).state == State.CANCELED


def test_a_body_that_blocks_the_loop_is_reported_and_the_heartbeat_still_beats(settings, caplog):
    settings.SCHEDULED_ACTIONS_LEASE_SECONDS = 1.5  # a beat every half second
    job_id = scheduler.run_after(0, af.blocks_the_loop, {"seconds": 2.5})
    beats = []
    with (
        caplog.at_level(logging.WARNING, logger="django_scheduled_actions"),
        WorkerThread(concurrency=1, crons=False) as worker,
    ):
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).started_at is not None, 10, "the start")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:  # while the loop is blocked
            beats.append(WorkerProcess.objects.get(worker_id=worker.worker_id).heartbeat_at)
            time.sleep(0.2)
        wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS, 10, "the body")
    assert len(set(beats)) >= 3, f"the heartbeat stopped while the loop was blocked: {sorted(set(beats))}"
    assert f"an async action blocks the event loop job={job_id} name={af.blocks_the_loop.name}" in caplog.text


def test_a_job_started_receiver_of_an_async_action_may_use_the_orm():
    """With only the app's logging listening, an async action's ``job_started`` is sent on the event loop;
    a project's receiver may use the ORM, so then it is sent on one of the worker's connections."""
    seen: list[tuple[str, int]] = []

    def receiver(sender, job, **kwargs):
        seen.append((threading.current_thread().name, ScheduledFunction.objects.filter(pk=job.pk).count()))

    job_id = scheduler.run_after(0, af.fetch_and_record, {"name": "signalled", "wait": 0.0})
    signals.job_started.connect(receiver, weak=False)
    try:
        with WorkerThread(concurrency=1, crons=False):
            wait_until(lambda: ScheduledFunction.objects.get(pk=job_id).state == State.SUCCESS, 10, "the action")
    finally:
        signals.job_started.disconnect(receiver)
    assert len(seen) == 1 and seen[0][1] == 1
    assert seen[0][0].startswith("scheduled-actions-db"), seen
