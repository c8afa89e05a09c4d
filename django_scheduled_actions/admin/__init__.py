"""The admin: jobs (cancel, retry, run now), crons, idempotency keys, workers, batches, sagas, workflow runs
(cancel, retry from the failed step) and a dashboard (``admin:django_scheduled_actions_dashboard``, linked
from the app's index and the jobs' changelist)."""

from .crons import CronJobAdmin
from .jobs import IdempotencyKeyAdmin, ScheduledFunctionAdmin
from .orchestration import BatchAdmin, SagaAdmin
from .workers import WorkerProcessAdmin
from .workflows import WorkflowRunAdmin

__all__ = [
    "BatchAdmin",
    "CronJobAdmin",
    "IdempotencyKeyAdmin",
    "SagaAdmin",
    "ScheduledFunctionAdmin",
    "WorkerProcessAdmin",
    "WorkflowRunAdmin",
]
