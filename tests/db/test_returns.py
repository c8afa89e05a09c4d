"""Return values are checked against the return annotation (DESIGN §2, Convex's ``returns:``)."""

from __future__ import annotations

import json
import logging
import re
import uuid
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Literal

import pytest
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

import django_scheduled_actions as sa
from django_scheduled_actions import (
    ReturnValidationError,
    internal_action,
    internal_mutation,
    internal_query,
    mutation,
    run_action,
    run_mutation,
    run_query,
    scheduler,
)
from django_scheduled_actions.core.registry import registry
from django_scheduled_actions.models import ScheduledFunction, State
from tests.app import functions as f
from tests.app.models import Note

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects


# --- the guide's own returns: (v.null(), v.id("messages"), v.union(v.id("payments"), v.null())) ---


@internal_mutation
def send_expiring_message(ctx, body: str, broken: bool = False) -> int:  # returns: v.id("messages")
    note = Note.objects.create(text=body)
    ctx.scheduler.run_after(60, f.bump, {"name": "expire"})
    return str(note.pk) if broken else note.pk  # type: ignore[return-value]


@internal_mutation
def delete_message(ctx, id: int, leak: bool = False) -> None:  # returns: v.null()
    Note.objects.filter(pk=id).delete()
    return id if leak else None  # type: ignore[return-value]


@internal_mutation
def process_payment(ctx, key: str, answer: str = "id") -> int | None:  # v.union(v.id("payments"), v.null())
    note, _ = Note.objects.get_or_create(text=key)
    return {"id": note.pk, "none": None, "text": key}[answer]  # type: ignore[return-value]


@internal_query
def list_rows(ctx, rows: list[dict[str, Any]]) -> list[dict[str, int]]:
    return rows


WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
UID = uuid.uuid4()
RICH = {
    "good": {"when": WHEN, "day": date(2026, 1, 2), "uid": UID, "amount": Decimal("1.50"), "lit": "x"},
    "naive": {"d": datetime(2026, 1, 1)},
    "literal": {"lit": "y"},
    "nan": {"n": float("nan")},
    "list": ["x"],
    "infinite": {"amount": Decimal("Infinity")},
}


@internal_action
def typed_result(ctx, case: str) -> dict[str, datetime | date | uuid.UUID | Decimal | Literal["x"]]:
    return RICH[case]  # type: ignore[return-value]


@internal_action
def unannotated(ctx, value: Any, opaque: bool = False):
    return object() if opaque else value


@internal_action
def returns_any(ctx, value: Any, opaque: bool = False) -> Any:
    return object() if opaque else value


@mutation
def public_count(ctx, broken: bool = False) -> int:
    Note.objects.create(text="http")
    return "three" if broken else 3  # type: ignore[return-value]


def test_the_guides_returns_pass_when_kept():
    note_id = run_mutation(send_expiring_message, {"body": "hi"})
    assert Note.objects.get().pk == note_id
    assert run_mutation(delete_message, {"id": note_id}) is None
    assert isinstance(run_mutation(process_payment, {"key": "k"}), int)
    assert run_mutation(process_payment, {"key": "k", "answer": "none"}) is None


def test_a_mutation_that_breaks_its_returns_rolls_back_its_writes_and_jobs():
    with pytest.raises(ReturnValidationError) as caught:
        run_mutation(send_expiring_message, {"body": "hi", "broken": True})
    assert re.fullmatch(
        r"tests\.db\.test_returns:send_expiring_message returned a value that does not match its "
        r"annotation: result: expected int, got str \('\d+'\)",
        str(caught.value),
    )
    assert caught.value.function == "tests.db.test_returns:send_expiring_message"
    assert caught.value.path == "result" and caught.value.problem.startswith("expected int, got str")
    assert isinstance(caught.value, TypeError)
    assert not Note.objects.exists() and not Jobs.exists()


def test_none_annotation_refuses_a_value_and_union_refuses_what_is_in_neither():
    note = Note.objects.create(text="x")
    with pytest.raises(ReturnValidationError, match=r"result: expected None, got int"):
        run_mutation(delete_message, {"id": note.pk, "leak": True})
    assert Note.objects.filter(pk=note.pk).exists()  # the delete rolled back
    with pytest.raises(ReturnValidationError, match=r"result: expected int \| None, got str \('k'\)"):
        run_mutation(process_payment, {"key": "k", "answer": "text"})
    assert not Note.objects.filter(text="k").exists()


def test_the_path_names_the_nested_value():
    rows = [{"id": 1}, {"id": 2}, {"id": "3"}]
    with pytest.raises(ReturnValidationError) as caught:
        run_query(list_rows, {"rows": rows})
    assert caught.value.path == "result[2]['id']"
    assert "result[2]['id']: expected int, got str ('3')" in str(caught.value)
    assert run_query(list_rows, {"rows": rows[:2]}) == rows[:2]


def test_rich_types_are_checked_and_stored_as_json():
    assert run_action(typed_result, {"case": "good"}) == {
        "when": WHEN.isoformat(),
        "day": "2026-01-02",
        "uid": str(UID),
        "amount": "1.50",
        "lit": "x",
    }
    for case, message in [
        ("naive", r"result\['d'\]: expected datetime \| date"),
        ("literal", r"result\['lit'\]: expected datetime .* \| Literal\['x'\], got str"),
        ("nan", r"result\['n'\]: expected"),
        ("list", r"result: expected dict, got list"),
        ("infinite", r"result\['amount'\]: expected"),
    ]:
        with pytest.raises(ReturnValidationError, match=message):
            run_action(typed_result, {"case": case})


def test_no_annotation_and_any_check_nothing_but_json():
    for fn in (unannotated, returns_any):
        assert run_action(fn, {"value": {"anything": [1, "two", None]}}) == {"anything": [1, "two", None]}
        with pytest.raises(TypeError, match="not JSON-serialisable") as caught:
            run_action(fn, {"value": None, "opaque": True})
        assert not isinstance(caught.value, ReturnValidationError)


@pytest.mark.parametrize("annotation", [object, set[int], tuple[int, ...], dict[int, str], list[object]])
def test_unsupported_return_annotations_are_refused_when_decorated(annotation):
    def body(ctx):
        return None

    body.__annotations__ = {"return": annotation}
    with pytest.raises(TypeError, match=r"the return annotation has an unsupported annotation"):
        internal_action(name=f"tests.returns.unsupported.{uuid.uuid4().hex}")(body)


def test_a_scheduled_mutation_that_breaks_its_returns_fails_and_writes_nothing():
    job_id = scheduler.run_after(0, send_expiring_message, {"body": "job", "broken": True})
    ok_id = scheduler.run_after(0, send_expiring_message, {"body": "fine"})  # may share its transaction
    call_command("runworker", burst=True)
    job, ok = Jobs.get(pk=job_id), Jobs.get(pk=ok_id)
    assert job.state == State.FAILED and "result: expected int, got str" in job.error
    assert "ReturnValidationError" in job.error and job.result is None
    assert ok.state == State.SUCCESS and Note.objects.get().pk == ok.result
    assert list(Note.objects.values_list("text", flat=True)) == ["fine"]
    assert Jobs.filter(parent_id=job_id).count() == 0 and Jobs.filter(parent_id=ok_id).count() == 1


def test_a_scheduled_action_that_breaks_its_returns_fails():
    job_id = scheduler.run_after(0, typed_result, {"case": "literal"})
    call_command("runworker", burst=True)
    job = Jobs.get(pk=job_id)
    assert job.state == State.FAILED and "result['lit']: expected" in job.error and job.result is None


def test_over_http_a_broken_return_is_a_logged_server_error(caplog):
    client = Client(raise_request_exception=False)  # a 500 is what a client sees
    path = reverse("scheduled_actions:call", args=[public_count.name])
    ok = client.post(path, data="{}", content_type="application/json")
    assert ok.status_code == 200 and ok.json() == {"status": "success", "value": 3}
    with caplog.at_level(logging.ERROR, logger="django_scheduled_actions"):
        broken = client.post(path, data=json.dumps({"broken": True}), content_type="application/json")
    assert broken.status_code == 500
    assert broken.json()["error"]["code"] == "server_error"
    assert any(isinstance(r.exc_info[1], ReturnValidationError) for r in caplog.records if r.exc_info)
    assert Note.objects.count() == 1  # the broken call's write rolled back


def test_exported_from_the_root():
    assert sa.ReturnValidationError is ReturnValidationError and "ReturnValidationError" in sa.__all__
    assert registry.get(public_count.name) is public_count
