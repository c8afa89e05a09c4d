"""Jobs: each scheduled run of a mutation or action, and the queryset methods that are its state changes.

Each state change of a job is one queryset method writing one conditional ``UPDATE``; the worker,
the scheduler and the admin all go through them.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any, cast

from django.core.checks import CheckMessage
from django.db import connections, models
from django.db.models import Expression, Q
from django.db.models.expressions import RawSQL
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from .workers import WorkerProcess


class State(models.TextChoices):
    """The job lifecycle (drawn in docs/explanation/state-machine.md)."""

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


def _field(name: str) -> models.Field[Any, Any]:
    """The job's concrete field ``name`` (``get_field`` is typed to return relations too)."""
    return cast("models.Field[Any, Any]", ScheduledFunction._meta.get_field(name))


def _column(name: str) -> str:
    return cast(str, _field(name).column)  # a concrete field's column is never None


def _prep(name: str, value: Any, connection: Any) -> Any:
    """``value`` as a query parameter for the job field ``name``."""
    return _field(name).get_db_prep_save(value, connection)


class Kind(models.TextChoices):
    MUTATION = "mutation", _("mutation")
    ACTION = "action", _("action")


class ScheduledFunctionQuerySet(models.QuerySet["ScheduledFunction"]):
    def due(self, now: datetime | Expression) -> ScheduledFunctionQuerySet:
        """Pending jobs whose time has come by ``now`` (a moment, or the database's clock as an expression);
        served by the partial index ``sa_job_due_idx``.

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

    def running_count(self, worker_id: Any) -> Expression:
        """How many in-progress jobs the worker ``worker_id`` holds (a value, or ``OuterRef("worker_id")``
        to annotate workers: one subquery, not a query per worker), 0 when none."""
        running = (
            self.filter(state=State.IN_PROGRESS, worker_id=worker_id)
            .order_by()
            .values("worker_id")
            .annotate(n=models.Count("pk"))
            .values("n")
        )
        return Coalesce(models.Subquery(running, output_field=models.IntegerField()), models.Value(0))

    def finished_before(self, when: datetime) -> ScheduledFunctionQuerySet:
        return self.filter(state__in=FINAL_STATES, completed_time__lt=when)

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
            sets.append(
                f"attempts = attempts + CASE WHEN {' AND '.join(written)} THEN 0 ELSE 1 END"
                if written
                else "attempts = attempts + 1"
            )
            params += written_params
        for name, value in values.items():
            sets.append(f"{connection.ops.quote_name(_column(name))} = %s")
            params.append(_prep(name, value, connection))
        held = f"(state = 'in_progress' OR ({' AND '.join(written)}))" if written else "state = 'in_progress'"
        with connection.cursor() as cursor:
            cursor.execute(
                f"UPDATE scheduled_actions_job SET {', '.join(sets)} WHERE id = %s AND token = %s AND {held}",
                [*params, job_id, token, *written_params],
            )
            changed: int = cursor.rowcount
            return changed

    def mark_started(self, job_id: int, token: str, now: datetime) -> int:
        return self.update_claimed(job_id, token, {"started_at": now}, count_attempt=True)

    def mark_succeeded(
        self,
        job_id: int,
        token: str,
        result: Any,
        now: datetime,
        *,
        started_at: datetime | None = None,
        count_attempt: bool = False,
    ) -> int:
        return self._finish(job_id, token, {"state": State.SUCCESS, "result": result}, now, started_at, count_attempt)

    def _finish(
        self,
        job_id: int,
        token: str,
        values: dict[str, Any],
        now: datetime,
        started_at: datetime | None,
        count_attempt: bool,
    ) -> int:
        """A claimed job's final state (``values``), completed ``now``; ``started_at`` if given (a mutation's
        start is written with its completion)."""
        values = {**values, "completed_time": now, "lease_expires_at": None}
        if started_at is not None:
            values["started_at"] = started_at
        return self.update_claimed(job_id, token, values, count_attempt=count_attempt)

    def keep_late_result(self, job_id: int, result: Any) -> int:
        """A canceled action that finished anyway keeps its result; its state stays canceled."""
        return self.filter(pk=job_id, state=State.CANCELED).update(result=result)

    def mark_failed(
        self,
        job_id: int,
        token: str,
        error: str,
        now: datetime,
        *,
        started_at: datetime | None = None,
        count_attempt: bool = False,
    ) -> int:
        return self._finish(job_id, token, {"state": State.FAILED, "error": error}, now, started_at, count_attempt)

    def retry_later(self, job_id: int, token: str, error: str, run_at: datetime) -> int:
        return self.update_claimed(
            job_id,
            token,
            {
                "state": State.PENDING,
                "error": error,
                "scheduled_time": run_at,
                "token": "",
                "worker_id": "",
                "lease_expires_at": None,
                "started_at": None,
            },
        )

    def fail_pending(self, job_id: int, error: str, now: datetime) -> int:
        """Fail a pending job that no worker will run: its function unknown to every live worker for the
        grace (``deploys.py``)."""
        return self.filter(pk=job_id, state=State.PENDING).update(state=State.FAILED, error=error, completed_time=now)

    def undo_start(self, job_id: int, token: str) -> int:
        """Return an action marked started whose body never ran to ``pending`` (its attempt uncounted)."""
        return self.claimed(job_id, token).unclaim()

    def hand_back(self, token: str, job_ids: Iterable[int]) -> int:
        """Return claimed jobs whose body never ran to ``pending`` (shutdown, lost connection)."""
        return self.filter(pk__in=list(job_ids), token=token, state=State.IN_PROGRESS).unclaim()

    def unclaim(self) -> int:
        """Back to ``pending`` and unclaimed, for claimed jobs whose body never ran: an action marked
        started (by its claim or a thread) has that undone, its attempt uncounted."""
        uncounted = models.Case(
            models.When(started_at__isnull=False, then=models.F("attempts") - 1),
            default=models.F("attempts"),
            output_field=models.PositiveIntegerField(),
        )
        return self.update(
            state=State.PENDING, token="", worker_id="", lease_expires_at=None, started_at=None, attempts=uncounted
        )


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
    parent = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="children",
        db_index=False,
        # no database constraint: its check would read the parent's primary key page under serializable
        # isolation, where every concurrent insert of a job lands (see scheduling/jobs.py); on delete,
        # Django still sets the children's parent to NULL
        db_constraint=False,
        help_text=_("the job that scheduled this one"),
    )  # sa_job_parent_idx
    cron = models.ForeignKey(
        "CronJob",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,
        help_text=_("the cron that fired this job"),
    )  # sa_job_cron_tick_unique
    cron_tick = models.DateTimeField(null=True, blank=True, help_text=_("the cron tick this job runs for"))
    batch = models.ForeignKey(
        "Batch",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="jobs",
        db_index=False,
        help_text=_("the batch this job is an item of"),
    )  # sa_job_batch_items_idx
    batch_counted = models.BooleanField(
        default=False, editable=False, help_text=_("its final state is counted in its batch's progress")
    )
    retry_of = models.ForeignKey(
        "self",
        null=True,
        blank=True,
        on_delete=models.SET_NULL,
        related_name="retries",
        db_index=False,  # sa_job_retry_of_unique
        help_text=_("the failed or canceled job this one retries"),
    )
    trace_context = models.CharField(  # noqa: DJ001 -- NULL: not scheduled inside a trace
        max_length=1024,
        null=True,
        blank=True,
        editable=False,
        help_text=_("the W3C trace context it was scheduled in (traceparent, then tracestate): its span continues it"),
    )

    objects = ScheduledFunctionQuerySet.as_manager()

    # Not columns: set on some instances only, and read with getattr(job, name, default).
    ctid: str | None  # where a PostgreSQL claim found the row (store/engines/postgresql.py)
    claim_committed: float  # time.monotonic() once the claim that returned the job committed (store/leases.py)
    unrunnable: bool  # no live worker knows its function (the admin's change list)
    rate_limited: bool  # due, and its function's rate limit bucket is empty (the admin's change list)

    class Meta:
        db_table = "scheduled_actions_job"
        verbose_name = _("scheduled function")
        # Partial indexes for the claim and the lease recovery; MySQL/MariaDB have no partial indexes
        # and get composite ones led by state from migration 0002 (see check() below). Every index is
        # written by each of a job's three updates (claim, start, completion: none is a HOT update), so
        # the others are partial where most rows have nothing to index, and no foreign key gets a
        # second index beside the unique constraint that already starts with it.
        indexes = [
            models.Index(
                fields=["-priority", "scheduled_time", "id"], name="sa_job_due_idx", condition=Q(state="pending")
            ),
            models.Index(fields=["lease_expires_at"], name="sa_job_lease_idx", condition=Q(state="in_progress")),
            models.Index(
                fields=["completed_time"], name="sa_job_finished_idx", condition=Q(completed_time__isnull=False)
            ),
            models.Index(fields=["name", "state"], name="sa_job_name_idx"),
            models.Index(
                fields=["batch", "batch_counted", "state"],
                name="sa_job_batch_items_idx",
                condition=Q(batch__isnull=False),
            ),
            models.Index(fields=["parent"], name="sa_job_parent_idx", condition=Q(parent__isnull=False)),
        ]
        constraints = [
            models.UniqueConstraint(fields=["cron", "cron_tick"], name="sa_job_cron_tick_unique"),
            models.UniqueConstraint(fields=["retry_of"], name="sa_job_retry_of_unique"),
        ]
        permissions = [
            ("cancel_scheduledfunction", "Can cancel scheduled functions"),
            ("retry_scheduledfunction", "Can retry scheduled functions"),
        ]

    def __str__(self) -> str:
        return f"#{self.pk} {self.name} ({self.state})"

    @classmethod
    def check(cls, **kwargs: Any) -> list[CheckMessage]:
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
