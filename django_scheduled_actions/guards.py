"""What a function body may do with the database, enforced on every connection of the thread.

A thread-local policy stack says who is running: ``action`` (no direct database access),
``query`` (reads only) or ``allow`` (``ctx.run_query`` / ``ctx.run_mutation`` / the scheduler, called
from inside an action). An execute wrapper installed on the thread's connections checks each
statement against the innermost policy.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Literal

from django.db import connections

from .exceptions import ActionDatabaseAccessError, QueryWriteError

Policy = Literal["action", "query", "allow"]
_local = threading.local()

_READ_STATEMENT = re.compile(r"\s*(SELECT|BEGIN|SAVEPOINT|RELEASE|ROLLBACK|SHOW|EXPLAIN|VALUES|SET TRANSACTION)\b",
                             re.IGNORECASE)
_CTE_WRITE = re.compile(r"\b(INSERT|UPDATE|DELETE|MERGE)\b", re.IGNORECASE)


def _stack() -> list[Policy]:
    stack = getattr(_local, "stack", None)
    if stack is None:
        stack = _local.stack = []
    return stack


def current() -> Policy | None:
    stack = _stack()
    return stack[-1] if stack else None


def is_read(sql: str) -> bool:
    if _READ_STATEMENT.match(sql):
        return True
    return sql.lstrip()[:4].upper() == "WITH" and not _CTE_WRITE.search(sql)


def _check(execute: Any, sql: Any, params: Any, many: bool, context: dict[str, Any]) -> Any:
    stack = getattr(_local, "stack", None)
    if stack:
        policy = stack[-1]
        if policy == "action":
            raise ActionDatabaseAccessError(
                "Actions have no direct database access (ORM or cursor). Read through "
                "ctx.run_query(some_query, {...}) and write through ctx.run_mutation(some_mutation, {...}); "
                f"refused SQL: {str(sql)[:120]}"
            )
        if policy == "query" and not is_read(str(sql)):
            raise QueryWriteError(f"Queries are read-only; use a mutation to write. Refused SQL: {str(sql)[:120]}")
    return execute(sql, params, many, context)


def _install() -> None:
    for alias in connections:
        wrappers = connections[alias].execute_wrappers
        if _check not in wrappers:
            wrappers.append(_check)


@contextmanager
def policy(mode: Policy) -> Iterator[None]:
    _install()
    stack = _stack()
    stack.append(mode)
    try:
        yield
    finally:
        stack.pop()
