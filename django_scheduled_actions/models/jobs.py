"""Jobs: each scheduled run of a mutation or action, and the queryset methods that are its state changes.

Each state change of a job is one queryset method writing one conditional ``UPDATE``; the worker,
the scheduler and the admin all go through them.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, NamedTuple

from django.db import IntegrityError, connections, models, transaction
from django.db.models import Q
from django.db.models.expressions import RawSQL
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from ..store.transactions import fetch_prepared
from .workers import WorkerProcess


class State(models.TextChoices):
    """The job lifecycle (drawn in the README)."""

    PENDING = "pending", _("pending")
    """Waiting for its scheduled time, or due and not yet claimed by a worker."""
    IN_PROGRESS = "in_progress", _("in progress")
    """Claimed by a worker holding a lease; an action's body has started once ``started_at`` is set."""
    SUCCESS = "success", _("success")
    """Finished; ``result`` holds the return value. Final."""
    FAILED = "failed", _("failed")
    """Raised, timed out, or lost with its worker, with no retry left; ``error`` says why. Final."""
    CANCELED = "canceled", _("canceled")
    """Canceled before it finished; never runs (again). Final."""


FINAL_STATES = (State.SUCCESS, State.FAILED, State.CANCELED)
_PENDING_LITERAL = RawSQL("scheduled_actions_job.state = 'pending'", [], output_field=models.BooleanField())


# The priorities of pending jobs, highest first, each found by one probe of the due index (the last
# row of p is NULL).
PENDING_PRIORITIES = """WITH RECURSIVE p(v) AS (
    SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending'
  UNION ALL
    SELECT (SELECT MAX(priority) FROM scheduled_actions_job WHERE state = 'pending' AND priority < p.v)
    FROM p WHERE p.v IS NOT NULL
)
SELECT v FROM p WHERE v IS NOT NULL"""

# PostgreSQL: the earliest scheduled time of a pending job, the first entry of the due index at each of
# those priorities, in one prepared statement (the worker asks after every claim that came back short).
NEXT_DUE_TIME = PENDING_PRIORITIES.replace("SELECT v FROM p WHERE v IS NOT NULL", """SELECT MIN((
    SELECT scheduled_time FROM scheduled_actions_job
    WHERE state = 'pending' AND priority = p.v {queues} ORDER BY scheduled_time LIMIT 1)) FROM p WHERE v IS NOT NULL""")

# Not ``state = 'in_progress'``: the planner would prefer the small partial lease index, whose every
# entry it then joins against (slow once many jobs are in progress); this leaves it the primary key.
BY_PRIMARY_KEY = "j.state || '' = 'in_progress'"

SETTLE_ACTIONS = f"""WITH done AS (
    UPDATE scheduled_actions_job AS j SET state = 'success', result = v.result, completed_time = %(now)s,
        lease_expires_at = NULL
    FROM unnest(%(done_ids)s::bigint[], %(done_tokens)s::text[], %(results)s::jsonb[]) AS v(id, token, result)
    WHERE j.id = v.id AND j.token = v.token
        AND ({BY_PRIMARY_KEY} OR (j.state || '' = 'success' AND j.completed_time = %(now)s)) RETURNING j.id),
began AS (
    UPDATE scheduled_actions_job AS j SET started_at = %(now)s,
        attempts = j.attempts + CASE WHEN j.started_at = %(now)s THEN 0 ELSE 1 END
    FROM unnest(%(start_ids)s::bigint[], %(start_tokens)s::text[]) AS s(id, token)
    WHERE j.id = s.id AND j.token = s.token AND {BY_PRIMARY_KEY} RETURNING j.id)
SELECT true, id FROM done UNION ALL SELECT false, id FROM began"""
# Idempotent like ``update_claimed``: a repeat whose first commit landed unacknowledged changes nothing.
COMPLETE_MUTATIONS = """UPDATE scheduled_actions_job AS j SET state = 'success', result = v.result,
    completed_time = %s, lease_expires_at = NULL, started_at = v.started, attempts = j.attempts + 1
FROM unnest(%s::tid[], %s::bigint[], %s::text[], %s::jsonb[], %s::timestamptz[]) AS v(ctid, id, token, result, started)
WHERE j.ctid = v.ctid AND j.id + 0 = v.id AND j.token = v.token AND j.state || '' = 'in_progress'
RETURNING j.id"""
# Each one text whatever the number of jobs (arrays, not VALUES lists), so it is prepared once per connection.


def _prep(name: str, value: Any, connection: Any) -> Any:
    """``value`` as a query parameter for the job field ``name``."""
    return ScheduledFunction._meta.get_field(name).get_db_prep_save(value, connection)


def _json(value: Any) -> str | None:
    """A result as a PostgreSQL ``jsonb`` parameter (SQL NULL for ``None``, as the ORM writes it)."""
    return None if value is None else json.dumps(value)


class Kind(models.TextChoices):
    MUTATION = "mutation", _("mutation")
    ACTION = "action", _("action")


class ScheduledFunctionQuerySet(models.QuerySet):
    def due(self, now: datetime) -> ScheduledFunctionQuerySet:
        """Pending jobs whose time has come (served by the partial index ``sa_job_due_idx``).

        The state is compared with a literal, not a bound parameter: SQLite's planner only uses a
        partial index when it can prove the index's WHERE clause from the query text.
        """
        return self.filter(_PENDING_LITERAL, scheduled_time__lte=now)

    def in_queues(self, queues: Iterable[str] | None) -> ScheduledFunctionQuerySet:
        return self.filter(queue__in=list(queues)) if queues else self

    def claim_order(self) -> ScheduledFunctionQuerySet:
        return self.order_by("-priority", "scheduled_time", "id")

    def held_by(self, worker_id: str) -> ScheduledFunctionQuerySet:
        return self.filter(state=State.IN_PROGRESS, worker_id=worker_id)

    def expired_leases(self, now: datetime) -> ScheduledFunctionQuerySet:
        """In-progress jobs whose claim lease ran out and whose worker no longer heartbeats."""
        alive = WorkerProcess.objects.filter(worker_id=models.OuterRef("worker_id"), expires_at__gte=now)
        return self.filter(state=State.IN_PROGRESS, lease_expires_at__lt=now).exclude(models.Exists(alive))

    def finished_before(self, when: datetime) -> ScheduledFunctionQuerySet:
        return self.filter(state__in=FINAL_STATES, completed_time__lt=when)

    def next_due_time(self, queues: Iterable[str] | None) -> datetime | None:
        """The earliest scheduled time of a pending job: per priority, the first entry of the due index
        at that priority (one probe each), not a scan of every pending job."""
        if connections[self.db].vendor == "postgresql":
            queues = list(queues) if queues else None
            return fetch_prepared(self.db, NEXT_DUE_TIME.format(queues="AND queue = ANY(%s)" if queues else ""),
                                  [queues] if queues else [])[0][0]
        pending = self.filter(state=State.PENDING).in_queues(queues)
        times = [pending.filter(priority=priority).order_by("scheduled_time").values_list("scheduled_time", flat=True)
                 .first() for priority in self.pending_priorities()]
        return min((t for t in times if t is not None), default=None)

    def pending_priorities(self) -> list[int]:
        """The priorities pending jobs have, highest first: a walk down the due index, one probe each.

        MySQL/MariaDB get one query per step: in a recursive query the bound ``priority < p.v`` is not a
        constant when the plan is made, so they would read every pending job of the priority above."""
        with connections[self.db].cursor() as cursor:
            if connections[self.db].vendor != "mysql":
                cursor.execute(PENDING_PRIORITIES)
                return [row[0] for row in cursor.fetchall()]
            priorities: list[int] = []
            while True:
                cursor.execute("SELECT priority FROM scheduled_actions_job WHERE state = 'pending' AND priority < %s "
                               "ORDER BY priority DESC LIMIT 1", [priorities[-1] if priorities else 2**31])
                row = cursor.fetchone()
                if row is None:
                    return priorities
                priorities.append(row[0])

    def insert_many(self, template: dict[str, Any], args: list[str]) -> list[int]:
        """Insert one job per JSON text in ``args``, every other field from ``template``; returns the new
        ids in the order of ``args``. PostgreSQL: one ``INSERT ... SELECT`` from one JSON array parameter
        (the constant fields sent once, the trigger's NOTIFY once); elsewhere ``bulk_create``."""
        connection = connections[self.db]
        if not args:
            return []
        if connection.vendor != "postgresql":
            if not connection.features.can_return_rows_from_bulk_insert:  # MySQL: ids are not returned
                return [self.create(args=json.loads(text), **template).pk for text in args]
            jobs = self.bulk_create([ScheduledFunction(args=json.loads(text), **template) for text in args])
            return [job.pk for job in jobs]
        proto = ScheduledFunction(**template)
        columns, values, params = [], [], []
        for field in ScheduledFunction._meta.concrete_fields:
            if field.primary_key:
                continue
            columns.append(connection.ops.quote_name(field.column))
            if field.name == "args":
                values.append("u.a")
            else:
                values.append(f"CAST(%s AS {field.db_type(connection)})")
                params.append(field.get_db_prep_save(getattr(proto, field.attname), connection))
        with connection.cursor() as cursor:
            cursor.execute(f"INSERT INTO {ScheduledFunction._meta.db_table} ({', '.join(columns)}) "
                           f"SELECT {', '.join(values)} FROM jsonb_array_elements(%s::jsonb) WITH ORDINALITY "
                           "AS u(a, n) ORDER BY u.n RETURNING id", [*params, f"[{','.join(args)}]"])
            return sorted(row[0] for row in cursor.fetchall())  # ids are drawn in the ORDER BY's order

    # --- transitions: each one conditional UPDATE, returning how many rows changed ---

    def claimed(self, job_id: int, token: str) -> ScheduledFunctionQuerySet:
        return self.filter(pk=job_id, token=token, state=State.IN_PROGRESS)

    def update_claimed(self, job_id: int, token: str, values: dict[str, Any], *, count_attempt: bool = False) -> int:
        """One ``UPDATE`` of a job this claim (``token``) still holds, written in SQL: the worker's hot
        path, where compiling an ORM update costs more than the round trip (``values``: field -> value).

        Idempotent: ``persist`` repeats a write whose connection dropped, and a commit can land without
        its acknowledgement. A row under this token that already holds what the write leaves (its time,
        ``completed_time`` else ``started_at``, exact to the microsecond; and its state) matches again,
        and its attempt is not counted a second time."""
        connection = connections[self.db]
        stamp = next((name for name in ("completed_time", "started_at") if name in values), None)
        written, written_params = [], []  # the row as this write leaves it
        for name in (stamp, "state") if stamp else ():
            if name in values:
                written.append(f"{name} = %s")
                written_params.append(_prep(name, values[name], connection))
        sets, params = [], []
        if count_attempt:  # first: MySQL assigns left to right, and must test the row as it was
            sets.append(f"attempts = attempts + CASE WHEN {' AND '.join(written)} THEN 0 ELSE 1 END" if written
                        else "attempts = attempts + 1")
            params += written_params
        for name, value in values.items():
            sets.append(f"{connection.ops.quote_name(ScheduledFunction._meta.get_field(name).column)} = %s")
            params.append(_prep(name, value, connection))
        held = f"(state = 'in_progress' OR ({' AND '.join(written)}))" if written else "state = 'in_progress'"
        with connection.cursor() as cursor:
            cursor.execute(f"UPDATE scheduled_actions_job SET {', '.join(sets)} "
                           f"WHERE id = %s AND token = %s AND {held}", [*params, job_id, token, *written_params])
            return cursor.rowcount

    def mark_started(self, job_id: int, token: str, now: datetime) -> int:
        return self.update_claimed(job_id, token, {"started_at": now}, count_attempt=True)

    def mark_succeeded(self, job_id: int, token: str, result: Any, now: datetime, *,
                       started_at: datetime | None = None, count_attempt: bool = False) -> int:
        return self._finish(job_id, token, {"state": State.SUCCESS, "result": result}, now, started_at, count_attempt)

    def _finish(self, job_id: int, token: str, values: dict[str, Any], now: datetime, started_at: datetime | None,
                count_attempt: bool) -> int:
        """A claimed job's final state (``values``), completed ``now``; ``started_at`` if given (a mutation's
        start is written with its completion)."""
        values = {**values, "completed_time": now, "lease_expires_at": None}
        if started_at is not None:
            values["started_at"] = started_at
        return self.update_claimed(job_id, token, values, count_attempt=count_attempt)

    def mark_succeeded_at(self, ctid: str, job_id: int, token: str, result: Any, now: datetime,
                          started_at: datetime) -> int:
        """PostgreSQL: ``mark_succeeded`` of a mutation, finding its row by the ``ctid`` the claim returned.

        Inside a serializable transaction an index lookup takes a predicate lock on a whole index page,
        so concurrent completions of neighbouring jobs would abort each other; a TID scan locks only the
        row. If the row has moved (any update since the claim), nothing matches and the caller falls back
        to ``mark_succeeded``.
        """
        with connections[self.db].cursor() as cursor:
            cursor.execute(
                "UPDATE scheduled_actions_job SET state = 'success', result = %s::jsonb, completed_time = %s, "
                "lease_expires_at = NULL, started_at = %s, attempts = attempts + 1 "
                "WHERE ctid = %s::tid AND id = %s AND token = %s AND state = 'in_progress'",
                [_json(result), now, started_at, ctid, job_id, token])
            return cursor.rowcount

    def complete_mutations(self, rows: list[tuple[str | None, int, str, Any, datetime]], now: datetime) -> int:
        """``mark_succeeded`` of the mutations ``(ctid, job id, token, result, started_at)`` that ran in the
        caller's transaction, in one statement on PostgreSQL (by ``ctid``, see ``mark_succeeded_at``).
        Returns how many of them this worker still held: fewer than ``len(rows)`` means a claim was lost.

        ``id + 0`` and ``state || ''`` keep the planner off the primary key and the partial lease index
        (whose pages a serializable scan would lock): a TID scan per row is the only plan left."""
        connection = connections[self.db]
        if connection.vendor != "postgresql" or any(row[0] is None for row in rows):
            return sum(bool(self.mark_succeeded(job_id, token, result, now, started_at=started, count_attempt=True))
                       for _ctid, job_id, token, result, started in rows)
        return len(fetch_prepared(self.db, COMPLETE_MUTATIONS, [now, *(list(column) for column in zip(*(
            (ctid, job_id, token, _json(result), started) for ctid, job_id, token, result, started in rows),
            strict=True))]))

    def settle_actions(self, outcomes: list[tuple[int, str, Any]], starts: list[tuple[int, str]],
                       now: datetime) -> tuple[set[int], set[int]]:
        """Mark succeeded actions ``(job id, token, result)`` and mark started the next ones ``(job id,
        token)``, in one commit (one statement on PostgreSQL). Returns the ids of each still claimed."""
        connection = connections[self.db]
        if connection.vendor != "postgresql":
            with transaction.atomic(using=self.db):
                done = {job_id for job_id, token, result in outcomes if self.mark_succeeded(job_id, token, result, now)}
                return done, {job_id for job_id, token in starts if self.mark_started(job_id, token, now)}
        if not outcomes and not starts:
            return set(), set()
        rows = fetch_prepared(self.db, SETTLE_ACTIONS, {
            "now": now, "done_ids": [o[0] for o in outcomes], "done_tokens": [o[1] for o in outcomes],
            "results": [_json(o[2]) for o in outcomes], "start_ids": [s[0] for s in starts],
            "start_tokens": [s[1] for s in starts]})
        return {job_id for done, job_id in rows if done}, {job_id for done, job_id in rows if not done}

    def keep_late_result(self, job_id: int, result: Any) -> int:
        """A canceled action that finished anyway keeps its result; its state stays canceled."""
        return self.filter(pk=job_id, state=State.CANCELED).update(result=result)

    def mark_failed(self, job_id: int, token: str, error: str, now: datetime, *,
                    started_at: datetime | None = None, count_attempt: bool = False) -> int:
        return self._finish(job_id, token, {"state": State.FAILED, "error": error}, now, started_at, count_attempt)

    def retry_later(self, job_id: int, token: str, error: str, run_at: datetime) -> int:
        return self.update_claimed(job_id, token, {
            "state": State.PENDING, "error": error, "scheduled_time": run_at, "token": "", "worker_id": "",
            "lease_expires_at": None, "started_at": None})

    def fail_pending(self, job_id: int, error: str, now: datetime) -> int:
        """Fail a pending job that no worker will run: its function unknown to every live worker for the
        grace (``deploys.py``)."""
        return self.filter(pk=job_id, state=State.PENDING).update(state=State.FAILED, error=error,
                                                                  completed_time=now)

    def undo_start(self, job_id: int, token: str) -> int:
        """Return an action marked started whose body never ran to ``pending`` (its attempt uncounted)."""
        return self.claimed(job_id, token).unclaim()

    def hand_back(self, token: str, job_ids: Iterable[int]) -> int:
        """Return claimed jobs whose body never ran to ``pending`` (shutdown, lost connection)."""
        return self.filter(pk__in=list(job_ids), token=token, state=State.IN_PROGRESS).unclaim()

    def unclaim(self) -> int:
        """Back to ``pending`` and unclaimed, for claimed jobs whose body never ran: an action marked
        started (by its claim or a thread) has that undone, its attempt uncounted."""
        uncounted = models.Case(models.When(started_at__isnull=False, then=models.F("attempts") - 1),
                                default=models.F("attempts"), output_field=models.PositiveIntegerField())
        return self.update(state=State.PENDING, token="", worker_id="", lease_expires_at=None, started_at=None,
                           attempts=uncounted)

    def cancel(self, now: datetime | None = None) -> int:
        """Cancel pending and in-progress jobs; finished ones are left as they are.

        Sends ``job_canceled(job_ids=[...])`` when the transaction commits, if anyone listens.
        """
        from ..signals import job_canceled

        open_jobs = self.filter(state__in=(State.PENDING, State.IN_PROGRESS))
        listening = job_canceled.has_listeners(ScheduledFunction)
        ids = list(open_jobs.values_list("pk", flat=True)) if listening else []
        batch_ids = set(open_jobs.filter(batch__isnull=False).values_list("batch_id", flat=True))
        changed = open_jobs.update(state=State.CANCELED, completed_time=now or timezone.now(),
                                   lease_expires_at=None)
        if listening and changed:
            transaction.on_commit(lambda: job_canceled.send_robust(ScheduledFunction, job_ids=ids), using=self.db)
        if batch_ids and changed:
            from ..scheduling.batches import settle  # counts them as canceled; may finish the batch

            settle(batch_ids, using=self.db)
        return changed

    def run_now(self, now: datetime | None = None) -> int:
        """Make pending jobs scheduled for later due at once (the admin's "run now"); returns how many moved."""
        now = now or timezone.now()
        return self.filter(state=State.PENDING, scheduled_time__gt=now).update(scheduled_time=now)

    def retry(self, now: datetime | None = None) -> list[RetryOutcome]:
        """Schedule a new run of each failed or canceled job: same function, arguments, queue, priority, parent
        and cron, linked by ``retry_of``. A job that is not finished badly, already has a retry, or whose
        function is no longer registered is skipped. Returns one outcome per job, in id order. At most one
        retry per job, even when two admins retry it at once (``sa_job_retry_of_unique``)."""
        from ..store.transactions import in_transaction, outermost, retry_on_conflict

        now = now or timezone.now()
        if in_transaction(self.db):
            with transaction.atomic(using=self.db):
                return self._retry(now)

        def once() -> list[RetryOutcome]:
            with outermost(self.db, None):  # SQLite: take the write lock first
                return self._retry(now)

        return retry_on_conflict(once)

    def _retry(self, now: datetime) -> list[RetryOutcome]:
        from ..core.registry import registry
        from ..exceptions import FunctionNotFound
        from ..signals import job_scheduled

        outcomes, created = [], []
        for old in self.order_by("pk").annotate(retried_as=models.Max("retries__pk")):
            try:
                reason = _not_retryable(old) or ""
                fn = None if reason else registry.for_job(old.name)
            except FunctionNotFound:
                reason = "its function is not registered"
            if reason:
                outcomes.append(RetryOutcome(old.pk, None, reason))
                continue
            job = ScheduledFunction(
                name=old.name, kind=fn.kind, args=old.args, scheduled_time=now, created_at=now,
                queue=old.queue, priority=old.priority, max_attempts=fn.retry.max_attempts,
                parent_id=old.parent_id, cron_id=old.cron_id, retry_of=old)
            try:
                with transaction.atomic(using=self.db):  # a savepoint: a lost race skips only this job
                    job.save(using=self.db, force_insert=True)
            except IntegrityError:  # a concurrent retry of the same job committed first
                outcomes.append(RetryOutcome(old.pk, None, "it was retried meanwhile by someone else"))
                continue
            created.append(job)
            outcomes.append(RetryOutcome(old.pk, job.pk, ""))
        if created and job_scheduled.has_listeners(ScheduledFunction):
            transaction.on_commit(lambda: [job_scheduled.send_robust(ScheduledFunction, job=job) for job in created],
                                  using=self.db)
        return outcomes


class RetryOutcome(NamedTuple):
    """What ``retry()`` did with one job: ``new_job_id`` is its retry, or ``skipped`` says why there is none."""

    job_id: int
    new_job_id: int | None
    skipped: str


def _not_retryable(job: ScheduledFunction) -> str | None:
    if job.state not in (State.FAILED, State.CANCELED):
        return f"it is {job.get_state_display()}, not failed or canceled"
    if job.retried_as is not None:
        return f"it was already retried as #{job.retried_as}"
    return None


class ScheduledFunction(models.Model):
    """One scheduled run of a mutation or action: a job."""

    name = models.CharField(_("function"), max_length=255)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    args = models.JSONField(default=dict)
    state = models.CharField(max_length=11, choices=State.choices, default=State.PENDING)
    queue = models.CharField(max_length=100, default="default")
    priority = models.IntegerField(default=0, help_text=_("higher runs first"))
    scheduled_time = models.DateTimeField()
    created_at = models.DateTimeField(default=timezone.now)
    started_at = models.DateTimeField(null=True, blank=True)
    completed_time = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0, help_text=_("how many times the body has been started"))
    max_attempts = models.PositiveIntegerField(default=1)
    result = models.JSONField(null=True, blank=True)
    error = models.TextField(blank=True, default="")
    worker_id = models.CharField(max_length=255, blank=True, default="")
    token = models.CharField(max_length=32, blank=True, default="", help_text=_("identifies the current claim"))
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    parent = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children",
                               db_index=False, help_text=_("the job that scheduled this one"))  # sa_job_parent_idx
    cron = models.ForeignKey("CronJob", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs",
                             db_index=False, help_text=_("the cron that fired this job"))  # sa_job_cron_tick_unique
    cron_tick = models.DateTimeField(null=True, blank=True, help_text=_("the cron tick this job runs for"))
    batch = models.ForeignKey("Batch", null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs",
                              db_index=False, help_text=_("the batch this job is an item of"))  # sa_job_batch_items_idx
    batch_counted = models.BooleanField(default=False, editable=False,
                                        help_text=_("its final state is counted in its batch's progress"))
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="retries",
                                 db_index=False,  # sa_job_retry_of_unique
                                 help_text=_("the failed or canceled job this one retries"))

    objects = ScheduledFunctionQuerySet.as_manager()

    class Meta:
        db_table = "scheduled_actions_job"
        verbose_name = _("scheduled function")
        # Partial indexes for the claim and the lease recovery; MySQL/MariaDB have no partial indexes
        # and get composite ones led by state from migration 0002 (see check() below). Every index is
        # written by each of a job's three updates (claim, start, completion: none is a HOT update), so
        # the others are partial where most rows have nothing to index, and no foreign key gets a
        # second index beside the unique constraint that already starts with it.
        indexes = [
            models.Index(fields=["-priority", "scheduled_time", "id"], name="sa_job_due_idx",
                         condition=Q(state="pending")),
            models.Index(fields=["lease_expires_at"], name="sa_job_lease_idx", condition=Q(state="in_progress")),
            models.Index(fields=["completed_time"], name="sa_job_finished_idx",
                         condition=Q(completed_time__isnull=False)),
            models.Index(fields=["name", "state"], name="sa_job_name_idx"),
            models.Index(fields=["batch", "batch_counted", "state"], name="sa_job_batch_items_idx",
                         condition=Q(batch__isnull=False)),
            models.Index(fields=["parent"], name="sa_job_parent_idx", condition=Q(parent__isnull=False)),
        ]
        constraints = [models.UniqueConstraint(fields=["cron", "cron_tick"], name="sa_job_cron_tick_unique"),
                       models.UniqueConstraint(fields=["retry_of"], name="sa_job_retry_of_unique")]
        permissions = [("cancel_scheduledfunction", "Can cancel scheduled functions"),
                       ("retry_scheduledfunction", "Can retry scheduled functions")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name} ({self.state})"

    @classmethod
    def check(cls, **kwargs: Any) -> list:
        # MySQL/MariaDB ignore the partial indexes' conditions (models.W037): migration 0002 gives them
        # composite indexes led by state instead, which serve the same queries.
        return [error for error in super().check(**kwargs) if error.id != "models.W037"]

    @property
    def is_final(self) -> bool:
        return self.state in FINAL_STATES

    @property
    def duration(self) -> timedelta | None:
        if self.started_at and self.completed_time:
            return self.completed_time - self.started_at
        return None
