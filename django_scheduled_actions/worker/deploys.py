"""Rolling deploys: a worker leaves the jobs of functions it does not know to the workers that know them.

Each worker publishes on its row what it can run (``WorkerProcess.functions``, name -> kind): the
registered mutations and actions, and the django.tasks tasks it has imported (a task is known once it is
importable). A claimed job whose function the worker cannot run is handed back as its claim found it
(pending, its scheduled time and attempts unchanged), and the worker's later claims leave that name out:
the claim loop does not spin on it and the other jobs are not starved. The name is published too
(``WorkerProcess.unknown``), for the admin. Such a job fails with ``FunctionNotFound`` only once no live
worker serving its queue has known its function for ``SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE`` seconds
since the job fell due (``0``: at once); the worker that left it checks every few seconds.

The common path costs nothing per job: a worker writes its row when it starts and when what it knows or
has met changes (a task imported for the first time, an unknown name), never per job.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from .. import signals
from ..conf import app_settings
from ..core.registry import registry
from ..exceptions import FunctionNotFound
from ..models import ScheduledFunction, State
from ..models.jobs import Kind
from ..scheduling import batches
from ..store.knowledge import Knowledge, grace_over
from ..workflows import steps as workflow_steps
from .outcomes import Claimed, describe, persist
from .store import Store

logger = logging.getLogger("django_scheduled_actions")
CHECK_EVERY = 5.0  # seconds between two looks for left jobs past the grace (a quarter of a shorter grace)
FAIL_PER_CHECK = 500


def known_functions() -> dict[str, str]:
    """What this process can run as jobs: name -> kind (registered mutations and actions, imported tasks)."""
    known = {fn.name: fn.kind for fn in registry.all() if fn.kind != "query"}
    return {**known, **registry.resolved}


class Repertoire:
    """One worker's side: what it publishes on its row, the names it skips, the jobs it leaves and fails."""

    def __init__(self, worker_id: str, store: Store, clock: Callable[[], datetime]):
        self.worker_id, self.store, self.using, self.clock = worker_id, store, store.using, clock
        self.unknown: set[str] = set()
        self._lock = threading.Lock()
        self._published: tuple[int, int] | None = None
        self._next_check = 0.0

    @staticmethod
    def grace() -> float:
        return float(app_settings.UNKNOWN_FUNCTION_GRACE)

    def skip(self) -> frozenset[str]:
        """The names this worker's claims leave out."""
        with self._lock:
            return frozenset(self.unknown)

    def publish(self) -> None:
        """Write what this worker knows and met on its row."""
        changes, unknown = self._changes(), sorted(self.skip())
        self.store.publish(self.worker_id, known_functions(), unknown)
        self._published = changes  # after the write: one that failed is tried again by upkeep

    def _changes(self) -> tuple[int, int]:
        """What can change after start-up: tasks imported (registrations do not change), names met."""
        return len(registry.resolved), len(self.unknown)

    def leave(self, item: Claimed) -> bool:
        """Hand back a claimed job whose function this worker cannot run, and claim no more of it. False
        when the job must fail now instead: a grace of 0, a kind no release has, or the grace is over."""
        token, job = item
        grace = self.grace()
        if grace == 0 or job.kind not in Kind.values:
            return False
        now = self.clock()
        if grace_over(job, Knowledge(now, now - timedelta(seconds=grace), self.using), now, grace):
            return False
        with self._lock:
            self.unknown.add(job.name)
        persist(lambda: self.store.hand_back(token, [job]), self.store, patience=5.0)
        logger.info("job left for a worker that knows its function job=%s name=%s kind=%s", job.pk, job.name, job.kind)
        return True

    def due(self, mono: float) -> bool:
        """Whether ``upkeep`` has anything to write now (it is cheap to ask, on every pass of the loop)."""
        return self._published != self._changes() or bool(self.unknown and mono >= self._next_check)

    def upkeep(self, mono: float) -> None:
        """From the main loop: publish what changed; now and then, fail the left jobs past the grace."""
        if self._published != self._changes():  # two len() per pass of the main loop
            self.publish()
        if self.unknown and mono >= self._next_check:
            self._next_check = mono + min(self.grace() / 4, CHECK_EVERY)
            self.fail_past_grace(self.clock())

    def fail_past_grace(self, now: datetime) -> int:
        """Fail the due jobs of the skipped functions that no live worker has known for the grace."""
        grace = self.grace()
        cutoff = now - timedelta(seconds=grace)
        jobs = ScheduledFunction.objects.using(self.using)
        waiting = list(
            jobs.due(cutoff)
            .filter(name__in=sorted(self.skip()), created_at__lte=cutoff)
            .defer("result")[:FAIL_PER_CHECK]
        )
        if not waiting:
            return 0
        knowledge = Knowledge(now, cutoff, self.using)
        return sum(self._fail(job, now, grace) for job in waiting if grace_over(job, knowledge, now, grace))

    def _fail(self, job: ScheduledFunction, now: datetime, grace: float) -> bool:
        error = FunctionNotFound(
            f"no live worker has known the {job.kind} {job.name!r} for {grace:g} s since the "
            "job fell due (SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE)"
        )
        if not ScheduledFunction.objects.using(self.using).fail_pending(job.pk, describe(error), now):
            return False  # claimed or canceled meanwhile
        job.state, job.completed_time = State.FAILED, now
        batches.job_finished(job, self.using)
        workflow_steps.job_finished(job, self.using)
        signals.job_failed.send_robust(
            sender=ScheduledFunction, job=job, error=error, will_retry=False, worker_id=self.worker_id
        )
        return True
