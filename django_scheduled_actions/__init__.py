"""Convex-style queries, mutations, actions, a transactional scheduler and crons for Django."""

from .auth import Auth
from .crons import cron_jobs
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
    ReturnValidationError,
    Unauthenticated,
    WorkerLost,
)
from .registry import action, internal_action, internal_mutation, internal_query, mutation, query
from .retry import RetryPolicy

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
    "RetryPolicy",
    "ReturnValidationError",
    "Saga",
    "SagaRolledBack",
    "Unauthenticated",
    "WorkerLost",
    "action",
    "cron_jobs",
    "internal_action",
    "internal_mutation",
    "internal_query",
    "mutation",
    "query",
    "run_action",
    "run_mutation",
    "run_query",
    "schedule_on_delete",
    "schedule_on_save",
    "scheduler",
]

_LAZY = {
    "run_query": "execution",
    "run_mutation": "execution",
    "run_action": "execution",
    "scheduler": "scheduling",
    "Scheduler": "scheduling",
    "schedule_on_save": "hooks",
    "schedule_on_delete": "hooks",
    "Saga": "saga",
    "SagaRolledBack": "saga",
}


def __getattr__(name: str):
    """Names that need the app registry (models) are imported on first use, after django.setup()."""
    if name in _LAZY:
        from importlib import import_module

        value = getattr(import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
