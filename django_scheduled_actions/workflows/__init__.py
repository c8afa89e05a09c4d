"""Durable workflows (DESIGN.md section 12): ``workflows.start``, ``send_event``, ``status``, ``cancel``,
``retry`` (from the failed step).

```python
from django_scheduled_actions import workflow, workflows

@workflow
def onboard(step, user_id: int) -> str:
    user = step.run_query(get_user, {"user_id": user_id})
    step.run_action(send_welcome, {"email": user["email"]})
    step.sleep(timedelta(days=1))
    answer = step.wait_for_event("survey", timeout=timedelta(days=7))
    step.run_mutation(record_onboarding, {"user_id": user_id, "answer": answer})
    return "onboarded"

run_id = workflows.start(onboard, {"user_id": 7})
```

A run is a ``WorkflowRun`` row and the journal of its steps (``WorkflowStep``). Its body runs as a job
(``replay.py``) that replays it from the top over the journal; each mutation or action step is a job of its
own (``steps.py``) whose completion journals its result and schedules the next replay. A sleeping or
waiting run is a row and a due job: no thread, no connection. The modules: ``journal.py`` (the writes,
every one behind the run's row lock), ``replay.py`` (the body's ``step``), ``steps.py`` (the step jobs).
"""

from __future__ import annotations

from typing import Any

from django.db import DEFAULT_DB_ALIAS, IntegrityError, transaction

from .. import signals, telemetry
from ..core import guards, values
from ..core.workflows import Workflow
from ..models import WorkflowRun
from . import journal, replay, steps

__all__ = ["Workflows", "cancel", "replay", "retry", "send_event", "start", "status", "steps"]


class Workflows:
    """Starts and steers runs on one database; ``workflows`` is the module's default one, ``ctx.workflows``
    the one of a mutation or action (in a mutation, its writes are the mutation's)."""

    def __init__(self, using: str = DEFAULT_DB_ALIAS):
        self.using = using

    def start(self, fn: Workflow, args: dict[str, Any] | None = None, *, idempotency_key: str | None = None) -> int:
        """Start a run of ``fn(args)`` (arguments validated now); returns its id. Atomic with the caller's
        transaction: its first replay is due once that commits. With ``idempotency_key``, a start under a
        key a run holds returns that run's id (while the run's row lasts: it is pruned with the jobs)."""
        if not isinstance(fn, Workflow):
            raise TypeError(f"workflows.start() takes a function decorated with @workflow, got {fn!r}")
        json_args = fn.validator.to_json({} if args is None else args)
        key = None if idempotency_key is None else values.key(idempotency_key, "idempotency_key")
        with guards.policy("allow"), transaction.atomic(using=self.using):
            if key is not None:
                held = self._held(key, fn)
                if held is not None:
                    return held
            try:
                with transaction.atomic(using=self.using):
                    run = WorkflowRun.objects.using(self.using).create(
                        name=fn.name,
                        args=json_args,
                        idempotency_key=key,
                        queue=fn.queue,
                        trace_context=telemetry.trace_context(),
                    )
            except IntegrityError:
                held = self._held(key, fn) if key is not None else None
                if held is None:
                    raise
                return held
            journal.schedule_resume(run, self.using)
            journal.announce(signals.workflow_started, run, self.using)
        return run.pk

    def _held(self, key: str, fn: Workflow) -> int | None:
        held = WorkflowRun.objects.using(self.using).filter(idempotency_key=key).values("pk", "name").first()
        if held is None:
            return None
        if held["name"] != fn.name:
            raise ValueError(f"idempotency key {key!r} is held by a run of {held['name']}, not {fn.name}")
        return int(held["pk"])

    def send_event(self, run_id: int, name: str, payload: Any = None) -> bool:
        """Send the event ``name`` to the run: the step waiting for it gets ``payload``; with none waiting
        yet, the first later ``wait_for_event(name)`` does. False if the run has finished (dropped)."""
        values.key(name, "the event name")
        return journal.deliver_event(_run_id(run_id), name, payload, self.using)

    def status(self, run_id: int) -> WorkflowRun:
        """The run's row: ``.state``, ``.result``, ``.error``, ``.steps`` (raises ``WorkflowRun.DoesNotExist``)."""
        with guards.policy("allow"):
            return WorkflowRun.objects.using(self.using).get(pk=_run_id(run_id))

    def cancel(self, run_id: int) -> bool:
        """End the run ``canceled``: pending steps never run, a running action step finishes (its result is
        not used). False if it had finished already."""
        return journal.cancel_run(_run_id(run_id), self.using)

    def retry(self, run_id: int) -> bool:
        """Give a failed run a new attempt from its failed step (the admin's "retry from the failed step"):
        the finished steps before it are kept and never run again; the failed one and those after it run
        anew. False if the run had not failed."""
        return journal.retry_run(_run_id(run_id), self.using)


def _run_id(run_id: Any) -> int:
    if isinstance(run_id, bool) or not isinstance(run_id, int):
        raise TypeError(f"a workflow run id is an int, got {run_id!r}")
    return run_id


_default = Workflows()
start = _default.start
send_event = _default.send_event
status = _default.status
cancel = _default.cancel
retry = _default.retry
