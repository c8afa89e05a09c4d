"""Sagas: steps with compensations, journaled in the database.

```python
from django_scheduled_actions import Saga

@internal_action(retry=RetryPolicy(max_attempts=3))
def create_subscription(ctx, user_id: int, plan_id: str) -> int:
    with Saga(ctx, key=f"subscription:{user_id}:{plan_id}") as saga:
        sub_id = saga.step("provider subscription", create_provider_subscription, {"plan_id": plan_id},
                           compensate=cancel_provider_subscription,
                           compensate_args=lambda sub_id: {"subscription_id": sub_id})
        return saga.step("local record", create_local_subscription, {"user_id": user_id, "sub_id": sub_id})
```

- A saga runs inside an action; each step is a mutation or an action, run through ``ctx``. A finished
  step is journaled (``SagaStep``) with its result and its compensation (a function name and its
  arguments, computed from the result). A mutation step and its journal entry commit together
  (exactly once); an action step is journaled when it returns (a crash in between runs it again: make
  action steps idempotent, e.g. with the provider's idempotency key).
- Run again under the same key (the job is retried, the worker died), a saga returns the journaled
  results of finished steps instead of running them again, and goes on with the first unfinished one.
- When a step (or any code in the ``with`` block) raises, the finished steps are compensated, newest
  first, and the error propagates. Each compensation runs **at most once**: an action compensation is
  marked ``compensating`` in its own commit before it runs; a mutation compensation is marked
  ``compensated`` in its own transaction (exactly once). A saga whose rollback a crash interrupted
  finishes it when it runs again, without the compensation that was running.
- A rolled-back saga is final: entering it again raises ``SagaRolledBack`` (a ``NonRetryableError``,
  so a ``RetryPolicy`` stops there). State, steps and errors are in the admin (``Saga``).
- The key defaults to the job (``job:<id>``, the id of the first job of its ``retry_of`` chain): retries of
  one job, by its policy or from the admin, share one saga and resume its journal.
- A saga whose job ended for good while it ran (its worker lost, timed out, no retry left) is marked
  ``abandoned`` by lease recovery (``abandon_stragglers``), never left ``running``; retrying the job from the
  admin resumes it after the journaled steps.
"""

from __future__ import annotations

import logging
import traceback
from collections.abc import Callable
from typing import Any, Literal

from django.db import DEFAULT_DB_ALIAS
from django.db.models import Exists, OuterRef
from django.utils import timezone

from ..core import guards, values
from ..core.registry import Function, registry
from ..exceptions import NonRetryableError
from ..models import FINAL_STATES, SagaStep, ScheduledFunction
from ..models import Saga as SagaRow
from ..store.transactions import run_in_mutation_transaction
from .run import run_mutation

logger = logging.getLogger("django_scheduled_actions")
Step = SagaStep.State
Row = SagaRow.State
MAX_RETRY_CHAIN = 1000  # retries of retries followed back to the first job
STRAGGLERS_PER_PASS = 100


class SagaRolledBack(NonRetryableError):
    """The saga failed before and was rolled back (or its rollback failed): it does not run again."""


class Saga:
    """``with Saga(ctx, key=...) as saga: saga.step(name, fn, args, compensate=..., compensate_args=...)``."""

    def __init__(self, ctx: Any, key: str | None = None):
        if getattr(ctx, "kind", None) != "action":
            raise TypeError("a saga runs inside an action: pass the action's ctx")
        if key is None:
            if ctx.job is None:
                raise TypeError("Saga(ctx) outside a job needs a key=")
            key = f"job:{_first_of_retries(ctx.job.id, ctx.using)}"
        values.key(key, "the saga key")
        self.ctx, self.key, self.using = ctx, key, ctx.using
        self.row: SagaRow | None = None
        self.journal: dict[str, SagaStep] = {}
        self._names: set[str] = set()

    # --- running ---

    def __enter__(self) -> Saga:
        with guards.policy("allow"):
            self.row, _ = SagaRow.objects.using(self.using).get_or_create(key=self.key)
            self.journal = {s.name: s for s in self.row.steps.all()}
            job_id = self.ctx.job.id if self.ctx.job is not None else None
            if job_id is not None and self.row.job_id != job_id:
                SagaRow.objects.using(self.using).filter(pk=self.row.pk).update(job_id=job_id)
        if self.row.state == Row.ABANDONED:  # its job is retried: resume after the journaled steps
            self._set_state(Row.ABANDONED, Row.RUNNING)
        if self.row.state == Row.ROLLING_BACK:
            self._roll_back()  # a crash interrupted the rollback: finish it
        if self.row.state in (Row.ROLLING_BACK, Row.ROLLED_BACK, Row.FAILED):
            raise SagaRolledBack(f"saga {self.key!r} was rolled back ({self.row.state}): {self.row.error}")
        return self

    def step(
        self,
        name: str,
        fn: Function,
        args: dict[str, Any] | None = None,
        *,
        compensate: Function | None = None,
        compensate_args: dict[str, Any] | Callable[[Any], dict[str, Any]] | None = None,
    ) -> Any:
        """Run ``fn(args)`` once per saga and return its result (the journaled one on a rerun)."""
        if self.row is None:
            raise RuntimeError("use saga.step() inside `with Saga(ctx) as saga:`")
        if name in self._names:
            raise ValueError(f"saga {self.key!r} has two steps named {name!r}")
        self._names.add(name)
        if name in self.journal:
            return self.journal[name].result
        _check(fn, "step")
        if compensate is not None:
            _check(compensate, "compensation")
            if not callable(compensate_args):
                compensate.validator.to_json(compensate_args or {})  # bad arguments fail before the step runs
        elif compensate_args is not None:
            raise TypeError("compensate_args without compensate")

        def record(result: Any) -> None:
            self._record(name, fn, result, compensate, compensate_args)

        if fn.kind == "mutation":
            return self._run_mutation_step(fn, args, record)
        result = self.ctx.run_action(fn, args or {})
        record(result)
        return result

    def __exit__(self, exc_type: Any, exc: BaseException | None, tb: Any) -> Literal[False]:
        assert self.row is not None
        if exc is None:
            if not self._set_state(Row.RUNNING, Row.COMPLETED):
                self._set_state(Row.ABANDONED, Row.COMPLETED)  # a body that outlived its job's end
            return False
        if isinstance(exc, Exception) and (
            self._set_state(Row.RUNNING, Row.ROLLING_BACK, error=_describe(exc))
            or self._set_state(Row.ABANDONED, Row.ROLLING_BACK, error=_describe(exc))
        ):
            logger.warning("saga rolling back saga=%s error=%r", self.key, exc)
            self._roll_back()
        return False  # the error propagates; a BaseException (a crash) leaves the journal for the retry

    def _run_mutation_step(self, fn: Function, args: dict[str, Any] | None, record: Callable[[Any], None]) -> Any:
        def body() -> Any:  # the step and its journal entry commit together
            result = run_mutation(fn, args or {}, using=self.using, job=self.ctx.job, auth=self.ctx.auth)
            record(result)
            return result

        with guards.policy("allow"):
            return run_in_mutation_transaction(body, self.using)

    def _record(self, name: str, fn: Function, result: Any, compensate: Function | None, compensate_args: Any) -> None:
        comp_args: dict[str, Any] = {}
        if compensate is not None:
            comp_args = compensate_args(result) if callable(compensate_args) else (compensate_args or {})
            comp_args = compensate.validator.to_json(comp_args)
        assert self.row is not None  # entered
        with guards.policy("allow"):
            self.journal[name] = SagaStep.objects.using(self.using).create(
                saga=self.row,
                position=len(self.journal),
                name=name,
                function=fn.name,
                result=result,
                compensation=compensate.name if compensate else "",
                compensation_args=comp_args,
            )

    # --- rolling back ---

    def _roll_back(self) -> None:
        assert self.row is not None
        with guards.policy("allow"):
            steps = list(SagaStep.objects.using(self.using).filter(saga=self.row).order_by("-position"))
        ok = True
        for step in steps:
            if step.state == Step.DONE and step.compensation:
                ok = self._compensate(step) and ok
            elif step.state in (Step.COMPENSATING, Step.COMPENSATION_FAILED):
                ok = False  # interrupted by a crash, or failed: never run twice
                logger.error(
                    "saga compensation not run again saga=%s step=%s state=%s", self.key, step.name, step.state
                )
        self._set_state(Row.ROLLING_BACK, Row.ROLLED_BACK if ok else Row.FAILED)

    def _compensate(self, step: SagaStep) -> bool:
        steps = SagaStep.objects.using(self.using).filter(pk=step.pk)
        try:
            fn = registry.get(step.compensation)
            if fn.kind == "mutation":
                self._compensate_in_transaction(fn, step, steps)
            else:
                with guards.policy("allow"):
                    if not steps.filter(state=Step.DONE).update(state=Step.COMPENSATING):
                        return True  # another run of this saga took it
                self.ctx.run_action(fn, step.compensation_args)
                with guards.policy("allow"):
                    steps.update(state=Step.COMPENSATED, compensated_at=timezone.now())
        except Exception as exc:  # FunctionNotFound included
            logger.error("saga compensation failed saga=%s step=%s error=%r", self.key, step.name, exc)
            with guards.policy("allow"):
                steps.filter(state__in=(Step.DONE, Step.COMPENSATING)).update(
                    state=Step.COMPENSATION_FAILED, error=_describe(exc)
                )
            return False
        return True

    def _compensate_in_transaction(self, fn: Function, step: SagaStep, steps: Any) -> None:
        def body() -> None:
            if steps.filter(state=Step.DONE).update(state=Step.COMPENSATED, compensated_at=timezone.now()):
                run_mutation(fn, step.compensation_args, using=self.using, job=self.ctx.job, auth=self.ctx.auth)

        with guards.policy("allow"):
            run_in_mutation_transaction(body, self.using)

    def _set_state(self, current: str, new: str, error: str | None = None) -> bool:
        assert self.row is not None
        fields: dict[str, Any] = {"state": new}
        if new in (Row.COMPLETED, Row.ROLLED_BACK, Row.FAILED, Row.ABANDONED):
            fields["finished_at"] = timezone.now()
        elif current == Row.ABANDONED:
            fields["finished_at"] = None
        if error is not None:
            fields["error"] = error
        with guards.policy("allow"):
            changed = SagaRow.objects.using(self.using).filter(pk=self.row.pk, state=current).update(**fields)
            self.row.refresh_from_db(fields=["state", "error"])
        return bool(changed)


def _first_of_retries(job_id: int, using: str) -> int:
    """The first job of ``job_id``'s ``retry_of`` chain (admin retries are new jobs of the same call)."""
    jobs = ScheduledFunction.objects.using(using)
    with guards.policy("allow"):
        for _ in range(MAX_RETRY_CHAIN):
            previous = jobs.filter(pk=job_id).values_list("retry_of_id", flat=True).first()
            if previous is None:
                break
            job_id = previous
    return job_id


def abandon_stragglers(using: str = DEFAULT_DB_ALIAS) -> int:
    """Mark ``abandoned`` the running sagas whose job has ended for good (failed or canceled, or succeeded
    with the saga unfinished, e.g. a worker lost on the last attempt) and has no retry pending. Returns how
    many. A body still running (a canceled action finishes) ends its saga all the same."""
    jobs = ScheduledFunction.objects.using(using)
    open_retry = jobs.filter(retry_of_id=OuterRef("pk")).exclude(state__in=FINAL_STATES)
    ended = jobs.filter(state__in=FINAL_STATES).exclude(Exists(open_retry)).values("pk")
    running = SagaRow.objects.using(using).filter(state=Row.RUNNING, job_id__in=ended)
    abandoned = 0
    for saga_id, job_id in list(running.values_list("pk", "job_id")[:STRAGGLERS_PER_PASS]):
        error = f"abandoned: its job #{job_id} ended before the saga finished; retry the job to resume it"
        abandoned += (
            SagaRow.objects.using(using)
            .filter(pk=saga_id, state=Row.RUNNING)
            .update(state=Row.ABANDONED, error=error, finished_at=timezone.now())
        )
    if abandoned:
        logger.warning("sagas abandoned by their jobs count=%d", abandoned)
    return abandoned


def _check(fn: Any, what: str) -> Function:
    if not isinstance(fn, Function) or fn.kind not in ("mutation", "action"):
        raise TypeError(f"a saga {what} is a mutation or an action, got {fn!r}")
    return fn


def _describe(exc: BaseException) -> str:
    return "".join(traceback.format_exception(exc)).strip()
