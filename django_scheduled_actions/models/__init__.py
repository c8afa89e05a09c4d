"""Jobs, crons, idempotency keys, workers, orchestration, workflows and rate limit buckets."""

from .crons import CronJob, CronJobQuerySet
from .jobs import FINAL_STATES, Kind, ScheduledFunction, ScheduledFunctionQuerySet, State
from .keys import IdempotencyKey, IdempotencyKeyQuerySet
from .orchestration import Batch, ConcurrencyLimit, Saga, SagaStep
from .rates import RateLimitBucket
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
    "RateLimitBucket",
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
