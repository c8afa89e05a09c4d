"""Helpers for your own test suites.

- ``run_due_jobs()`` runs every due job now, in this thread and on this connection, so it works inside
  ``TestCase`` transactions; ``advance=timedelta(...)`` runs what is due by then (a fake clock).
- ``assert_scheduled(fn, args)`` / ``assert_not_scheduled(fn, args)`` check what was scheduled.
- ``run_scheduled_immediately()`` runs each job as soon as its scheduling transaction commits
  (like an "eager" mode), delayed ones included unless ``include_delayed=False``; under ``TestCase``,
  when ``captureOnCommitCallbacks(execute=True)`` runs the callbacks, inside the block or around it.

- Workflows: ``run_due_jobs()`` runs their replays and steps too (``advance=timedelta(days=30)`` wakes a
  30-day ``step.sleep`` at once); ``send_workflow_event(run_id, name, payload)`` sends an event and runs
  what it makes due; ``assert_workflow_steps(run_id, [(kind, fn, state), ...])`` checks a run's journal.

Jobs run inline: action timeouts are not enforced here (the worker enforces them).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from typing import Any

from django.db import DEFAULT_DB_ALIAS, connections
from django.utils import timezone

from .core.registry import Function
from .models import ScheduledFunction, State, WorkflowStep
from .signals import job_scheduled
from .store.leases import claim
from .worker.executor import Executor
from .workflows import Workflows

WORKER_ID = "testing"
LEASE = timedelta(minutes=10)


def run_due_jobs(
    *,
    now: datetime | None = None,
    advance: timedelta | None = None,
    queues: list[str] | None = None,
    using: str = DEFAULT_DB_ALIAS,
    limit: int = 10_000,
) -> int:
    """Run every job due at ``now`` (default: the present, plus ``advance``), including jobs those
    jobs schedule when they are due too. Returns how many jobs ran.

    Without ``now`` the clock is the real one shifted by ``advance``, so a job scheduled "now" by a job
    that ran (``run_after(0, ...)``) is due too."""
    offset = advance or timedelta(0)

    def clock() -> datetime:
        return (now if now is not None else timezone.now()) + offset

    executor = Executor(WORKER_ID, using, clock=clock)
    ran = 0
    while ran < limit:
        token, jobs = claim(WORKER_ID, 1, clock(), LEASE, queues, using)
        if not jobs:
            return ran
        executor.run(jobs[0], token)
        ran += 1
    raise AssertionError(f"run_due_jobs stopped after {limit} jobs: do jobs keep scheduling more?")


def run_job(job_id: int, using: str = DEFAULT_DB_ALIAS) -> None:
    """Run one pending job now, whatever its scheduled time."""
    token = uuid.uuid4().hex
    jobs = ScheduledFunction.objects.using(using)
    if jobs.filter(pk=job_id, state=State.PENDING).update(
        state=State.IN_PROGRESS, worker_id=WORKER_ID, token=token, lease_expires_at=timezone.now() + LEASE
    ):
        Executor(WORKER_ID, using).run(jobs.get(pk=job_id), token)


def scheduled(
    fn: Function | None = None,
    args: dict[str, Any] | None = None,
    *,
    state: str | None = State.PENDING,
    using: str = DEFAULT_DB_ALIAS,
) -> list[ScheduledFunction]:
    """Jobs of ``fn`` (all functions if None) whose arguments equal ``args`` (any if None)."""
    jobs = ScheduledFunction.objects.using(using).order_by("scheduled_time", "id")
    if fn is not None:
        jobs = jobs.filter(name=fn.name)
    if state is not None:
        jobs = jobs.filter(state=state)
    found = list(jobs)
    if args is not None:
        expected = fn.validator.to_json(args) if fn is not None else args
        found = [job for job in found if job.args == expected]
    return found


def assert_scheduled(
    fn: Function,
    args: dict[str, Any] | None = None,
    *,
    count: int | None = None,
    state: str | None = State.PENDING,
    using: str = DEFAULT_DB_ALIAS,
) -> list[ScheduledFunction]:
    """Assert that ``fn`` was scheduled (with ``args``, ``count`` times if given); returns the jobs."""
    found = scheduled(fn, args, state=state, using=using)
    if (count is None and not found) or (count is not None and len(found) != count):
        present = [(j.name, j.args, j.state) for j in ScheduledFunction.objects.using(using).order_by("id")]
        wanted = f"{count} job(s)" if count is not None else "a job"
        raise AssertionError(
            f"expected {wanted} of {fn.name} with args {args!r} in state {state!r}, found "
            f"{len(found)}; scheduled: {present}"
        )
    return found


def assert_not_scheduled(fn: Function, args: dict[str, Any] | None = None, *, using: str = DEFAULT_DB_ALIAS) -> None:
    assert_scheduled(fn, args, count=0, using=using)


def workflow_steps(run_id: int, using: str = DEFAULT_DB_ALIAS) -> list[tuple[str, str, str]]:
    """The run's journal: ``(kind, function, state)`` per step, in order (an event's name as its function,
    ``""`` for a sleep)."""
    steps = WorkflowStep.objects.using(using).filter(run_id=run_id).order_by("index")
    return [(kind, function, state) for kind, function, state in steps.values_list("kind", "function", "state")]


def assert_workflow_steps(
    run_id: int, expected: list[tuple[str, Function | str, str]], *, using: str = DEFAULT_DB_ALIAS
) -> None:
    """Assert the run's journal is ``expected``: ``(kind, function or its name, state)`` per step."""
    wanted = [(kind, fn.name if isinstance(fn, Function) else fn, state) for kind, fn, state in expected]
    found = workflow_steps(run_id, using)
    if found != wanted:
        raise AssertionError(f"workflow run {run_id}: expected the steps {wanted}, found {found}")


def send_workflow_event(
    run_id: int,
    name: str,
    payload: Any = None,
    *,
    run: bool = True,
    advance: timedelta | None = None,
    using: str = DEFAULT_DB_ALIAS,
) -> bool:
    """Send the event ``name`` to the run and, with ``run``, run the jobs due then (``run_due_jobs``).
    Returns what ``workflows.send_event`` does: False if the run had finished."""
    sent = Workflows(using).send_event(run_id, name, payload)
    if run:
        run_due_jobs(advance=advance, using=using)
    return sent


@contextmanager
def run_scheduled_immediately(*, include_delayed: bool = True, using: str = DEFAULT_DB_ALIAS) -> Iterator[None]:
    """Run each job scheduled inside the block as soon as its transaction commits, and the jobs those
    jobs schedule.

    Under ``TestCase`` (one transaction per test) nothing commits: wrap the code in
    ``self.captureOnCommitCallbacks(execute=True)``, inside this block or around it, or call
    ``run_due_jobs()`` instead. A transaction still open when the block ends runs the block's jobs
    when it commits (or its callbacks are run by ``captureOnCommitCallbacks``).
    """

    def run(sender: Any, job: ScheduledFunction, **kwargs: Any) -> None:
        if job.state == State.PENDING and (include_delayed or job.scheduled_time <= timezone.now()):
            run_job(job.pk, using)

    connection = connections[using]
    registered = len(connection.run_on_commit)
    uid = f"scheduled_actions_testing_{uuid.uuid4().hex}"
    job_scheduled.connect(run, weak=False, dispatch_uid=uid)
    try:
        yield
    finally:
        job_scheduled.disconnect(dispatch_uid=uid)
        _stay_eager(connection, registered, run)


def _stay_eager(connection: Any, registered: int, receiver: Callable[..., None]) -> None:
    """Make the commit callbacks registered since the ``registered``-th, which have not run yet (the
    transaction is still open), run with ``receiver`` connected: they announce the jobs scheduled in the
    block (``job_scheduled``), which then run whenever they are announced. Callbacks stay in place, so
    ``captureOnCommitCallbacks`` around the block finds them."""
    callbacks = connection.run_on_commit  # (savepoint ids, callback, robust), as Django keeps them
    for i in range(registered, len(callbacks)):
        savepoints, callback, robust = callbacks[i]
        callbacks[i] = (savepoints, _with_receiver(connection, callback, receiver), robust)


def _with_receiver(connection: Any, callback: Callable[[], Any], receiver: Callable[..., None]) -> Callable[[], Any]:
    def eager() -> Any:
        registered = len(connection.run_on_commit)
        uid = f"scheduled_actions_testing_{uuid.uuid4().hex}"
        job_scheduled.connect(receiver, weak=False, dispatch_uid=uid)
        try:
            return callback()
        finally:
            job_scheduled.disconnect(dispatch_uid=uid)
            _stay_eager(connection, registered, receiver)  # the jobs scheduled by the jobs it ran

    return eager
