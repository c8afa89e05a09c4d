"""Replaying a workflow's body: the ``step`` it receives, and the internal mutation that runs it.

Each replay (a job of ``RESUME``, a mutation) locks the run, reads its journal and runs the body from
the top. ``step`` hands back journaled results; the first step not journaled yet is written (and its job
scheduled, or its wake-up) and the replay ends there: ``Suspend`` unwinds the body, which is abandoned.
Everything a replay writes commits together with it, or not at all. A query step runs inside the replay,
read-only, and is journaled with it. A step asked for at an index where the journal holds another one
fails the run with ``WorkflowNondeterminism``, naming both. A replay that fails on a database error a repeat
of its job would not mend (not a conflict, a lock wait or a lost connection) is undone (a savepoint) and
replayed later, with backoff; after ``journal.REPLAY_RETRY.max_attempts`` such failures the run fails. A body
that raises fails the run, whatever it raises (``SystemExit`` and other ``BaseException`` too), except
``KeyboardInterrupt`` (the process interrupted): that replay is undone, its job fails, and the run is
replayed again later (``journal.replay_job_failed``), so no run is left running with nothing due.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db import DatabaseError, transaction
from django.utils import timezone

from ..core import guards, values
from ..core.registry import Function, internal_mutation
from ..core.retry import RetryPolicy
from ..core.workflows import workflow_registry
from ..exceptions import StepFailed, WorkflowNondeterminism
from ..models import WorkflowRun, WorkflowStep
from ..store.errors import is_conflict, is_connection_error, is_lock_timeout, is_unique_race
from . import journal, steps

logger = logging.getLogger("django_scheduled_actions")
Kind, Step = WorkflowStep.Kind, WorkflowStep.State


class Suspend(BaseException):
    """Unwinds the body at the first unfinished step (a ``BaseException``: ``except Exception`` in a
    body does not catch it). ``state``: what the run waits in, running or waiting."""

    def __init__(self, state: str):
        super().__init__(state)
        self.state = state


class Steps:
    """The ``step`` a workflow's body receives."""

    def __init__(self, run: WorkflowRun, journaled: list[WorkflowStep], ctx: Any, now: datetime):
        self._run, self._ctx, self._now = run, ctx, now
        self._journal = {s.index: s for s in journaled}  # by index: a retried parallel's failed items are gaps
        self._using: str = ctx.using
        self._next = 0
        self.nondeterminism: WorkflowNondeterminism | None = None

    # --- the steps ---

    def run_query(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        return self._one(journal.check_step_function(fn, ("query",), "step.run_query()"), args, None)

    def run_mutation(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        return self._one(journal.check_step_function(fn, ("mutation",), "step.run_mutation()"), args, None)

    def run_action(self, fn: Function, args: dict[str, Any] | None = None, *, retry: RetryPolicy | None = None) -> Any:
        if retry is not None and not isinstance(retry, RetryPolicy):
            raise TypeError(f"retry= must be a RetryPolicy, got {retry!r}")
        return self._one(journal.check_step_function(fn, ("action",), "step.run_action()"), args, retry)

    def parallel(self, items: Sequence[tuple[Function, dict[str, Any] | None]]) -> list[Any]:
        """Run each ``(fn, args)`` as its own step, all at once (concurrent jobs); their results in order.
        Once all have finished, a failed one raises ``StepFailed`` (the first, in order)."""
        checked = []
        for fn, args in items:
            fn = journal.check_step_function(fn, ("query", "mutation", "action"), "step.parallel()")
            checked.append((fn, fn.validator.to_json(args or {})))
        group = self._next
        taken = [self._take(fn.kind, fn.name, json_args, group, fn) for fn, json_args in checked]
        if any(not s.is_finished for s in taken):
            raise Suspend(WorkflowRun.State.RUNNING)
        return [self._outcome(s) for s in taken]

    def sleep(self, duration: float | timedelta) -> None:
        """Wait ``duration`` (seconds or a ``timedelta``) durably: the run is a row and a due job meanwhile."""
        seconds = max(values.delay_seconds(duration, "step.sleep()"), 0.0)
        index = self._next
        self._next += 1
        found = self._journaled(index, Kind.SLEEP, "")
        if found is None:
            self._wait(index, Kind.SLEEP, "", {"seconds": seconds}, seconds)
        self._outcome(found)

    def wait_for_event(self, name: str, timeout: float | timedelta | None = None) -> Any:
        """The payload of the next event ``name`` sent to this run (kept if sent before), or None once
        ``timeout`` has passed without one."""
        values.key(name, "the event name")
        if timeout is not None:
            timeout = values.seconds(timeout.total_seconds() if isinstance(timeout, timedelta) else timeout, "timeout")
        index = self._next
        self._next += 1
        found = self._journaled(index, Kind.EVENT, name)
        if found is None:
            kept, payload = journal.take_event(self._run, name, self._using)
            if kept:
                self._write(index, Kind.EVENT, name, {"timeout": timeout}, Step.SUCCESS, result=payload)
                return payload
            self._wait(index, Kind.EVENT, name, {"timeout": timeout}, timeout)
        return self._outcome(found)

    # --- the journal ---

    def _one(self, fn: Function, args: dict[str, Any] | None, retry: RetryPolicy | None) -> Any:
        json_args = fn.validator.to_json(args or {})
        return self._outcome(self._take(fn.kind, fn.name, json_args, None, fn, retry))

    def _take(
        self,
        kind: str,
        name: str,
        json_args: dict[str, Any],
        group: int | None,
        fn: Function,
        retry: RetryPolicy | None = None,
    ) -> WorkflowStep:
        """The journaled step at the next index, or a new one: a query run now, else a job scheduled."""
        index = self._next
        self._next += 1
        found = self._journaled(index, kind, name, group)
        if found is not None:
            return found
        if kind == Kind.QUERY:
            return self._query(index, fn, json_args, group)
        step = self._write(index, kind, name, json_args, Step.RUNNING, group=group)
        step.job_id = steps.schedule(self._run, index, fn, json_args, retry, self._using)
        step.save(using=self._using, update_fields=["job_id"])
        return step

    def _query(self, index: int, fn: Function, json_args: dict[str, Any], group: int | None) -> WorkflowStep:
        try:
            result = self._ctx.run_query(fn, json_args)
        except DatabaseError as exc:
            if is_conflict(exc):
                raise
            return self._write(
                index, Kind.QUERY, fn.name, json_args, Step.FAILED, group=group, error=journal.describe(exc)
            )
        except Exception as exc:
            return self._write(
                index, Kind.QUERY, fn.name, json_args, Step.FAILED, group=group, error=journal.describe(exc)
            )
        return self._write(index, Kind.QUERY, fn.name, json_args, Step.SUCCESS, group=group, result=result)

    def _wait(self, index: int, kind: str, name: str, args: dict[str, Any], seconds: float | None) -> None:
        wake_at = None if seconds is None else self._now + timedelta(seconds=seconds)
        step = self._write(index, kind, name, args, Step.WAITING, wake_at=wake_at)
        if wake_at is not None:
            step.job_id = journal.schedule_resume(self._run, self._using, at=wake_at, wake=index)
            step.save(using=self._using, update_fields=["job_id"])
        raise Suspend(WorkflowRun.State.WAITING)

    def _write(self, index: int, kind: str, name: str, args: dict[str, Any], state: str, **fields: Any) -> WorkflowStep:
        step = WorkflowStep.objects.using(self._using).create(
            run=self._run, index=index, kind=kind, function=name, args=args, state=state, **fields
        )
        if state in (Step.SUCCESS, Step.FAILED):
            step.finished_at = step.created_at
            step.save(using=self._using, update_fields=["finished_at"])
        return step

    def _journaled(self, index: int, kind: str, name: str, group: int | None = None) -> WorkflowStep | None:
        if self.nondeterminism is not None:  # caught by the body: no step runs after it
            raise self.nondeterminism
        found = self._journal.get(index)
        if found is None:
            return None
        if (found.kind, found.function, found.group) != (kind, name, group):
            self.nondeterminism = WorkflowNondeterminism(
                f"workflow {self._run.name} run {self._run.pk}: the replay asks for step {index} "
                f"{_label(kind, name, group)}, but the journal holds step {index} "
                f"{_label(found.kind, found.function, found.group)}"
            )
            raise self.nondeterminism
        return found

    def _outcome(self, step: WorkflowStep | None) -> Any:
        if step is None or step.state == Step.CANCELED:
            raise Suspend(WorkflowRun.State.RUNNING)
        if step.state == Step.SUCCESS:
            return step.result
        if step.state == Step.FAILED:
            raise StepFailed(step.function, step.error)
        raise Suspend(WorkflowRun.State.WAITING if step.state == Step.WAITING else WorkflowRun.State.RUNNING)

    def check_finished(self) -> None:
        """The body returned: the journal must hold no step it did not ask for."""
        later = [i for i in self._journal if i >= self._next]
        if later:
            extra = self._journal[min(later)]
            self.nondeterminism = WorkflowNondeterminism(
                f"workflow {self._run.name} run {self._run.pk}: the replay returned after {self._next} steps, "
                f"but the journal holds step {extra.index} {_label(extra.kind, extra.function, extra.group)}"
            )
            raise self.nondeterminism


def _label(kind: str, name: str, group: int | None) -> str:
    described = {"sleep": "sleep", "event": f"wait_for_event {name!r}"}.get(kind, f"{kind} {name}")
    return described if group is None else f"{described} (item of the parallel at {group})"


@internal_mutation(name=journal.RESUME)
def resume(ctx: Any, run_id: int, wake: int | None = None, failures: int = 0) -> None:
    """Replay the run's body from its journal; ``wake``: the index of the sleep or timed wait that ends;
    ``failures``: how many replays before this one failed on a database error (``replay_failed``)."""
    with guards.policy("allow"):
        run = journal.lock_run(run_id, ctx.using)
        if run is None or run.is_finished:
            return
        if wake is not None:
            journal.finish_step(run, wake, Step.SUCCESS, ctx.using, result=None)
        try:
            with transaction.atomic(using=ctx.using):  # a savepoint: a database error undoes the replay only
                replay(run, journal.steps_of(run, ctx.using), ctx)
        except DatabaseError as exc:
            if is_conflict(exc) or is_connection_error(exc) or is_lock_timeout(exc) or is_unique_race(exc):
                raise  # the worker runs the whole job again (retried, handed back)
            replay_failed(run_id, failures + 1, exc, ctx.using)


# A replay reads and writes only its run's journal, and every writer of a run's journal locks the run first
# (journal.lock_run): that row lock orders them. Under serializable isolation the journal's index range reads
# also took predicate locks on pages shared with other runs, whose concurrent replays then conflicted
# (measured: a rollback per step, 1,000 workflows of 5 steps at 28 steps/s).
resume.isolation = "read committed"


def replay_failed(run_id: int, failures: int, exc: DatabaseError, using: str) -> None:
    """A replay failed on a database error that a repeat of the job would not mend at once (its writes
    undone, the job's own transaction intact): replay again later, with ``journal.REPLAY_RETRY``'s backoff,
    or, once its attempts are spent, fail the run. Either way the run is never left running with nothing due."""
    run = journal.lock_run(run_id, using)
    assert run is not None  # locked by this transaction already
    if failures < journal.REPLAY_RETRY.max_attempts:
        logger.warning("workflow replay failed; retrying run=%s failures=%d error=%r", run_id, failures, exc)
    error = f"the replay failed {failures} times on a database error; the last one:\n{journal.describe(exc)}"
    journal.replay_later(run, failures, error, using)


def replay(run: WorkflowRun, journaled: list[WorkflowStep], ctx: Any) -> None:
    using = ctx.using
    now = max(timezone.now(), ctx.job.scheduled_time) if ctx.job is not None else timezone.now()
    step = Steps(run, journaled, ctx, now)
    error: BaseException | None
    try:
        wf = workflow_registry.get(run.name)
        result = wf.fn(step, **wf.validator.to_python(run.args))
        step.check_finished()
        result = wf.validator.result_to_json(result)
    except Suspend as suspended:
        if step.nondeterminism is None:
            if run.state != suspended.state:
                journal.set_state(run, suspended.state, using)
            return
        result, error = None, step.nondeterminism
    except DatabaseError:
        raise  # the replay's transaction is the one that failed: the job runs it again
    except KeyboardInterrupt:
        raise  # the process is being interrupted: the replay is undone, and resumed later (journal.replay_job_failed)
    except BaseException as exc:  # FunctionNotFound (no such workflow here), SystemExit, a BaseException of its own
        result, error = None, step.nondeterminism or exc
    else:
        error = step.nondeterminism  # a body that caught it and returned all the same
    if error is None:
        journal.set_state(run, WorkflowRun.State.SUCCESS, using, result=result, finished_at=timezone.now())
    else:
        journal.set_state(
            run, WorkflowRun.State.FAILED, using, error=journal.describe(error), finished_at=timezone.now()
        )
