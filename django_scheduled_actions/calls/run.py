"""Running functions: ``run_query``, ``run_mutation``, ``run_action``, and the ``ctx`` each body receives.

These are what views, tests and the shell call, what ``ctx.run_*`` calls inside functions, and what
the worker calls for a job. Arguments are validated first; nothing runs or is written on a mismatch.
"""

from __future__ import annotations

import asyncio
from typing import Any

from asgiref.sync import async_to_sync
from django.db import DEFAULT_DB_ALIAS

from .. import telemetry
from ..conf import app_settings
from ..core import guards, values
from ..core.auth import ANONYMOUS, Auth
from ..core.jobs import JobInfo
from ..core.registry import Function
from ..exceptions import ActionInTransactionError, QueryWriteError
from ..scheduling.scheduler import Scheduler
from ..store.transactions import in_callers_transaction, run_in_mutation_transaction, run_in_query_transaction
from ..workflows import Workflows
from . import idempotency
from .through import Awaited, Awaiting, Routed, Through, direct, on_callers_thread


def _check_kind(fn: Any, kind: str, runner: str) -> Function:
    if not isinstance(fn, Function):
        raise TypeError(f"{runner}() takes a function decorated with @{kind} or @internal_{kind}, got {fn!r}")
    if fn.kind != kind:
        raise TypeError(f"{runner}() takes a {kind}, but {fn.name} is a {fn.kind}")
    return fn


def prepare_args(fn: Function, args: Any, *, from_json: bool = False) -> dict[str, Any]:
    """Validate ``args`` and return the Python values the body receives."""
    return fn.validator.to_python(fn.validator.to_json(args, from_json=from_json))


def run_query(
    fn: Function,
    args: dict[str, Any] | None = None,
    *,
    using: str = DEFAULT_DB_ALIAS,
    job: JobInfo | None = None,
    auth: Auth | None = None,
) -> Any:
    """Run a query read-only in a consistent snapshot and return its JSON-able result.

    ``auth`` is the caller (``ctx.auth``); ``None`` means anonymous.
    """
    fn = _check_kind(fn, "query", "run_query")
    kwargs = prepare_args(fn, {} if args is None else args)

    with guards.policy("query"):
        result = run_in_query_transaction(lambda: fn.fn(QueryCtx(job, using, auth), **kwargs), using)
    return fn.validator.result_to_json(result)


def call_mutation_body(
    fn: Function, kwargs: dict[str, Any], using: str, job: JobInfo | None, auth: Auth | None = None
) -> Any:
    """The body of a mutation, inside its transaction; its result is checked against its return annotation
    there, so a mismatch rolls the transaction back."""
    return fn.validator.result_to_json(fn.fn(MutationCtx(job, using, auth), **kwargs))


def run_mutation(
    fn: Function,
    args: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
    job: JobInfo | None = None,
    auth: Auth | None = None,
) -> Any:
    """Run a mutation in one serializable transaction (a savepoint inside an open one).

    With ``idempotency_key``, a repeat while the key is held returns the first call's stored result; a
    repeat with other arguments raises ``IdempotencyKeyReused``.
    """
    fn = _check_kind(fn, "mutation", "run_mutation")
    if guards.current() == "query":
        raise QueryWriteError(f"a query cannot run the mutation {fn.name}")
    kwargs = prepare_args(fn, {} if args is None else args)
    body = lambda: call_mutation_body(fn, kwargs, using, job, auth)  # noqa: E731
    if idempotency_key is not None:
        return idempotency.run_mutation_once(
            values.key(idempotency_key), fn.name, using, body, idempotency.fingerprint(fn, kwargs)
        )
    with guards.policy("allow"):
        return run_in_mutation_transaction(body, using)


def call_action_body(
    fn: Function,
    kwargs: dict[str, Any],
    using: str,
    job: JobInfo | None,
    auth: Auth | None = None,
    through: Through = direct,
) -> Any:
    """A sync action's body on this thread; ``through`` runs its ``ctx``'s database work (the worker's
    connections)."""
    mode: guards.Policy = "action" if app_settings.STRICT_ACTIONS else "allow"
    with guards.policy(mode):
        result = fn.fn(ActionCtx(job, using, auth, through), **kwargs)
    return fn.validator.result_to_json(result)


async def call_async_action_body(
    fn: Function,
    kwargs: dict[str, Any],
    using: str,
    job: JobInfo | None,
    auth: Auth | None = None,
    awaited: Awaited = on_callers_thread,
    through: Through = direct,
) -> Any:
    """An async action's body, awaited; ``awaited`` runs its ``ctx``'s database work off the event loop."""
    result = await fn.fn(AsyncActionCtx(job, using, auth, awaited, through), **kwargs)
    return fn.validator.result_to_json(result)


def run_action(
    fn: Function,
    args: dict[str, Any] | None = None,
    *,
    idempotency_key: str | None = None,
    using: str = DEFAULT_DB_ALIAS,
    job: JobInfo | None = None,
    auth: Auth | None = None,
) -> Any:
    """Run an action here and now, outside any transaction, and return its result (an ``async def`` one
    runs to completion, its database work on this thread, as Django's ``async_to_sync`` does).

    Called inside a mutation or an open transaction it raises ``ActionInTransactionError``: a rollback
    would undo the writes of its ``ctx.run_mutation`` calls (which would join that transaction) but not
    its external calls, and a conflict retry of the mutation would repeat them.

    With ``idempotency_key``, a repeat returns the stored result; while the first call still runs, a
    repeat raises ``IdempotencyKeyInProgress``; a repeat with other arguments ``IdempotencyKeyReused``.
    """
    return _run_action(fn, args, idempotency_key, using, job, auth, direct)


def _run_action(
    fn: Function,
    args: dict[str, Any] | None,
    idempotency_key: str | None,
    using: str,
    job: JobInfo | None,
    auth: Auth | None,
    through: Through,
) -> Any:
    fn = _check_kind(fn, "action", "run_action")
    if guards.current() == "query":
        raise QueryWriteError(f"a query cannot run the action {fn.name}")
    if in_callers_transaction(using):
        raise ActionInTransactionError(
            f"cannot run the action {fn.name} inside a mutation or an open transaction (transaction.atomic(), "
            "ATOMIC_REQUESTS): a rollback or a conflict retry would undo its writes or repeat its external "
            "calls. Schedule it instead, with ctx.scheduler.run_after(0, the_action, args) (it runs once the "
            "transaction commits), or call it after the transaction."
        )
    kwargs = prepare_args(fn, {} if args is None else args)

    def body() -> Any:
        if fn.is_async:
            return async_to_sync(call_async_action_body)(fn, kwargs, using, job, auth)
        return call_action_body(fn, kwargs, using, job, auth, through)

    if idempotency_key is not None:
        timeout = fn.timeout if fn.timeout is not None else float(app_settings.ACTION_TIMEOUT)
        return idempotency.run_action_once(
            values.key(idempotency_key), fn.name, using, timeout, body, idempotency.fingerprint(fn, kwargs)
        )
    return body()


# --- ctx: what a body receives; ctx.run_* call the functions above ---


class QueryCtx:
    kind = "query"

    def __init__(self, job: JobInfo | None, using: str, auth: Auth | None = None, through: Through = direct):
        self.job = job
        self.using = using
        self.auth = auth or ANONYMOUS  # the caller; passed on to everything called through ctx.run_*
        self._through = through  # how the database work of ctx.run_* runs: here, or on the worker's connections

    def run_query(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        with telemetry.call_span("query", fn):
            return self._through(lambda: run_query(fn, args or {}, using=self.using, job=self.job, auth=self.auth))


class MutationCtx(QueryCtx):
    kind = "mutation"

    @property
    def scheduler(self) -> Scheduler:
        scheduler = Scheduler(using=self.using, parent=self.job)
        return scheduler if self._through is direct else Routed(scheduler, self._through)  # type: ignore[return-value]

    @property
    def workflows(self) -> Workflows:
        """``ctx.workflows.start(fn, args)``, ``send_event``, ``status``, ``cancel``: in a mutation, its
        writes are the mutation's (a rollback leaves no run)."""
        client = Workflows(using=self.using)
        return client if self._through is direct else Routed(client, self._through)  # type: ignore[return-value]

    def run_mutation(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        with telemetry.call_span("mutation", fn):
            return self._through(lambda: run_mutation(fn, args or {}, using=self.using, job=self.job, auth=self.auth))

    def run_action(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        """Run an action: from an action. In a mutation this raises ``ActionInTransactionError`` (the
        mutation's transaction is open); schedule the action with ``ctx.scheduler`` instead."""
        with telemetry.call_span("action", fn):
            return _run_action(fn, args or {}, None, self.using, self.job, self.auth, self._through)


class ActionCtx(MutationCtx):
    kind = "action"


class AsyncActionCtx:
    """The ``ctx`` of an ``async def`` action: every call is awaited, its database work off the event loop."""

    kind = "action"

    def __init__(
        self,
        job: JobInfo | None,
        using: str,
        auth: Auth | None = None,
        awaited: Awaited = on_callers_thread,
        through: Through = direct,
    ):
        self.job, self.using, self.auth = job, using, auth or ANONYMOUS
        self._awaited, self._through = awaited, through

    async def run_query(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        with telemetry.call_span("query", fn):
            return await self._awaited(
                lambda: run_query(fn, args or {}, using=self.using, job=self.job, auth=self.auth)
            )

    async def run_mutation(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        with telemetry.call_span("mutation", fn):
            return await self._awaited(
                lambda: run_mutation(fn, args or {}, using=self.using, job=self.job, auth=self.auth)
            )

    async def run_action(self, fn: Function, args: dict[str, Any] | None = None) -> Any:
        """Another action: an async one is awaited here, a sync one runs on a thread of its own."""
        fn = _check_kind(fn, "action", "run_action")
        with telemetry.call_span("action", fn):
            if fn.is_async:
                kwargs = prepare_args(fn, {} if args is None else args)
                return await call_async_action_body(
                    fn, kwargs, self.using, self.job, self.auth, self._awaited, self._through
                )
            return await asyncio.to_thread(
                _run_action, fn, args or {}, None, self.using, self.job, self.auth, self._through
            )

    @property
    def scheduler(self) -> Any:
        """``await ctx.scheduler.run_after(...)``, ``run_at``, ``run_many``, ``batch``, ``cancel``..."""
        return Awaiting(Scheduler(using=self.using, parent=self.job), self._awaited)

    @property
    def workflows(self) -> Any:
        """``await ctx.workflows.start(fn, args)``, ``send_event``, ``status``, ``cancel``."""
        return Awaiting(Workflows(using=self.using), self._awaited)
