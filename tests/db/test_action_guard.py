"""The action guard has no holes to fall into by accident (issue 15, item 5).

An action runs outside any transaction: called inside one (a mutation's, ``transaction.atomic()``) a
rollback or a conflict retry would undo its database writes or repeat its external calls, so that is
refused. The guard against direct database access covers the threads an action starts.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from django.db import connection, transaction

from django_scheduled_actions import (
    ActionDatabaseAccessError,
    ActionInTransactionError,
    internal_action,
    internal_mutation,
    run_action,
    run_mutation,
    scheduler,
)
from django_scheduled_actions.models import ScheduledFunction, State
from django_scheduled_actions.testing import run_due_jobs
from tests.app import functions as f
from tests.app.models import Counter, Note


@internal_mutation
def mutation_calling_run_action(ctx, text: str) -> None:
    Note.objects.create(text=text)
    run_action(f.action_via_ctx, {"name": text})


@internal_mutation
def mutation_calling_ctx_run_action(ctx, text: str) -> None:
    Note.objects.create(text=text)
    ctx.run_action(f.action_via_ctx, {"name": text})


def in_a_thread(call) -> str:
    """What ``call()`` gave in a thread of its own: its result, or the name of what it raised."""
    outcome: list[str] = []

    def run() -> None:
        try:
            outcome.append(repr(call()))
        except Exception as exc:
            outcome.append(type(exc).__name__)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(30)
    return outcome[0]


def raw_cursor_count() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT COUNT(*) FROM testapp_note")
        return cursor.fetchone()[0]


@internal_action
def orm_in_threads(ctx) -> dict:
    """Direct database access from threads the action starts, and ctx.run_* from them."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pooled = pool.submit(in_a_thread, lambda: Note.objects.count()).result()
    return {
        "orm": in_a_thread(lambda: Note.objects.count()),
        "write": in_a_thread(lambda: Note.objects.create(text="from a thread").pk),
        "cursor": in_a_thread(raw_cursor_count),
        "pool": pooled,
        "ctx": in_a_thread(lambda: ctx.run_mutation(f.bump, {"name": "via thread"})),
    }


REFUSED = ActionDatabaseAccessError.__name__
GUARDED = {"orm": REFUSED, "write": REFUSED, "cursor": REFUSED, "pool": REFUSED, "ctx": "1"}


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "mutation", [mutation_calling_run_action, mutation_calling_ctx_run_action], ids=["run_action", "ctx.run_action"]
)
def test_an_action_called_from_a_mutation_is_refused_and_the_mutation_rolls_back(mutation):
    with pytest.raises(
        ActionInTransactionError,
        match=r"tests.app.functions:action_via_ctx .*transaction.*"
        r"ctx.scheduler.run_after\(0",
    ):
        run_mutation(mutation, {"text": "x"})
    assert not Note.objects.exists() and not Counter.objects.exists(), "nothing of the action ran"


@pytest.mark.django_db(transaction=True)
def test_an_action_called_inside_an_open_transaction_is_refused_and_runs_nothing():
    with transaction.atomic():
        Note.objects.create(text="kept")
        with pytest.raises(ActionInTransactionError, match="inside a mutation or an open transaction"):
            run_action(f.action_via_ctx, {"name": "x"})
        with pytest.raises(ActionInTransactionError):
            run_action(f.charge_once, {"name": "x"}, idempotency_key="k")
    assert list(Note.objects.values_list("text", flat=True)) == ["kept"], "the caller's transaction goes on"
    assert not Counter.objects.exists()
    assert run_action(f.action_via_ctx, {"name": "x"}) == 1, "outside the transaction it runs"


@pytest.mark.django_db(transaction=True)
def test_a_scheduled_mutation_calling_an_action_fails_with_the_error():
    job_id = scheduler.run_after(0, mutation_calling_ctx_run_action, {"text": "job"})
    run_due_jobs()
    job = ScheduledFunction.objects.get(pk=job_id)
    assert job.state == State.FAILED and "ActionInTransactionError" in job.error
    assert not Note.objects.exists()


@pytest.mark.django_db  # Django's TestCase transaction is the test's, not the caller's
def test_actions_still_run_inside_a_test_case_transaction():
    assert run_action(f.action_via_ctx, {"name": "in test"}) == 1
    with pytest.raises(ActionInTransactionError), transaction.atomic():
        run_action(f.action_via_ctx, {"name": "in atomic"})


@pytest.mark.django_db(transaction=True)
def test_threads_an_action_starts_have_no_direct_database_access_either():
    assert run_action(orm_in_threads, {}) == GUARDED
    assert not Note.objects.exists()
    assert Counter.objects.get(name="via thread").value == 1


@pytest.mark.django_db(transaction=True)
def test_threads_of_an_action_run_by_the_worker_are_guarded():
    job_id = scheduler.run_after(0, orm_in_threads, {})
    run_due_jobs()
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.state, job.result) == (State.SUCCESS, GUARDED)


@pytest.mark.django_db(transaction=True)
def test_threads_of_an_action_may_use_the_orm_when_strict_actions_is_off(settings):
    settings.SCHEDULED_ACTIONS_STRICT_ACTIONS = False
    outcome = run_action(orm_in_threads, {})
    assert (outcome["orm"], outcome["cursor"], outcome["pool"], outcome["ctx"]) == ("0", "1", "0", "1")


@pytest.mark.django_db(transaction=True)
def test_threads_started_outside_actions_are_not_guarded():
    run_action(f.noop_action, {})  # the guard has been installed in this process
    assert in_a_thread(lambda: Note.objects.create(text="free").pk) != REFUSED
    assert in_a_thread(lambda: Note.objects.count()) == "1"
