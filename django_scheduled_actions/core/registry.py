"""The six decorators and the registry of functions by name.

A decorated function becomes a ``Function``: it keeps ``.name``, ``.kind``, ``.visibility``, its
options, and a ``Validator`` for its arguments. Functions are run through ``run_query`` /
``run_mutation`` / ``run_action`` (or ``ctx.run_*``) and scheduled through the scheduler.
"""

from __future__ import annotations

import functools
import inspect
import threading
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload

from django.core.exceptions import ImproperlyConfigured

from ..exceptions import FunctionNotFound
from . import rates, values
from .retry import NO_RETRY, RetryPolicy
from .validation import Validator

Kind = Literal["query", "mutation", "action"]
Visibility = Literal["public", "internal"]


@dataclass(frozen=True)
class Options:
    queue: str = "default"
    priority: int = 0
    timeout: float | None = None
    retry: RetryPolicy = NO_RETRY
    max_concurrency: int | None = None  # jobs of this function running at once, across all workers
    rate_limit: str | None = None  # "N/s", "N/m", "N/h": how fast its jobs start, across all workers (rates.py)


class Function:
    """A registered query, mutation or action."""

    def __init__(self, fn: Callable[..., Any], kind: Kind, visibility: Visibility, name: str | None, options: Options):
        self.fn = fn
        self.kind = kind
        self.visibility = visibility
        self.name = name or f"{fn.__module__}:{fn.__qualname__}"
        self.options = options
        # the app's own mutations whose consistency row locks give (a workflow's replay): their isolation
        self.isolation: str | None = None
        self.is_async = inspect.iscoroutinefunction(fn)
        _check_runnable(fn, kind, self.name, self.is_async)
        self.validator = Validator(self.name, fn)
        self.__doc__ = fn.__doc__
        self.__wrapped__ = fn

    @property
    def retry(self) -> RetryPolicy:
        return self.options.retry

    @property
    def timeout(self) -> float | None:
        return self.options.timeout

    @functools.cached_property
    def rate(self) -> rates.Rate | None:
        """The rate its jobs start at, at most; None without one, or with a bad one (a system check reports it)."""
        text = self.options.rate_limit
        return None if text is None or rates.problem(text) else rates.parse(text)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        runner = {"query": "run_query", "mutation": "run_mutation", "action": "run_action"}[self.kind]
        raise TypeError(
            f"{self.name} is a registered {self.kind}; call it with ctx.{runner}({self.fn.__name__}, {{...}}) "
            f"or django_scheduled_actions.{runner}(...), or schedule it with scheduler.run_after(...)"
        )

    def __repr__(self) -> str:
        return f"<{self.visibility} {self.kind} {self.name}>"


class Registry:
    def __init__(self) -> None:
        self._functions: dict[str, Function] = {}
        self._resolvers: dict[str, Callable[[str], Function]] = {}
        self.resolved: dict[str, str] = {}  # job names a resolver built a function for: name -> kind
        self._lock = threading.Lock()

    def register(self, function: Function) -> None:
        with self._lock:
            existing = self._functions.get(function.name)
            if existing is not None and not _same_definition(existing, function):
                raise ImproperlyConfigured(
                    f"Two functions are registered as {function.name!r}: "
                    f"{_where(existing.fn)} and {_where(function.fn)}. Give one of them another name=."
                )
            self._functions[function.name] = function

    def get(self, name: str) -> Function:
        try:
            return self._functions[name]
        except KeyError:
            raise FunctionNotFound(f"no function is registered as {name!r}") from None

    def add_resolver(self, prefix: str, resolve: Callable[[str], Function]) -> None:
        """Let ``for_job`` build the function of job names starting with ``prefix`` (django.tasks jobs)."""
        self._resolvers[prefix] = resolve

    def for_job(self, name: str) -> Function:
        """The function a job row names: a resolver's for its prefix, else the registered one.

        Only the worker calls this: a resolver may import the code a (trusted) job row names, so names
        from clients (HTTP, forms) go through ``get``.
        """
        for prefix, resolve in self._resolvers.items():
            if name.startswith(prefix):
                function = resolve(name[len(prefix) :])
                self.resolved[name] = function.kind  # what this worker publishes it knows (deploys.py)
                return function
        return self.get(name)

    def all(self) -> list[Function]:
        return list(self._functions.values())

    def unregister(self, name: str) -> None:
        self._functions.pop(name, None)


# what the first parameter of a function may not be annotated with: these are argument types, so the
# function was written without a context parameter
_ARGUMENT_TYPES = (int, float, str, bool, bytes, list, dict, tuple, set, type(None))


def _check_runnable(fn: Callable[..., Any], kind: Kind, name: str, is_async: bool) -> None:
    """Refuse at once what cannot run: an ``async def`` query or mutation, no context parameter."""
    if is_async and kind != "action":
        raise TypeError(
            f"{name}: a {kind} cannot be async def: it runs inside a database transaction, which "
            f"is synchronous. Make it a plain def (its database work is quick), or make it an action"
        )
    if inspect.isasyncgenfunction(fn) or inspect.isgeneratorfunction(fn):
        raise TypeError(f"{name}: a generator cannot be a {kind}; return the value instead")
    params = list(inspect.signature(fn).parameters.values())
    first = params[0] if params else None
    if first is None or first.kind not in (first.POSITIONAL_ONLY, first.POSITIONAL_OR_KEYWORD):
        raise TypeError(
            f"{name}: a {kind} takes the context as its first parameter, e.g. def {fn.__name__}(ctx, "
            "...); this function has none"
        )
    try:
        hints = typing.get_type_hints(fn) if first.annotation is not first.empty else {}
    except Exception:  # an annotation naming what is not importable here: judge it as written
        hints = {}
    annotation = hints.get(first.name, first.annotation)
    origin = typing.get_origin(annotation) or annotation
    if origin in _ARGUMENT_TYPES or origin in (typing.Union, types.UnionType):
        raise TypeError(
            f"{name}: its first parameter {first.name!r} is annotated {annotation!r}, an argument "
            f"type; a {kind}'s first parameter receives the context: def {fn.__name__}(ctx, "
            f"{first.name}: ...)"
        )


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{fn.__module__}.{fn.__qualname__}" + (f" ({code.co_filename}:{code.co_firstlineno})" if code else "")


def _same_definition(a: Function, b: Function) -> bool:
    """A module imported again (autoreload, importlib.reload) re-registers the same definition."""
    return (a.fn.__module__, a.fn.__qualname__, a.kind) == (b.fn.__module__, b.fn.__qualname__, b.kind)


registry = Registry()


class Decorator(Protocol):
    """``@mutation`` and ``@mutation(name=..., queue=..., ...)``: both give a ``Function``."""

    @overload
    def __call__(self, fn: Callable[..., Any], /) -> Function: ...

    @overload
    def __call__(
        self,
        *,
        name: str | None = ...,
        queue: str = ...,
        priority: int = ...,
        timeout: float | None = ...,
        retry: RetryPolicy | None = ...,
        max_concurrency: int | None = ...,
        rate_limit: str | None = ...,
    ) -> Callable[[Callable[..., Any]], Function]: ...


def _decorator(kind: Kind, visibility: Visibility) -> Decorator:
    @overload
    def decorate(fn: Callable[..., Any], /) -> Function: ...

    @overload
    def decorate(
        *,
        name: str | None = ...,
        queue: str = ...,
        priority: int = ...,
        timeout: float | None = ...,
        retry: RetryPolicy | None = ...,
        max_concurrency: int | None = ...,
        rate_limit: str | None = ...,
    ) -> Callable[[Callable[..., Any]], Function]: ...

    def decorate(
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        queue: str = "default",
        priority: int = 0,
        timeout: float | None = None,
        retry: RetryPolicy | None = None,
        max_concurrency: int | None = None,
        rate_limit: str | None = None,
    ) -> Function | Callable[[Callable[..., Any]], Function]:
        if kind != "action" and (timeout is not None or retry is not None):
            raise TypeError(f"timeout= and retry= apply to actions only, not to a {kind}")
        if kind == "query" and max_concurrency is not None:
            raise TypeError("max_concurrency= applies to scheduled mutations and actions, not to a query")
        if kind == "query" and rate_limit is not None:
            raise TypeError("rate_limit= applies to scheduled mutations and actions, not to a query")
        options = _options(queue, priority, timeout, retry, max_concurrency, rate_limit)

        def wrap(f: Callable[..., Any]) -> Function:
            if isinstance(f, Function) or not callable(f):
                raise TypeError(f"@{visibility}_{kind} decorates a plain function, got {f!r}")
            function = Function(f, kind, visibility, name, options)
            registry.register(function)
            return function

        return wrap(fn) if fn is not None else wrap

    decorate.__name__ = kind if visibility == "public" else f"internal_{kind}"
    return decorate


def _options(
    queue: Any, priority: Any, timeout: Any, retry: Any, max_concurrency: Any = None, rate_limit: Any = None
) -> Options:
    """The checked options; a bad ``rate_limit`` is kept as written for the system check to name the function."""
    values.queue_name(queue, "queue=")
    values.priority(priority, "priority=")
    if timeout is not None:
        values.seconds(timeout, "timeout=")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise TypeError(f"retry= must be a RetryPolicy, got {retry!r}")
    if max_concurrency is not None and not values.is_count(max_concurrency):
        raise ValueError(f"max_concurrency= must be a positive int, got {max_concurrency!r}")
    return Options(
        queue=queue,
        priority=priority,
        timeout=timeout,
        retry=retry or NO_RETRY,
        max_concurrency=max_concurrency,
        rate_limit=rate_limit,
    )


query = _decorator("query", "public")
mutation = _decorator("mutation", "public")
action = _decorator("action", "public")
internal_query = _decorator("query", "internal")
internal_mutation = _decorator("mutation", "internal")
internal_action = _decorator("action", "internal")
