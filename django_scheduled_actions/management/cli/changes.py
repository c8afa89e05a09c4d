"""``cancel``, ``retry`` and ``run-now`` on several job ids: each through the function the admin's action
calls (``scheduling.changes``), with one line per id saying what happened, and a failure (exit code 1)
when any id could not be acted on."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from ...models import ScheduledFunction, State
from ...scheduling import changes
from .output import Report

VERBS = {"cancel": "canceled", "retry": "retried", "run-now": "made due"}


def act(action: str, using: str, ids: list[int]) -> Report:
    """Apply ``action`` (``cancel``, ``retry`` or ``run-now``) to the jobs ``ids`` (each once, in the order
    given); the report lists one result per id."""
    ids = list(dict.fromkeys(ids))
    selected = ScheduledFunction.objects.using(using).filter(pk__in=ids)
    now = timezone.now()
    if action == "cancel":
        found = {change.job_id: _canceled(change) for change in changes.cancel_each(selected, now)}
    elif action == "retry":
        states = dict(selected.values_list("pk", "state"))
        found = {outcome.job_id: _retried(outcome, states[outcome.job_id]) for outcome in changes.retry(selected, now)}
    else:
        found = {change.job_id: _run_now(change) for change in changes.run_now_each(selected, now)}
    results = [{"id": pk, **found.get(pk, _missing())} for pk in ids]
    failed = [result for result in results if not result["ok"]]
    failure = f"{len(failed)} of {len(results)} job(s) could not be {VERBS[action]}" if failed else ""
    lines = [f"#{result['id']} {result['message']}" for result in results]
    return Report({"action": action, "ok": not failed, "results": results}, lines, failure)


def _result(ok: bool, outcome: str, state: str | None, message: str, **more: Any) -> dict[str, Any]:
    return {"ok": ok, "outcome": outcome, "state": state, "message": message, **more}


def _missing() -> dict[str, Any]:
    return _result(False, "not_found", None, "not found")


def _label(state: str) -> str:
    return str(State(state).label)


def _canceled(change: changes.Change) -> dict[str, Any]:
    if change.outcome == "canceled":
        return _result(True, "canceled", change.state, "canceled")
    if change.outcome == "raced":
        return _result(False, "raced", change.state, f"not canceled: it finished ({_label(change.state)}) first")
    return _result(False, "not_cancelable", change.state, f"not cancelable: it is {_label(change.state)}")


def _retried(outcome: changes.RetryOutcome, state: str) -> dict[str, Any]:
    if outcome.new_job_id:
        return _result(True, "retried", state, f"retried as #{outcome.new_job_id}", new_job_id=outcome.new_job_id)
    return _result(False, "not_retryable", state, f"not retried: {outcome.skipped}", new_job_id=None)


def _run_now(change: changes.Change) -> dict[str, Any]:
    if change.outcome == "moved":
        return _result(True, "moved", change.state, "due now")
    if change.outcome == "due":
        return _result(True, "due", change.state, "already due")
    return _result(False, "not_pending", change.state, f"not moved: it is {_label(change.state)}, not pending")
