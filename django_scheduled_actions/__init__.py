"""Convex-style queries, mutations, actions, a transactional scheduler and crons for Django."""

from typing import Any

from .core.auth import Auth
from .core.rates import RateLimitStatus
from .core.registry import action, internal_action, internal_mutation, internal_query, mutation, query
from .core.retry import RetryPolicy
from .core.workflows import workflow
from .cron.definitions import cron_jobs
from .exceptions import (
    ActionDatabaseAccessError,
    ActionInTransactionError,
    ArgumentValidationError,
    FunctionNotFound,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    JobTimeout,
    NonRetryableError,
    QueryWriteError,
    RateLimited,
    ReturnValidationError,
    StepFailed,
    Unauthenticated,
    WorkerLost,
    WorkflowNondeterminism,
)

__all__ = [
    "ActionDatabaseAccessError",
    "ActionInTransactionError",
    "ArgumentValidationError",
    "Auth",
    "FunctionNotFound",
    "IdempotencyKeyInProgress",
    "IdempotencyKeyReused",
    "JobTimeout",
    "NonRetryableError",
    "QueryWriteError",
    "RateLimitStatus",
    "RateLimited",
    "RetryPolicy",
    "ReturnValidationError",
    "Saga",
    "SagaRolledBack",
    "StepFailed",
    "Unauthenticated",
    "WorkerLost",
    "WorkflowNondeterminism",
    "action",
    "cron_jobs",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "query",
    "rate_limiter",
    "run_action",
    "run_mutation",
    "run_query",
    "schedule_on_delete",
    "schedule_on_save",
    "scheduler",
    "workflow",
    "workflows",
]

_LAZY = {
    "run_query": "calls.run",
    "run_mutation": "calls.run",
    "run_action": "calls.run",
    "scheduler": "scheduling.scheduler",
    "Scheduler": "scheduling.scheduler",
    "schedule_on_save": "scheduling.model_hooks",
    "schedule_on_delete": "scheduling.model_hooks",
    "Saga": "calls.saga",
    "rate_limiter": "calls.rate_limiter",
    "RateLimiter": "calls.rate_limiter",
    "SagaRolledBack": "calls.saga",
}


def __getattr__(name: str) -> Any:
    """Names that need the app registry (models) are imported on first use, after django.setup()."""
    if name == "workflows":  # the package itself: workflows.start(...), .send_event, .status, .cancel
        from importlib import import_module

        return import_module(".workflows", __name__)
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
