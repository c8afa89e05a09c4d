"""The chaos load's functions. Every run of a body that commits leaves one ``Effect`` row keyed by the
job's key and adds one to the shared ``Counter`` row (so every mutation takes the same row lock, as real
counters do), so the suite counts effects per job: exactly once, at most once, at most ``max_attempts``;
and the counter equals the effects. ``durable_steps`` is the workflow of the ``workflow_kills`` scenario,
whose steps take their effects the same way, keyed by run and step."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from django.db.models import F

from django_scheduled_actions import RetryPolicy, StepFailed, internal_action, internal_mutation, workflow
from tests.app.models import Counter, Effect

MAX_ATTEMPTS = 3
COUNTER = "chaos"
STALL_MARKER = "CHAOS_STALL_MARKER"  # environment: where ``stall`` notes the pid of the worker it stopped


def _take_effect(ctx, key: str) -> int:
    job = ctx.job
    Counter.objects.filter(name=COUNTER).update(value=F("value") + 1)
    return Effect.objects.create(key=key, job_id=job.id if job else None, attempt=job.attempt if job else 0).pk


@internal_mutation
def effect(ctx, key: str) -> int:
    """A mutation: one Effect row and one count per committed run."""
    return _take_effect(ctx, key)


@internal_mutation
def stall(ctx, key: str) -> int:
    """A mutation whose first run stops its own worker process (SIGSTOP) inside the transaction, after
    taking the counter's row lock: a worker paused mid-transaction. Later runs just take effect."""
    pk = _take_effect(ctx, key)
    marker = Path(os.environ[STALL_MARKER])
    if not marker.exists():
        marker.write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGSTOP)
    return pk


@internal_action
def once(ctx, key: str) -> int:
    """An action without a retry policy: at most once."""
    return ctx.run_mutation(effect, {"key": key})


@internal_action(retry=RetryPolicy(max_attempts=MAX_ATTEMPTS, initial_backoff=0.2, max_backoff=1.0))
def retried(ctx, key: str, fail_first: bool = False) -> int:
    """An action with a retry policy: at least once, at most ``MAX_ATTEMPTS``; some fail their first attempt."""
    ctx.run_mutation(effect, {"key": key})
    if fail_first and ctx.job.attempt == 1:
        raise RuntimeError("planned failure of the first attempt")
    return ctx.job.attempt


# --- the workflow of ``workflow_kills`` (tests/chaos/workflow_kills.py) ---

STEP_ATTEMPTS = 3
STEP_RETRY = RetryPolicy(max_attempts=STEP_ATTEMPTS, initial_backoff=0.2, max_backoff=1.0)
STEP_SECONDS = 0.1  # an action step's time between its effect and its return: a kill there loses the outcome
PLAN = ("mutation", "once", "retried", "mutation", "retried", "once", "mutation", "retried", "once", "mutation")
COMPENSATED = ".compensated"


@internal_action
def step_once(ctx, key: str) -> int:
    """An action step without a retry policy: its effect, then a moment's work."""
    pk = ctx.run_mutation(effect, {"key": key})
    time.sleep(STEP_SECONDS)
    return pk


@internal_action
def step_retried(ctx, key: str, fail_first: bool = False) -> int:
    """An action step run with ``retry=STEP_RETRY``: its effect on every attempt, a moment's work, and
    (``fail_first``) a planned failure of the first attempt."""
    ctx.run_mutation(effect, {"key": key})
    time.sleep(STEP_SECONDS)
    if fail_first and ctx.job.attempt == 1:
        raise RuntimeError("planned failure of the first attempt")
    return ctx.job.attempt


@workflow
def durable_steps(step, key: str) -> list[str]:
    """Ten steps (``PLAN``): mutations, actions without retries, actions with ``STEP_RETRY``. An action
    step that fails for good (its worker killed, its retries spent) is handled: a compensating mutation
    step records it, and the run goes on. Returns each step's outcome, ``ok`` or ``compensated``."""
    outcomes = []
    for index, kind in enumerate(PLAN):
        step_key = f"{key}.{index}"
        if kind == "mutation":
            step.run_mutation(effect, {"key": step_key})
            outcomes.append("ok")
            continue
        try:
            if kind == "once":
                step.run_action(step_once, {"key": step_key})
            else:
                step.run_action(step_retried, {"key": step_key, "fail_first": index == 2}, retry=STEP_RETRY)
            outcomes.append("ok")
        except StepFailed:
            step.run_mutation(effect, {"key": step_key + COMPENSATED})
            outcomes.append("compensated")
    return outcomes
