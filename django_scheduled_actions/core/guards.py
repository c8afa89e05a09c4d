"""What a function body may do with the database, enforced on every connection of the thread.

A thread-local policy stack says who is running: ``action`` (no direct database access),
``query`` (reads only) or ``allow`` (``ctx.run_query`` / ``ctx.run_mutation`` / the scheduler, called
from inside an action). An execute wrapper installed on the thread's connections checks each
statement against the innermost policy.

A thread started while a policy holds (an action's ``threading.Thread``, the threads of a
``ThreadPoolExecutor`` it creates) inherits that policy as it was at ``Thread.start()``, until it
pushes its own (``ctx.run_query`` from that thread works as in the action): ``Thread.start`` is wrapped
once, when the first policy is entered, and from then on every connection gets the execute wrapper as
it connects. Not covered: threads started before (a pool made at import time), ``_thread`` used
directly, and raw driver connections made by hand (``psycopg.connect()``), which Django never sees.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from django.db import connections
from django.db.backends.signals import connection_created

from ..exceptions import ActionDatabaseAccessError, QueryWriteError

Policy = Literal["action", "query", "allow"]
_local = threading.local()

_READ_STATEMENT = re.compile(
    r"\s*(SELECT|BEGIN|SAVEPOINT|RELEASE|ROLLBACK|SHOW|EXPLAIN|VALUES|SET TRANSACTION)\b", re.IGNORECASE
)
_CTE_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def _stack() -> list[Policy]:
    stack: list[Policy] | None = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def current() -> Policy | None:
    """The innermost policy of this thread, else the one it inherited when it was started."""
    stack: list[Policy] | None = getattr(_local, "stack", None)
    if stack:
        return stack[-1]
    inherited: Policy | None = getattr(threading.current_thread(), INHERITED, None)
    return inherited


def is_read(sql: str) -> bool:
    if _READ_STATEMENT.match(sql):
        return True
    return sql.lstrip()[:4].upper() == "WITH" and not _CTE_WRITE.search(sql)


def _check(execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    policy = current()
    if policy == "action":
        raise ActionDatabaseAccessError(
            "Actions have no direct database access (ORM or cursor), nor have the threads they start. Read "
            "through ctx.run_query(some_query, {...}) and write through ctx.run_mutation(some_mutation, {...}); "
            f"refused SQL: {str(sql)[:120]}"
        )
    if policy == "query" and not is_read(str(sql)):
        raise QueryWriteError(f"Queries are read-only; use a mutation to write. Refused SQL: {str(sql)[:120]}")
    return execute(sql, params, many, context)


INHERITED = "_scheduled_actions_policy"  # the attribute of a Thread: the policy of the thread that started it
_installed = threading.Lock()


def _wrap(connection: Any) -> None:
    if _check not in connection.execute_wrappers:
        connection.execute_wrappers.append(_check)


def _wrap_new_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    _wrap(connection)


def _inheriting_start(start: Any) -> Any:
    @functools.wraps(start)
    def start_with_policy(self: threading.Thread) -> None:
        setattr(self, INHERITED, current())
        start(self)

    start_with_policy.scheduled_actions = True  # type: ignore[attr-defined]
    return start_with_policy


def _install() -> None:
    """The execute wrapper on this thread's connections; once per process, on every connection made from
    now on, and the policy passed on to the threads started from now on."""
    for alias in connections:
        _wrap(connections[alias])
    if getattr(threading.Thread.start, "scheduled_actions", False):
        return
    with _installed:
        if not getattr(threading.Thread.start, "scheduled_actions", False):
            connection_created.connect(_wrap_new_connection, dispatch_uid="scheduled_actions_guard")
            threading.Thread.start = _inheriting_start(threading.Thread.start)  # type: ignore[method-assign]


@contextmanager
def policy(mode: Policy) -> Iterator[None]:
    _install()
    stack = _stack()
    stack.append(mode)
    try:
        yield
    finally:
        stack.pop()
