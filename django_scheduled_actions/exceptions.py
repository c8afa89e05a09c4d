"""Exceptions raised by django-scheduled-actions. All are exported from the package root."""


class ScheduledActionsError(Exception):
    """Base class of this app's own errors."""


class ArgumentValidationError(ScheduledActionsError, ValueError):
    """A function's arguments do not match its signature; nothing was run or stored."""

    def __init__(self, function: str, message: str, argument: str | None = None):
        self.function = function
        self.argument = argument
        self.problem = message
        where = f"argument {argument!r} of {function}" if argument else function
        super().__init__(f"{where}: {message}")


class ReturnValidationError(ScheduledActionsError, TypeError):
    """A function returned a value that does not match its return annotation (Convex's ``returns:``).

    Raised before the value is stored or answered: a mutation's transaction rolls back with it.
    """

    def __init__(self, function: str, message: str, path: str = "result"):
        self.function = function
        self.path = path
        self.problem = message
        super().__init__(f"{function} returned a value that does not match its annotation: {path}: {message}")


class ActionDatabaseAccessError(ScheduledActionsError, RuntimeError):
    """An action body touched the database directly instead of through ctx.run_query / ctx.run_mutation."""


class ActionInTransactionError(ScheduledActionsError, RuntimeError):
    """An action was called inside a mutation or an open transaction, where a rollback or a conflict retry
    would undo its writes or repeat its external calls; schedule it instead, or call it outside."""


class QueryWriteError(ScheduledActionsError, RuntimeError):
    """A query tried to write; queries are read-only and the write was refused."""


class NonRetryableError(ScheduledActionsError):
    """Raise from an action to fail its job at once, whatever its RetryPolicy says."""


class FunctionNotFound(ScheduledActionsError, LookupError):
    """No function is registered under this name."""


class JobTimeout(ScheduledActionsError):
    """An action ran longer than its timeout; its late result is discarded."""


class WorkerLost(ScheduledActionsError):
    """The worker running an action disappeared (its lease expired)."""


class IdempotencyKeyInProgress(ScheduledActionsError, RuntimeError):
    """A call with this idempotency key is still running; retry later for its stored result."""


class IdempotencyKeyReused(ScheduledActionsError, ValueError):
    """This idempotency key is held by another call (other arguments, or another function); nothing ran.
    Over HTTP this is a 422. Send a new key for a new call."""


class Unauthenticated(ScheduledActionsError):
    """The function needs a signed-in caller (``ctx.auth.require_user()``); over HTTP this is a 401.

    For a signed-in caller who may not do this, raise Django's ``PermissionDenied`` (a 403).
    """


class StepFailed(ScheduledActionsError):
    """A workflow step failed for good (its function raised, timed out or was lost, with no retry left);
    raised in the workflow's body, where ``try/except`` may compensate. ``function``: the step's
    function; ``error``: what it raised, as recorded."""

    def __init__(self, function: str, error: str):
        self.function = function
        self.error = error
        last = error.strip().splitlines()[-1] if error.strip() else "failed"
        super().__init__(f"step {function} failed: {last}")


class WorkflowNondeterminism(ScheduledActionsError):
    """A workflow's replay asked for another step than its journal holds (its code changed, or depends
    on something else than its arguments and its steps' results); the run fails with it."""


class RateLimited(ScheduledActionsError):
    """A rate limit said no (``rate_limiter.limit`` returned ``ok=False``); raise it with the status's
    ``retry_after`` (seconds). Over HTTP this is a 429 with a ``Retry-After`` header."""

    def __init__(self, retry_after: float = 0.0, message: str = ""):
        self.retry_after = max(float(retry_after), 0.0)
        super().__init__(message or f"rate limited; retry after {self.retry_after:.3g}s")
