"""Running claimed jobs: look up each one's function, then run it as a mutation (mutations.py: exactly
once) or as an action (actions.py: at most once, or per its retries), together with the jobs waiting behind
it when they can share its write. A job that is an item of a batch is counted in it once its final state
has committed (scheduling/batches.py)."""

from __future__ import annotations

from collections.abc import Callable, Collection
from datetime import datetime

from django.db import DEFAULT_DB_ALIAS
from django.utils import timezone

from ..calls.through import Through, direct
from ..core.registry import Function, registry
from ..exceptions import FunctionNotFound
from ..models import ScheduledFunction
from .actions import Actions, Settle, Watch
from .aio import AsyncRunner
from .mutations import Mutations
from .outcomes import Claimed, Outcomes, Pull, Runnable, guarded
from .store import DatabaseStore, Store


def _nothing_waiting() -> Claimed | None:
    return None


class Executor:
    """Runs claimed jobs for one worker. ``done(job)`` is called once for each job taken (from the
    queue or by ``pull``) whose outcome was written; ``watch(deadline, job)`` lets the worker time out
    the action running on a thread; ``leave((token, job))`` may hand back a job whose function this
    worker does not know, for a worker that does (True), instead of failing it (``deploys.py``);
    ``settle`` writes action successes and starts (the worker's ledger; by default, directly)."""

    def __init__(
        self,
        worker_id: str,
        using: str = DEFAULT_DB_ALIAS,
        clock: Callable[[], datetime] = timezone.now,
        done: Callable[[ScheduledFunction], None] = lambda job: None,
        action_group: int = 8,
        leave: Callable[[Claimed], bool] | None = None,
        store: Store | None = None,
        outcomes: Outcomes | None = None,
        settle: Settle | None = None,
        through: Through = direct,
        aio: AsyncRunner | None = None,
    ):
        self.outcomes = outcomes or Outcomes(worker_id, store or DatabaseStore(using), clock)
        self.leave, self.done, self.through, self.aio = leave, done, through, aio
        self.mutations = Mutations(self.outcomes, done)
        self.actions = Actions(self.outcomes, done, action_group, settle, through)

    def run(
        self,
        job: ScheduledFunction,
        token: str,
        watch: Watch = lambda deadline, job: None,
        abandoned: Callable[[], bool] = lambda: False,
        pull: Pull = _nothing_waiting,
    ) -> Claimed | None:
        """Run ``job`` and, while it is efficient to, the jobs ``pull`` hands over. Returns a job that was
        pulled but not run (the caller runs it next), or None."""
        fn = self._function(job, token)
        if fn is None:
            return None
        if fn.kind == "mutation":
            joined = {job.pk}

            def take(opened: float) -> tuple[Runnable | None, Claimed | None]:
                following, leftover = self.take_next(pull, "mutation", joined, opened)
                if following is not None and following[0].isolation != fn.isolation:  # another transaction's
                    return None, (following[2], following[1])
                if following is not None:
                    joined.add(following[1].pk)
                return following, leftover

            leftover: Claimed | None = self.through(lambda: self.mutations.run_together([(fn, job, token)], take))
            return leftover
        if fn.is_async and self.aio is not None:  # on the worker's event loop; this thread goes on
            self.aio.submit(fn, job, token)
            return None
        return self.actions.run((fn, job, token), watch, abandoned, lambda: self.take_next(pull, "action"))

    def _function(self, job: ScheduledFunction, token: str) -> Function | None:
        """The job's function, or None after leaving the job to another worker or failing it (unknown name,
        or registered as another kind)."""
        try:
            fn = registry.for_job(job.name)
            if fn.kind != job.kind:
                raise FunctionNotFound(f"{job.name} is registered as a {fn.kind}, but the job is a {job.kind}")
        except FunctionNotFound as exc:
            missing = exc
            guarded([(token, job)], self.through, lambda: self._unknown(job, token, missing))
            self.done(job)
            return None
        return fn

    def _unknown(self, job: ScheduledFunction, token: str, exc: FunctionNotFound) -> None:
        """A job whose function this worker cannot run: handed back for a worker that can, else failed."""
        if self.leave is not None and self.leave((token, job)):
            return
        started = job.started_at is not None  # by the claim: that counted the attempt
        self.outcomes.fail(
            job, token, exc, count_attempt=not started, started_at=job.started_at if started else self.outcomes.clock()
        )

    @staticmethod
    def take_next(
        pull: Pull, kind: str, joined: Collection[int] = (), claimed_before: float | None = None
    ) -> tuple[Runnable | None, Claimed | None]:
        """The next waiting job, if there is one: ``(runnable, None)`` if it is a ``kind`` that can run
        (its function known) and not one of the ``joined`` jobs, else ``(None, job)``, for the caller to
        hand back (unknown names fail there). A job already joined is a second claim of it (the first
        lost, to a recovery, while it waited here): the two must never share a transaction.

        ``claimed_before``: a job whose claim committed later is handed back too. A transaction whose
        snapshot was taken before that claim committed does not see the job as claimed (PostgreSQL's
        repeatable read and serializable): its completion would match no row, and roll the group back."""
        following = pull()
        if following is None:
            return None, None
        token, job = following
        if job.pk in joined or (
            claimed_before is not None and getattr(job, "claim_committed", claimed_before) > claimed_before
        ):
            return None, following
        try:
            fn = registry.for_job(job.name)
        except FunctionNotFound:
            return None, following
        if fn.is_async:  # never in a sync group: the event loop runs it (Executor.run)
            return None, following
        return ((fn, job, token), None) if fn.kind == kind == job.kind else (None, following)
