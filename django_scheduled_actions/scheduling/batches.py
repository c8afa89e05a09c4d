"""Fan-out / fan-in: ``scheduler.batch(fn, items, on_complete=...)``.

```python
batch_id = scheduler.batch(process_one, [{"item_id": i} for i in ids],
                           on_complete=report, on_complete_args={"report_id": 7})

@internal_mutation
def report(ctx, batch_id: int, succeeded: int, failed: int, canceled: int, report_id: int) -> None: ...
```

- The items are written with ``bulk_create`` in chunks, in one transaction that joins the caller's (like
  ``run_after``): a rollback leaves no batch and no item. PostgreSQL's statement-level INSERT trigger
  wakes the workers once per chunk.
- **Counting is exactly once.** When an item reaches a final state (success, failed, canceled) the code
  that made it so calls ``settle``: one short transaction that locks the ``Batch`` row first, flips the
  item's ``batch_counted`` flag with a conditional ``UPDATE`` (so no item is counted twice, whichever
  worker gets there), adds it to the counters, and, when the last item is in, sets ``finished_at`` and
  schedules ``on_complete`` in that same transaction. Two workers finishing the last two items queue on
  the batch row: the second sees the first's count and is the one that finishes the batch, once.
- A worker that dies between an item's completion and its ``settle`` leaves the item uncounted; lease
  recovery (every worker, every few seconds) settles the unfinished batches that have such items.
- Mutation items are not counted inside the mutation's serializable transaction on purpose: every item
  of a batch updates one row, and concurrent serializable transactions updating one row abort each
  other; counting right after the commit keeps the hot row's lock to a few milliseconds.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from django.db import DEFAULT_DB_ALIAS, DatabaseError, transaction
from django.utils import timezone

from ..core import guards
from ..core.jobs import JobInfo
from ..core.registry import registry
from ..exceptions import FunctionNotFound
from ..models import FINAL_STATES, Batch, ScheduledFunction, ScheduledFunctionQuerySet, State
from ..store.transactions import run_in_short_transaction
from . import jobs

logger = logging.getLogger("django_scheduled_actions")
CHUNK = 1000
COUNTS = ("batch_id", "succeeded", "failed", "canceled")
COUNTER_OF = {State.SUCCESS: "succeeded", State.FAILED: "failed", State.CANCELED: "canceled"}


# --- fan-out ---


def schedule_batch(
    using: str,
    parent: JobInfo | None,
    fn: Any,
    items: Iterable[dict[str, Any]],
    when: datetime,
    on_complete: Any,
    on_complete_args: dict[str, Any] | None,
    queue: str | None,
    priority: int | None,
) -> int:
    """Validate everything, then write the batch and its items atomically; returns the batch id."""
    fn = jobs.check_schedulable(fn)
    rows = [jobs.checked_args(fn, args, index)[0] for index, args in enumerate(items)]
    finish_args = _on_complete_args(on_complete, on_complete_args)
    now = timezone.now()
    template = jobs.row(fn, when, now, queue, priority, parent)
    with guards.policy("allow"), transaction.atomic(using=using):
        canceled = jobs.parent_canceled(parent, using)
        batch = Batch.objects.using(using).create(
            name=fn.name,
            total=len(rows),
            on_complete=on_complete.name if on_complete else "",
            on_complete_args=finish_args,
            created_at=now,
        )
        if canceled:  # scheduled by a canceled job: created canceled, as run_after does
            template.update(state=State.CANCELED, completed_time=now, batch_counted=True)
            Batch.objects.using(using).filter(pk=batch.pk).update(canceled=len(rows))
        for start in range(0, len(rows), CHUNK):
            ScheduledFunction.objects.using(using).bulk_create(
                [ScheduledFunction(args=args, batch=batch, **template) for args in rows[start : start + CHUNK]]
            )
        jobs.announce(
            lambda: list(ScheduledFunction.objects.using(using).filter(batch=batch).order_by("pk")), using, parent
        )
        if canceled or not rows:
            _finish(Batch.objects.using(using).get(pk=batch.pk), using, parent)
    return batch.pk


def _on_complete_args(on_complete: Any, extra: dict[str, Any] | None) -> dict[str, Any]:
    """Check now that ``on_complete`` accepts the counts plus ``extra``; returns ``extra`` as JSON."""
    if on_complete is None:
        if extra:
            raise TypeError("on_complete_args without on_complete")
        return {}
    fn = jobs.check_schedulable(on_complete)
    extra = dict(extra or {})
    clash = sorted(set(COUNTS) & set(extra))
    if clash:
        raise ValueError(f"on_complete_args may not contain {', '.join(clash)}: on_complete receives them")
    json_args = fn.validator.to_json({**dict.fromkeys(COUNTS, 0), **extra})
    return {key: json_args[key] for key in extra}


# --- fan-in ---


def job_finished(job: ScheduledFunction, using: str = DEFAULT_DB_ALIAS) -> None:
    """Count ``job`` in its batch, if it has one; called after its final state committed. Never raises
    a database error: an item left uncounted is settled by lease recovery."""
    if job.batch_id is None:
        return
    try:
        settle([job.batch_id], using, job_id=job.pk)
    except DatabaseError as exc:
        logger.warning("could not count batch item yet job=%s batch=%s error=%r", job.pk, job.batch_id, exc)


def settle(batch_ids: Iterable[int], using: str = DEFAULT_DB_ALIAS, *, job_id: int | None = None) -> None:
    """Count the finished, uncounted items of each batch (only ``job_id`` if given) and finish the batches
    whose items are all counted. Joins the caller's transaction if there is one."""
    for batch_id in sorted(set(batch_ids)):
        run_in_short_transaction(functools.partial(_settle_one, batch_id, using, job_id), using)


def _settle_one(batch_id: int, using: str, job_id: int | None) -> None:
    batch = Batch.objects.using(using).select_for_update().filter(pk=batch_id).first()  # first: the lock
    if batch is None or batch.finished_at is not None:
        return
    items = ScheduledFunction.objects.using(using).filter(batch_id=batch_id, batch_counted=False)
    if job_id is not None:
        items = items.filter(pk=job_id)
    changed = False
    for state in FINAL_STATES:
        counted = items.filter(state=state).update(batch_counted=True)
        if counted:
            counter = COUNTER_OF[state]
            setattr(batch, counter, getattr(batch, counter) + counted)
            changed = True
    if not changed:
        return
    batch.save(update_fields=["succeeded", "failed", "canceled"])
    if batch.done >= batch.total:
        _finish(batch, using)


def _finish(batch: Batch, using: str, parent: JobInfo | None = None) -> None:
    """Mark ``batch`` finished and schedule its ``on_complete``, once (the batch row is locked or new);
    ``parent``: the job that scheduled the batch, when it finishes as it is written (no item)."""
    now = timezone.now()
    if not Batch.objects.using(using).filter(pk=batch.pk, finished_at__isnull=True).update(finished_at=now):
        return
    if not batch.on_complete:
        return
    try:
        fn = registry.get(batch.on_complete)
    except FunctionNotFound:
        logger.error(
            "batch finished but its on_complete is not registered batch=%s on_complete=%s", batch.pk, batch.on_complete
        )
        return
    args = {
        **batch.on_complete_args,
        "batch_id": batch.pk,
        "succeeded": batch.succeeded,
        "failed": batch.failed,
        "canceled": batch.canceled,
    }
    try:
        json_args, _text = jobs.checked_args(fn, args)
        job_id = jobs.write(
            ScheduledFunction(args=json_args, **jobs.row(fn, now, now, parent=parent)), parent, None, now, using
        )
    except (TypeError, ValueError) as exc:  # its code changed since the batch was scheduled (checked before writing)
        logger.error("batch finished but its on_complete could not be scheduled batch=%s error=%r", batch.pk, exc)
        return
    Batch.objects.using(using).filter(pk=batch.pk).update(on_complete_job_id=job_id)


def settle_stragglers(using: str = DEFAULT_DB_ALIAS) -> int:
    """Settle unfinished batches with finished but uncounted items (a worker died between an item's
    completion and its count). Returns how many batches were settled."""
    unfinished = list(Batch.objects.using(using).filter(finished_at__isnull=True).values_list("pk", flat=True))
    items = ScheduledFunction.objects.using(using).filter(batch_counted=False, state__in=FINAL_STATES)
    stragglers = [pk for pk in unfinished if items.filter(batch_id=pk).exists()]
    if stragglers:
        settle(stragglers, using)
        logger.warning("counted batch items left uncounted by a lost worker batches=%s", stragglers)
    return len(stragglers)


def items_of(batch_id: int, using: str = DEFAULT_DB_ALIAS) -> ScheduledFunctionQuerySet:
    """The batch's item jobs, in the order they were scheduled (until finished jobs are pruned)."""
    return ScheduledFunction.objects.using(using).filter(batch_id=batch_id).order_by("pk")
