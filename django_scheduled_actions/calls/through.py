"""How the database work of a body's ``ctx`` runs: on the caller's thread (``direct``), on the worker's
bounded connections (the worker passes its own ``through``), or, for an ``async def`` action, awaited off
the event loop (``awaited``)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from asgiref.sync import sync_to_async

Work = Callable[[], Any]
Through = Callable[[Work], Any]  # runs database work and returns its result
Awaited = Callable[[Work], Awaitable[Any]]  # the same, awaited


def direct(work: Work) -> Any:
    return work()


def on_callers_thread(work: Work) -> Awaitable[Any]:
    """Outside a worker: on the thread that awaits the action (Django's ``sync_to_async``, thread sensitive),
    so ``run_action`` from sync code and a test's transaction see the same connection."""
    return sync_to_async(work, thread_sensitive=True)()


class Routed:
    """``target`` (a ``Scheduler``) whose every method runs through ``through``."""

    def __init__(self, target: Any, through: Through):
        self._target, self._through = target, through

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        if not callable(method):
            return method
        return lambda *args, **kwargs: self._through(lambda: method(*args, **kwargs))


class Awaiting:
    """``target`` (a ``Scheduler``) whose every method is awaited, its work run by ``awaited``."""

    def __init__(self, target: Any, awaited: Awaited):
        self._target, self._awaited = target, awaited

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)
        if not callable(method):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            return await self._awaited(lambda: method(*args, **kwargs))

        return call
