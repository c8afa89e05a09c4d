"""Functions and workflows of the workflow tests (tests/db/test_workflows.py, tests/process)."""

from __future__ import annotations

import contextlib
import time
from datetime import timedelta

from django.db import connection

from django_scheduled_actions import (
    NonRetryableError,
    RetryPolicy,
    StepFailed,
    internal_action,
    internal_mutation,
    internal_query,
    workflow,
)
from django_scheduled_actions.core.registry import registry
from django_scheduled_actions.models import WorkflowRun

from .models import Counter, Note
from .orchestration_functions import tally

SWITCH = {"second": "mutation"}  # what nondeterministic() asks for as its second step


def count(name: str) -> int:
    return Counter.objects.filter(name=name).values_list("value", flat=True).first() or 0


@internal_query
def get_user(ctx, user_id: int) -> dict:
    return {"email": f"user{user_id}@example.com"}


@internal_query
def count_of(ctx, name: str) -> int:
    return count(name)


@internal_mutation
def note(ctx, text: str) -> int:
    Note.objects.create(text=text)
    return Note.objects.count()


@internal_action
def send(ctx, key: str) -> str:
    ctx.run_mutation(tally, {"name": f"sent {key}"})
    return f"sent {key}"


@internal_action
def flaky(ctx, key: str, failures: int) -> int:
    """Fails its first ``failures`` attempts; counts every attempt."""
    attempt = ctx.run_mutation(tally, {"name": f"attempt {key}"})
    if attempt <= failures:
        raise ConnectionError(f"{key} attempt {attempt} fails")
    return attempt


@internal_action
def refuse(ctx, key: str) -> None:
    ctx.run_mutation(tally, {"name": f"refused {key}"})
    raise NonRetryableError(f"card {key} declined")


@internal_action
def quote(ctx, vendor: str) -> int:
    ctx.run_mutation(tally, {"name": f"quote {vendor}"})
    return {"a": 30, "b": 20, "c": 10}[vendor]


@workflow
def onboard(step, user_id: int) -> str:
    """The example of DESIGN.md section 12."""
    user = step.run_query(get_user, {"user_id": user_id})
    step.run_action(send, {"key": user["email"]}, retry=RetryPolicy(max_attempts=5, jitter=False))
    step.sleep(timedelta(days=1))
    answer = step.wait_for_event("survey", timeout=timedelta(days=7))
    prices = step.parallel([(quote, {"vendor": "a"}), (quote, {"vendor": "b"})])
    try:
        step.run_action(refuse, {"key": f"{user_id} {min(prices)}"})
    except StepFailed:
        step.run_mutation(note, {"text": f"unpaid {user_id}"})
    step.run_mutation(note, {"text": f"onboarded {user_id} {answer}"})
    return "onboarded"


@workflow(name="tests.chain", queue="default")
def chain(step, key: str, n: int = 3) -> list:
    """``n`` mutation steps and ``n`` action steps, alternating; their results in order."""
    results = []
    for i in range(n):
        results.append(step.run_mutation(tally, {"name": f"chain {key} m{i}"}))
        results.append(step.run_action(send, {"key": f"{key} a{i}"}))
    return results


@workflow
def retried(step, key: str, failures: int, attempts: int) -> int:
    return step.run_action(flaky, {"key": key, "failures": failures}, retry=RetryPolicy(attempts, 0, jitter=False))


@workflow
def compensated(step, key: str) -> str:
    try:
        step.run_action(refuse, {"key": key})
    except StepFailed as failed:
        step.run_mutation(note, {"text": f"undo {key}: {failed.function}"})
        return "compensated"
    return "charged"


@workflow
def uncaught(step, key: str) -> str:
    step.run_mutation(note, {"text": f"before {key}"})
    step.run_action(refuse, {"key": key})
    step.run_mutation(note, {"text": f"after {key}"})
    return "unreachable"


@workflow
def raises(step, key: str) -> None:
    step.run_mutation(note, {"text": f"before {key}"})
    raise ValueError(f"no {key}")


@workflow
def sleeper(step, key: str, days: int) -> int:
    step.run_mutation(note, {"text": f"asleep {key}"})
    step.sleep(timedelta(days=days))
    return step.run_mutation(note, {"text": f"awake {key}"})


@workflow
def waiter(step, name: str, timeout: float | None = None) -> dict:
    first = step.wait_for_event(name, timeout=timeout)
    step.run_mutation(note, {"text": f"got {first}"})
    return {"payload": first}


@workflow
def fan(step, vendors: list[str]) -> list:
    return step.parallel([(quote, {"vendor": v}) for v in vendors] + [(count_of, {"name": "quote a"})])


@workflow
def nondeterministic(step, key: str) -> str:
    step.run_mutation(note, {"text": f"first {key}"})
    if SWITCH["second"] == "mutation":
        step.run_mutation(note, {"text": f"second {key}"})
    else:
        step.run_action(send, {"key": key})
    return "done"


@workflow
def swallows(step, key: str) -> str:
    """Catches everything around a step: a nondeterminism still fails the run."""
    step.run_mutation(note, {"text": f"first {key}"})
    with contextlib.suppress(Exception):
        if SWITCH["second"] == "mutation":
            step.run_mutation(note, {"text": f"second {key}"})
        else:
            step.run_action(send, {"key": key})
    return "swallowed"


@internal_mutation
def start_chain(ctx, key: str, fail: bool = False) -> int:
    run_id = ctx.workflows.start(chain, {"key": key, "n": 1})
    Note.objects.create(text=f"started {key}")
    if fail:
        raise ValueError("the mutation fails after starting the run")
    return run_id


@internal_action
def start_and_signal(ctx, key: str) -> int:
    run_id = ctx.workflows.start(waiter, {"name": key})
    ctx.workflows.send_event(run_id, key, {"from": "action"})
    return run_id


@internal_query
def run_keyed(ctx, key: str) -> int:
    return WorkflowRun.objects.get(idempotency_key=key).pk


@internal_action
def cancel_own_run(ctx, key: str) -> str:
    """Cancels the run it is a step of, then finishes: a running action step is let finish."""
    ctx.workflows.cancel(ctx.run_query(run_keyed, {"key": key}))
    ctx.run_mutation(tally, {"name": f"finished {key}"})
    return "finished"


@workflow
def canceled_midway(step, key: str) -> str:
    step.run_action(cancel_own_run, {"key": key})
    step.run_mutation(note, {"text": f"after cancel {key}"})
    return "not canceled"


@internal_action
def durable_send(ctx, key: str, pause: float = 0.0) -> str:
    time.sleep(pause)  # a moment for a kill -9 to land in
    ctx.run_mutation(tally, {"name": f"sent {key}"})
    return f"sent {key}"


@workflow
def durable(step, key: str, n: int, pause: float = 0.05) -> list:
    """``n`` mutation steps, ``n`` retried action steps and a short sleep: the process tests' kill -9."""
    results = []
    for i in range(n):
        results.append(step.run_mutation(tally, {"name": f"dur {key} m{i}"}))
        retry = RetryPolicy(max_attempts=20, initial_backoff=0.1, max_backoff=0.5, jitter=False)
        results.append(step.run_action(durable_send, {"key": f"dur {key} a{i}", "pause": pause}, retry=retry))
        if i == 0:
            step.sleep(0.2)
    return results


@workflow
def limited_step(step, function: str, args: dict, retried: bool = False):  # noqa: ANN201
    """One step of the registered ``function`` (a limited one of the limits tests), with its own retry
    policy if ``retried``."""
    fn = registry.get(function)
    if fn.kind == "mutation":
        return step.run_mutation(fn, args)
    return step.run_action(fn, args, retry=RetryPolicy(max_attempts=2, jitter=False) if retried else None)


DATABASE_FAILURES: dict[str, int] = {}  # key -> how many replays of db_flaky fail on the database


@workflow
def db_flaky(step, key: str, failures: int) -> int:
    """Its first ``failures`` replays fail on a database error (a missing table), after a first step."""
    first = step.run_mutation(note, {"text": f"first {key}"})
    if DATABASE_FAILURES.get(key, 0) < failures:
        DATABASE_FAILURES[key] = DATABASE_FAILURES.get(key, 0) + 1
        with connection.cursor() as cursor:
            cursor.execute("SELECT * FROM sa_no_such_table")
    return first + step.run_mutation(note, {"text": f"second {key}"})


REPLAYS: dict[int, int] = {}  # replays of three_notes, by its argument


@internal_mutation
def write_note(ctx, text: str) -> None:
    Note.objects.create(text=text)


@workflow
def three_notes(step, n: int) -> int:
    """Three mutation steps; counts its replays (one per resume: at the start and after each step)."""
    REPLAYS[n] = REPLAYS.get(n, 0) + 1
    for k in range(3):
        step.run_mutation(write_note, {"text": f"{n}:{k}"})
    return n


@internal_mutation
def noop_step(ctx, k: int) -> None:
    """A step that does nothing: the benchmark measures what a step itself costs."""


@workflow
def noop_steps(step, steps: int) -> int:
    """The benchmark's workflow (as the shared harness's test W): ``steps`` no-op mutation steps."""
    for k in range(steps):
        step.run_mutation(noop_step, {"k": k})
    return steps


@workflow
def sleeps_a_month(step) -> None:
    """Waits 30 days: what a sleeping run costs an idle worker (benchmarks/workflows.py)."""
    step.sleep(timedelta(days=30))


class Halt(BaseException):
    """A ``BaseException`` of the body's own (not an ``Exception``)."""


HALTS = {"SystemExit": SystemExit, "GeneratorExit": GeneratorExit, "Halt": Halt, "KeyboardInterrupt": KeyboardInterrupt}
RAISED: set[str] = set()  # the keys whose replay of halts() has raised in this process


@workflow
def halts(step, key: str, what: str, once: bool = False) -> str:
    """After a first step, its replay raises the ``BaseException`` named ``what`` (only the first time
    with ``once``)."""
    step.run_mutation(note, {"text": f"before {key}"})
    if not (once and key in RAISED):
        RAISED.add(key)
        raise HALTS[what](f"{what} from the body of {key}")
    step.run_mutation(note, {"text": f"after {key}"})
    return "done"


DECLINING: set[str] = set()  # the keys declines() refuses while they are in it


@internal_action
def declines(ctx, key: str) -> str:
    """Counts each run; fails for good while ``key`` is in ``DECLINING``."""
    ctx.run_mutation(tally, {"name": f"declines {key}"})
    if key in DECLINING:
        raise NonRetryableError(f"{key} declined")
    return f"accepted {key}"


@workflow
def fan_declined(step, key: str) -> list:
    """A step, a parallel whose second and fourth items fail while declined, then a step."""
    step.run_mutation(tally, {"name": f"fan {key} before"})
    results = step.parallel(
        [
            (quote, {"vendor": "a"}),
            (declines, {"key": f"{key} b"}),
            (quote, {"vendor": "c"}),
            (declines, {"key": f"{key} d"}),
            (count_of, {"name": "quote a"}),
        ]
    )
    step.run_mutation(tally, {"name": f"fan {key} after"})
    return results
