"""The journal's writes: a run's row locked first by every writer (the body's replay, a step's completion,
an event, a cancel), its steps' state changes as conditional updates, and the jobs that resume it.

Every writer takes the run's row with ``SELECT ... FOR UPDATE`` before anything else, so the writes to one
run are serialised in one order (SQLite's single writer does the same); a step is written once, at its
index (``sa_workflow_step_unique``), and changes state only from ``running`` or ``waiting``.
"""

from __future__ import annotations

import logging
import traceback
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .. import signals, telemetry
from ..core.registry import Function, registry
from ..core.retry import RetryPolicy
from ..models import ScheduledFunction, WorkflowRun, WorkflowStep
from ..scheduling import changes
from ..scheduling.scheduler import Scheduler
from ..store.transactions import run_in_short_transaction

logger = logging.getLogger("django_scheduled_actions")
RESUME = "django_scheduled_actions.workflows:resume"  # the internal mutation that replays a run's body
Run, Step = WorkflowRun.State, WorkflowStep.State
OPEN_STEPS = (Step.RUNNING, Step.WAITING)
REPLAY_RETRY = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=60.0)  # replays failed, run again


def describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()


def lock_run(run_id: int, using: str) -> WorkflowRun | None:
    """The run's row, locked until the transaction ends (None if there is none)."""
    return WorkflowRun.objects.using(using).select_for_update().filter(pk=run_id).first()


def steps_of(run: WorkflowRun, using: str) -> list[WorkflowStep]:
    return list(WorkflowStep.objects.using(using).filter(run_id=run.pk).order_by("index"))


def schedule_resume(
    run: WorkflowRun, using: str, *, at: datetime | None = None, wake: int | None = None, failures: int = 0
) -> int:
    """Schedule a replay of ``run``'s body (at ``at``, else now), in the caller's transaction. ``wake``:
    the index of the sleep or timed wait it ends; ``failures``: the replays failed before it. Returns the
    job's id."""
    args: dict[str, Any] = {"run_id": run.pk}
    if wake is not None:
        args["wake"] = wake
    if failures:
        args["failures"] = failures
    resume = registry.get(RESUME)
    scheduler = Scheduler(using=using)
    with telemetry.continuing(run.trace_context):  # every replay, whoever asks for it, in the run's trace
        job_id = (
            scheduler.run_at(at, resume, args, queue=run.queue)
            if at
            else scheduler.run_after(0, resume, args, queue=run.queue)
        )
    assert job_id is not None  # no idempotency key: always written
    return job_id


def replay_later(run: WorkflowRun, failures: int, error: str, using: str) -> None:
    """After the ``failures``-th failed replay of the (locked) run: replay it again later with
    ``REPLAY_RETRY``'s backoff or, once those attempts are spent, fail it with ``error``."""
    if failures < REPLAY_RETRY.max_attempts:
        at = timezone.now() + timedelta(seconds=REPLAY_RETRY.backoff(failures))
        schedule_resume(run, using, at=at, failures=failures)
        return
    set_state(run, Run.FAILED, using, error=error, finished_at=timezone.now())


def replay_job_failed(job: ScheduledFunction, using: str) -> None:
    """A replay's job failed (its replay interrupted by ``KeyboardInterrupt``, or an error outside the
    replay): the run, if still open, is replayed again later (``replay_later``), so it is never left running
    with nothing due. Called once the job's failure has committed (``steps.job_finished``)."""
    args = job.args if isinstance(job.args, dict) else {}
    run_id, failures = args.get("run_id"), int(args.get("failures", 0)) + 1
    if not isinstance(run_id, int):
        return

    def body() -> None:
        run = lock_run(run_id, using)
        if run is None or run.is_finished:
            return
        logger.warning("workflow replay job failed run=%s job=%s failures=%d", run_id, job.pk, failures)
        replay_later(run, failures, f"the replay's job failed {failures} times; the last one: job #{job.pk}", using)

    run_in_short_transaction(body, using)


def finish_step(
    run: WorkflowRun,
    index: int,
    state: str,
    using: str,
    *,
    result: Any = None,
    error: str = "",
    job_id: int | None = None,
) -> bool:
    """Move the run's open step ``index`` to ``state`` (only if it is still open, and, with ``job_id``,
    still that job's); returns whether it did."""
    open_step = WorkflowStep.objects.using(using).filter(run_id=run.pk, index=index, state__in=OPEN_STEPS)
    if job_id is not None:
        open_step = open_step.filter(job_id=job_id)
    return bool(open_step.update(state=state, result=result, error=error, finished_at=timezone.now()))


def settle_step(run_id: int, index: int, job_id: int, state: str, result: Any, error: str, using: str) -> bool:
    """Journal the outcome of a step's job (``state``: success or failed) and resume the run, once."""

    def body() -> bool:
        run = lock_run(run_id, using)
        if run is None or run.is_finished:
            return False
        if not finish_step(run, index, state, using, result=result, error=error, job_id=job_id):
            return False  # journaled already (another settle of the same job, or lease recovery's), or canceled
        schedule_resume(run, using)
        return True

    return run_in_short_transaction(body, using)


def cancel_run(run_id: int, using: str) -> bool:
    """Cancel the run: its pending step jobs never run, a running action finishes (its job stays
    canceled), a running mutation's completion matches no row and rolls back; no step or replay runs
    after. Returns False if the run had finished already."""

    def body() -> bool:
        run = lock_run(run_id, using)
        if run is None or run.is_finished:
            return False
        now = timezone.now()
        open_steps = WorkflowStep.objects.using(using).filter(run_id=run.pk, state__in=OPEN_STEPS)
        job_ids = [pk for pk in open_steps.values_list("job_id", flat=True) if pk is not None]
        if job_ids:
            changes.cancel(ScheduledFunction.objects.using(using).filter(pk__in=job_ids), now)
        open_steps.update(state=Step.CANCELED, finished_at=now)
        set_state(run, Run.CANCELED, using, finished_at=now)
        return True

    return run_in_short_transaction(body, using)


def retry_run(run_id: int, using: str) -> bool:
    """Give a failed run a new attempt from its failed step: the journal entry of its last failed step and
    every later one are dropped (their open jobs canceled), the finished steps before it are kept (and, for
    an item of a ``step.parallel``, its group's succeeded items: only its failed or unfinished ones run
    again), and the run replays from them (announced as ``workflow_started``, in state running). A run that
    failed with no failed step (its body raised) keeps its whole journal. Returns False if the run had not
    failed."""

    def body() -> bool:
        run = lock_run(run_id, using)
        if run is None or run.state != Run.FAILED:
            return False
        dropped = _from_the_failed_step(WorkflowStep.objects.using(using).filter(run_id=run.pk))
        if dropped is not None:
            job_ids = [pk for pk in dropped.filter(state__in=OPEN_STEPS).values_list("job_id", flat=True) if pk]
            if job_ids:
                changes.cancel(ScheduledFunction.objects.using(using).filter(pk__in=job_ids))
            dropped.delete()
        set_state(run, Run.RUNNING, using, result=None, error="", finished_at=None)
        schedule_resume(run, using)
        announce(signals.workflow_started, run, using)
        return True

    return run_in_short_transaction(body, using)


def _from_the_failed_step(journaled: Any) -> Any:
    """The journal entries a retry drops: the last failed step and every later one; if that step is an item
    of a ``step.parallel``, its group's items that did not succeed and every step after the group (the
    succeeded items are kept: the replay returns their results). None if no step failed."""
    failed = journaled.filter(state=Step.FAILED).order_by("-index").values_list("index", "group").first()
    if failed is None:
        return None
    index, group = failed
    if group is None:
        return journaled.filter(index__gte=index)
    last = journaled.filter(group=group).order_by("-index").values_list("index", flat=True).first()
    return journaled.filter(Q(index__gt=last) | (Q(group=group) & ~Q(state=Step.SUCCESS)))


def deliver_event(run_id: int, name: str, payload: Any, using: str) -> bool:
    """Hand ``payload`` to the run's step waiting for the event ``name`` and resume the run; with no such
    step yet, keep it in the run's inbox for the first wait on ``name``. False if the run has finished."""

    def body() -> bool:
        run = lock_run(run_id, using)
        if run is None or run.is_finished:
            return False
        waiting = (
            WorkflowStep.objects.using(using)
            .filter(run_id=run.pk, kind=WorkflowStep.Kind.EVENT, function=name, state=Step.WAITING)
            .order_by("index")
            .first()
        )
        if waiting is None:
            run.inbox = [*run.inbox, {"name": name, "payload": payload}]
            run.save(using=using, update_fields=["inbox"])
            return True
        finish_step(run, waiting.index, Step.SUCCESS, using, result=payload)
        if waiting.job_id is not None:  # its timeout will not be needed
            changes.cancel(ScheduledFunction.objects.using(using).filter(pk=waiting.job_id))
        schedule_resume(run, using)
        return True

    return run_in_short_transaction(body, using)


def take_event(run: WorkflowRun, name: str, using: str) -> tuple[bool, Any]:
    """The first event ``name`` kept in the (locked) run's inbox, taken out of it: ``(True, payload)``, or
    ``(False, None)`` if there is none."""
    for i, event in enumerate(run.inbox):
        if event.get("name") == name:
            run.inbox = run.inbox[:i] + run.inbox[i + 1 :]
            run.save(using=using, update_fields=["inbox"])
            return True, event.get("payload")
    return False, None


def set_state(run: WorkflowRun, state: str, using: str, **fields: Any) -> None:
    """Move the (locked) run to ``state``; a final one is announced (``workflow_finished``) on commit."""
    run.state = state
    for name, value in fields.items():
        setattr(run, name, value)
    run.save(using=using, update_fields=["state", *fields])
    if run.is_finished:
        announce(signals.workflow_finished, run, using)


def announce(signal: Any, run: WorkflowRun, using: str) -> None:
    """Send ``signal`` about ``run`` (as it is now) when the transaction commits, if anyone listens."""
    if not signal.has_listeners(WorkflowRun):
        return
    payload = {"run_id": run.pk, "workflow": run.name, "state": run.state, "result": run.result, "error": run.error}

    def send() -> None:
        for receiver, response in signal.send_robust(sender=WorkflowRun, **payload):
            if isinstance(response, Exception):
                logger.error("signal receiver failed receiver=%r run=%s", receiver, run.pk, exc_info=response)

    transaction.on_commit(send, using=using)


def check_step_function(fn: Any, kinds: tuple[str, ...], what: str) -> Function:
    if not isinstance(fn, Function) or fn.kind not in kinds:
        raise TypeError(f"{what} takes a function decorated as a {' or '.join(kinds)}, got {fn!r}")
    return fn
