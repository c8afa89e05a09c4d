"""Jobs, cron definitions, idempotency keys, workers, orchestration and workflows, in the project's own database."""

from .crons import CronJob, CronJobQuerySet
from .jobs import FINAL_STATES, Kind, ScheduledFunction, ScheduledFunctionQuerySet, State
from .keys import IdempotencyKey, IdempotencyKeyQuerySet
from .orchestration import Batch, ConcurrencyLimit, Saga, SagaStep
from .workers import WorkerProcess, WorkerProcessQuerySet
from .workflows import FINISHED_RUN_STATES, WorkflowRun, WorkflowStep

__all__ = [
    "FINAL_STATES",
    "FINISHED_RUN_STATES",
    "Batch",
    "ConcurrencyLimit",
    "CronJob",
    "CronJobQuerySet",
    "IdempotencyKey",
    "IdempotencyKeyQuerySet",
    "Kind",
    "Saga",
    "SagaStep",
    "ScheduledFunction",
    "ScheduledFunctionQuerySet",
    "State",
    "WorkerProcess",
    "WorkerProcessQuerySet",
    "WorkflowRun",
    "WorkflowStep",
]
