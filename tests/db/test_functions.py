"""Functions and contexts (DESIGN §2): decorators, names, validation, queries, mutations, actions."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection, transaction

import django_scheduled_actions as sa
from django_scheduled_actions import (
    ActionDatabaseAccessError,
    ArgumentValidationError,
    QueryWriteError,
    RetryPolicy,
    run_action,
    run_mutation,
    run_query,
)
from django_scheduled_actions.core.registry import registry
from django_scheduled_actions.models import ScheduledFunction
from tests.app import functions as f
from tests.app.models import Counter, Note


def test_decorators_bare_and_with_options():
    assert (f.count.kind, f.count.visibility) == ("query", "internal")
    assert (f.try_write_in_query.kind, f.try_write_in_query.visibility) == ("query", "public")
    assert (f.bump.kind, f.bump.visibility) == ("mutation", "internal")
    assert (f.add_note_and_schedule.kind, f.add_note_and_schedule.visibility) == ("mutation", "public")
    assert (f.noop_action.kind, f.noop_action.visibility) == ("action", "internal")
    assert f.flaky_action.retry == RetryPolicy(max_attempts=3, initial_backoff=0.0, jitter=False)
    assert f.slow_action.timeout == 0.5
    assert f.start_batch.name == "fan.start"


def test_public_decorators_exist_for_every_kind():
    fns = [
        sa.query(name="t.q")(lambda ctx: None),
        sa.mutation(name="t.m")(lambda ctx: None),
        sa.action(name="t.a")(lambda ctx: None),
    ]
    try:
        assert [(x.kind, x.visibility) for x in fns] == [
            ("query", "public"),
            ("mutation", "public"),
            ("action", "public"),
        ]
    finally:
        for x in fns:
            registry.unregister(x.name)


def test_registered_name_is_module_and_qualname():
    assert f.bump.name == "tests.app.functions:bump"
    assert registry.get("tests.app.functions:bump") is f.bump


def test_duplicate_name_is_an_error():
    def one(ctx):
        pass

    def two(ctx):
        pass

    sa.internal_mutation(name="dup.name")(one)
    try:
        with pytest.raises(ImproperlyConfigured, match="dup.name"):
            sa.internal_mutation(name="dup.name")(two)
    finally:
        registry.unregister("dup.name")


def test_options_are_checked_at_decoration():
    with pytest.raises(TypeError, match="actions only"):
        sa.internal_mutation(retry=RetryPolicy())
    with pytest.raises(ValueError, match="timeout"):
        sa.internal_action(timeout=-1)
    with pytest.raises(ValueError, match="timeout"):
        sa.internal_action(timeout=float("nan"))
    with pytest.raises(TypeError, match="priority= must be a 32-bit int"):  # as scheduler.run_after(priority=)
        sa.internal_mutation(priority=2**40)
    with pytest.raises(ValueError, match="queue= must be a non-empty string"):
        sa.internal_mutation(queue="")
    with pytest.raises(TypeError, match="parameter 'x' has an unsupported annotation"):
        sa.internal_mutation(name="bad.annotation")(_bad_annotation)
    assert "bad.annotation" not in {fn.name for fn in registry.all()}


def _bad_annotation(ctx, x: set[int]) -> None:
    pass


def test_calling_a_function_directly_explains_how_to_run_it():
    with pytest.raises(TypeError, match=r"ctx.run_mutation\(bump"):
        f.bump(None, name="x")


@pytest.mark.django_db
def test_mutation_writes_and_returns_json():
    assert run_mutation(f.bump, {"name": "a"}) == 1
    assert run_mutation(f.bump, {"name": "a", "by": 2}) == 3
    assert run_query(f.count, {"name": "a"}) == 3


@pytest.mark.django_db
def test_argument_types_are_validated_and_converted():
    when = datetime(2026, 3, 29, 1, 30, tzinfo=UTC)
    uid = uuid.uuid4()
    args = {
        "n": 1,
        "x": 2,
        "s": "s",
        "flag": True,
        "when": when,
        "day": date(2026, 1, 2),
        "uid": uid,
        "amount": Decimal("1.50"),
        "tags": ["a"],
        "scores": {"a": 1},
        "maybe": None,
        "mode": "b",
    }
    out = run_mutation(f.typed, args)
    assert out["x"] == 2.0 and out["when"] == when.isoformat() and out["uid"] == str(uid)
    assert out["types"] == ["datetime", "date", "UUID", "Decimal"]


@pytest.mark.parametrize(
    ("change", "argument", "message"),
    [
        ({"n": "1"}, "n", "expected int, got str"),
        ({"n": True}, "n", "expected int, got bool"),
        ({"x": float("nan")}, "x", "finite"),
        ({"flag": 1}, "flag", "expected bool"),
        ({"when": datetime(2026, 1, 1)}, "when", "aware"),
        ({"when": "2026-01-01T00:00:00+00:00"}, "when", "expected datetime"),
        ({"tags": ["a", 2]}, "tags[1]", "expected str"),
        ({"scores": {"a": "x"}}, "scores['a']", "expected int"),
        ({"maybe": "x"}, "maybe", "expected int | None"),
        ({"mode": "c"}, "mode", "expected one of 'a', 'b'"),
        ({"s": "\ud800"}, "s", "UTF-8"),
        ({"extra": 1}, "extra", "unexpected argument"),
    ],
)
@pytest.mark.django_db
def test_argument_mismatch_names_the_argument_and_writes_nothing(change, argument, message):
    args = {
        "n": 1,
        "x": 2.0,
        "s": "s",
        "flag": True,
        "when": datetime(2026, 1, 1, tzinfo=UTC),
        "day": date(2026, 1, 2),
        "uid": uuid.uuid4(),
        "amount": Decimal(1),
        "tags": [],
        "scores": {},
    }
    args.update(change)
    with pytest.raises(ArgumentValidationError) as info:
        run_mutation(f.typed, args)
    assert info.value.argument == argument
    assert message in str(info.value)
    assert f"argument {argument!r} of tests.app.functions:typed" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.django_db
def test_missing_argument_and_non_dict_arguments():
    with pytest.raises(ArgumentValidationError, match="argument 'name' .*missing required"):
        run_mutation(f.bump, {})
    with pytest.raises(ArgumentValidationError, match="arguments must be a dict"):
        run_mutation(f.bump, ["name"])
    assert not Counter.objects.exists()


@pytest.mark.django_db
def test_query_write_raises_and_changes_nothing():
    with pytest.raises(QueryWriteError, match="read-only"):
        run_query(f.try_write_in_query, {"text": "nope"})
    assert not Note.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_query_write_refused_outside_a_transaction_too():
    with pytest.raises(QueryWriteError):
        run_query(f.try_write_in_query, {"text": "nope"})
    assert not Note.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_mutation_error_rolls_back_everything():
    with pytest.raises(ValueError, match="failing after writing"):
        run_mutation(f.write_then_fail, {"text": "x"})
    assert not Note.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_nested_mutation_error_rolls_back_only_its_own_writes():
    assert run_mutation(f.outer_with_failing_inner, {"text": "t"}) == "failing after writing 'inner t'"
    assert list(Note.objects.values_list("text", flat=True)) == ["outer t"]


@pytest.mark.django_db(transaction=True)
def test_mutation_inside_open_transaction_joins_it():
    with pytest.raises(RuntimeError), transaction.atomic():
        run_mutation(f.bump, {"name": "joined"})
        raise RuntimeError("caller rolls back")
    assert not Counter.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_action_orm_use_raises_with_guidance():
    with pytest.raises(ActionDatabaseAccessError, match=r"ctx.run_query.*ctx.run_mutation"):
        run_action(f.direct_orm_in_action, {})


@pytest.mark.django_db(transaction=True)
def test_action_reaches_database_through_ctx():
    assert run_action(f.action_via_ctx, {"name": "via"}) == 1
    assert Counter.objects.get(name="via").value == 1


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(
    "call",
    [lambda: run_query(f.count, {"name": "fresh"}), lambda: run_action(f.read_via_ctx, {"name": "fresh"})],
    ids=["query", "action"],
)
def test_a_query_can_be_the_first_statement_of_a_new_connection(call):
    """Opening a connection runs its setup statements (MySQL: SET SESSION TRANSACTION ISOLATION LEVEL):
    not writes of the query's, nor an action's own database access. A worker thread's first job is
    often an action that reads through ctx.run_query."""
    Counter.objects.create(name="fresh", value=3)
    outcome: list[object] = []

    def in_a_new_thread() -> None:  # its own connection, not opened yet
        try:
            outcome.append(call())
        except Exception as exc:
            outcome.append(exc)
        finally:
            connection.close()

    thread = threading.Thread(target=in_a_new_thread)
    thread.start()
    thread.join()
    assert outcome == [3]


@pytest.mark.django_db(transaction=True)
def test_strict_actions_can_be_turned_off(settings):
    settings.SCHEDULED_ACTIONS_STRICT_ACTIONS = False
    assert run_action(f.direct_orm_in_action, {}) == 0


@pytest.mark.django_db(transaction=True)
def test_action_result_must_be_json():
    with pytest.raises(TypeError, match="not JSON-serialisable"):
        run_action(f.returns_unserialisable, {})


@pytest.mark.django_db(transaction=True)
def test_runners_refuse_the_wrong_kind():
    with pytest.raises(TypeError, match="run_query.. takes a query"):
        run_query(f.bump, {"name": "x"})
    with pytest.raises(TypeError, match="decorated"):
        run_mutation(lambda ctx: None, {})


@pytest.mark.django_db(transaction=True)
def test_ctx_job_is_none_outside_a_job():
    assert run_mutation(f.record, {"key": "direct"}) == {"key": "direct"}
    assert ScheduledFunction.objects.count() == 0
