"""The admin: jobs (cancel, retry, run now), crons, idempotency keys, workers, batches, sagas, workflow runs
(cancel, retry from the failed step), rate limit buckets and a dashboard
(``admin:django_scheduled_actions_dashboard``, linked from the app's index and the jobs' changelist)."""

from .crons import CronJobAdmin
from .jobs import IdempotencyKeyAdmin, ScheduledFunctionAdmin
from .orchestration import BatchAdmin, SagaAdmin
from .rates import RateLimitBucketAdmin
from .workers import WorkerProcessAdmin
from .workflows import WorkflowRunAdmin

__all__ = [
    "BatchAdmin",
    "CronJobAdmin",
    "IdempotencyKeyAdmin",
    "RateLimitBucketAdmin",
    "SagaAdmin",
    "ScheduledFunctionAdmin",
    "WorkerProcessAdmin",
    "WorkflowRunAdmin",
]
