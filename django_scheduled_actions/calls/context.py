"""The ``ctx`` argument of queries, mutations and actions."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ..core.auth import ANONYMOUS, Auth

if TYPE_CHECKING:
    from ..core.registry import Function
    from ..scheduling.scheduler import Scheduler


@dataclass(frozen=True)
class JobInfo:
    """The job a function runs as: ``ctx.job`` (``None`` when not run as a job)."""

    id: int
    name: str
    attempt: int
    scheduled_time: datetime
    kind: str | None = None  # "mutation" | "action"; a mutation job completes in its body's transaction


class QueryCtx:
    kind = "query"

    def __init__(self, job: JobInfo | None, using: str, auth: Auth | None = None):
        self.job = job
        self.using = using
        self.auth = auth or ANONYMOUS  # the caller; passed on to everything called through ctx.run_*

    def run_query(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        from .run import run_query

        return run_query(fn, args or {}, using=self.using, job=self.job, auth=self.auth)


class MutationCtx(QueryCtx):
    kind = "mutation"

    @property
    def scheduler(self) -> Scheduler:
        from ..scheduling.scheduler import Scheduler

        return Scheduler(using=self.using, parent=self.job)

    def run_mutation(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        from .run import run_mutation

        return run_mutation(fn, args or {}, using=self.using, job=self.job, auth=self.auth)

    def run_action(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        """Run an action: from an action. In a mutation this raises ``ActionInTransactionError`` (the
        mutation's transaction is open); schedule the action with ``ctx.scheduler`` instead."""
        from .run import run_action

        return run_action(fn, args or {}, using=self.using, job=self.job, auth=self.auth)


class ActionCtx(MutationCtx):
    kind = "action"
