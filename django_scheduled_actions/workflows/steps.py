"""The jobs that run a workflow's mutation and action steps, and the journaling of their outcomes.

A step's job is named ``workflow-step:<function>`` (with ``#retry=...`` when the step has its own retry
policy) and takes ``{"run_id", "index", "args"}``; the registry resolves the name to a wrapper of the
function (same kind, queue, priority, timeout; the step's retry policy, else the function's), so the
worker runs it with that function's guarantees:

- a **mutation** step journals its result and schedules the next replay inside its own transaction: its
  effects, its journal entry and its job's completion commit together, exactly once;
- an **action** step is journaled once its job's final state has committed (``job_finished``, called by
  the worker like a batch item's count): success with its result, or failed for good, whatever failed
  it (raised with no retry left, timed out, its worker lost). A worker that dies in between leaves the
  step running over a finished job; lease recovery journals it (``settle_stragglers``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError

from ..core import guards
from ..core.registry import Function, Options, registry
from ..core.retry import RetryPolicy
from ..core.workflows import RETRY_MARK
from ..core.workflows import STEP_PREFIX as PREFIX
from ..models import FINAL_STATES, ScheduledFunction, State, WorkflowRun, WorkflowStep
from ..scheduling.scheduler import Scheduler
from . import journal

logger = logging.getLogger("django_scheduled_actions")
STRAGGLERS_PER_PASS = 100
MAX_NAME_LENGTH = 255  # ScheduledFunction.name
_wrappers: dict[str, Function] = {}


def job_name(fn: Function, retry: RetryPolicy | None) -> str:
    name = PREFIX + fn.name
    if retry is not None:
        fields = (retry.max_attempts, retry.initial_backoff, retry.base, retry.max_backoff, int(retry.jitter))
        name += RETRY_MARK + ",".join(repr(v) for v in fields)
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"the step job's name {name!r} is over {MAX_NAME_LENGTH} characters: give {fn.name} a shorter name="
        )
    return name


def _parse(name: str) -> tuple[str, RetryPolicy | None]:
    inner, mark, policy = name.partition(RETRY_MARK)
    if not mark:
        return inner, None
    attempts, initial, base, cap, jitter = policy.split(",")
    return inner, RetryPolicy(int(attempts), float(initial), float(base), float(cap), jitter == "1")


def wrapper(name: str) -> Function:
    """The function a step job named ``workflow-step:<name>`` runs (``FunctionNotFound`` if ``<name>`` is
    not registered here: the worker leaves the job to one that knows it)."""
    found = _wrappers.get(name)
    if found is None:
        inner_name, retry = _parse(name)
        found = _wrappers[name] = _wrap(registry.get(inner_name), retry, PREFIX + name)
    return found


def _wrap(inner: Function, retry: RetryPolicy | None, name: str) -> Function:
    options = Options(
        queue=inner.options.queue,
        priority=inner.options.priority,
        timeout=inner.options.timeout,
        retry=retry or inner.options.retry,
    )
    if inner.kind == "mutation":

        def mutation_step(ctx: Any, run_id: int, index: int, args: dict[str, Any]) -> Any:
            """Journaled after its job commits, as an action step (``job_finished``): its result is the
            job's, written with its effects. Journaling here, inside the step's serializable transaction,
            read and wrote index pages of the journal that other runs' steps share, and concurrent steps
            conflicted. A step canceled meanwhile had its job canceled: its completion fails, nothing stays."""
            with guards.policy("allow"):
                run = journal.lock_run(run_id, ctx.using)
                if run is None or run.is_finished:
                    return None  # the run ended meanwhile: nothing runs
            return inner.validator.result_to_json(inner.fn(ctx, **inner.validator.to_python(args)))

        return Function(mutation_step, "mutation", "internal", name, options)
    if inner.is_async:

        async def async_action_step(ctx: Any, run_id: int, index: int, args: dict[str, Any]) -> Any:
            return inner.validator.result_to_json(await inner.fn(ctx, **inner.validator.to_python(args)))

        return Function(async_action_step, "action", "internal", name, options)

    def action_step(ctx: Any, run_id: int, index: int, args: dict[str, Any]) -> Any:
        return inner.validator.result_to_json(inner.fn(ctx, **inner.validator.to_python(args)))

    return Function(action_step, "action", "internal", name, options)


registry.add_resolver(PREFIX, wrapper)


def schedule(
    run: WorkflowRun, index: int, fn: Function, json_args: dict[str, Any], retry: RetryPolicy | None, using: str
) -> int:
    """Write the job of the run's step ``index`` (in the replay's transaction); returns its id."""
    step_fn = wrapper(job_name(fn, retry)[len(PREFIX) :])
    job_id = Scheduler(using=using).run_after(0, step_fn, {"run_id": run.pk, "index": index, "args": json_args})
    assert job_id is not None
    return job_id


def job_finished(job: ScheduledFunction, using: str = DEFAULT_DB_ALIAS) -> None:
    """After a job's final state committed: if it runs a workflow step, journal its outcome and resume
    the run; if it is a replay that failed, replay the run later (``journal.replay_job_failed``). Never raises
    a database error (lease recovery settles what is left)."""
    if job.name == journal.RESUME:
        if job.state == State.FAILED:
            _replay_failed(job, using)
        return
    if not job.name.startswith(PREFIX):
        return
    try:
        with guards.policy("allow"):
            row = (
                ScheduledFunction.objects.using(using)
                .filter(pk=job.pk)
                .values("state", "result", "error", "args")
                .first()
            )
        if row is not None:
            _settle(job.pk, row, using)
    except DatabaseError as exc:
        logger.warning("could not journal workflow step yet job=%s error=%r", job.pk, exc)


def _replay_failed(job: ScheduledFunction, using: str) -> None:
    try:
        journal.replay_job_failed(job, using)
    except DatabaseError as exc:
        logger.warning("could not resume workflow after its replay failed job=%s error=%r", job.pk, exc)


def _settle(job_id: int, row: Mapping[str, Any], using: str) -> bool:
    if row["state"] not in FINAL_STATES or not isinstance(row["args"], dict):
        return False
    if row["state"] == State.SUCCESS:
        state, result, error = WorkflowStep.State.SUCCESS, row["result"], ""
    else:
        state, result = WorkflowStep.State.FAILED, None
        error = row["error"] or f"the step's job was {row['state']}"
    return journal.settle_step(row["args"]["run_id"], row["args"]["index"], job_id, state, result, error, using)


def settle_stragglers(using: str = DEFAULT_DB_ALIAS) -> int:
    """Journal the steps still running over a job that has finished (its worker died between the job's
    outcome and its journaling). Returns how many were journaled."""
    with guards.policy("allow"):
        running = WorkflowStep.objects.using(using).filter(
            state=WorkflowStep.State.RUNNING, kind__in=(WorkflowStep.Kind.MUTATION, WorkflowStep.Kind.ACTION)
        )
        job_ids = list(running.values_list("job_id", flat=True)[: STRAGGLERS_PER_PASS * 10])
        finished = (
            ScheduledFunction.objects.using(using)
            .filter(pk__in=[pk for pk in job_ids if pk is not None], state__in=FINAL_STATES)
            .values("pk", "state", "result", "error", "args")[:STRAGGLERS_PER_PASS]
        )
        settled = sum(_settle(row["pk"], row, using) for row in list(finished))
    if settled:
        logger.warning("journaled workflow steps left by a lost worker count=%d", settled)
    return settled
