"""What became of a transaction whose connection failed, so that it is run again only when nothing of it
committed, and never failed when all of it did.

A connection killed, a server restarting or refusing connections, while a mutation's transaction runs:

- before its body returned: nothing committed; ``RunAgain`` (``retry_on_conflict`` runs it on a new
  connection);
- after the commit returned, while Django restored autocommit (MySQL asks the server for that): it
  committed; the error is dropped and the body's result stands;
- during the COMMIT: the server may or may not have applied it. PostgreSQL says which: the transaction's
  id, read just before the commit, is looked up with ``txid_status`` on a new connection (committed: the
  result stands; aborted: ``RunAgain``). Elsewhere the error is raised: the caller cannot be told, and
  running it again could apply it twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType

from django.db import DatabaseError, InterfaceError, connections

from .errors import is_connection_error

logger = logging.getLogger("django_scheduled_actions")
STATUS_PATIENCE = 10.0  # seconds to find out, on a new connection, what became of a commit


class RunAgain(Exception):
    """Nothing of the transaction committed: run it again on a new connection (``args[0]``: its alias)."""


class Attempt:
    """One run of a transaction: the body marks when it is about to commit."""

    def __init__(self, using: str):
        self.using = using
        self.committing = False
        self.xid: int | None = None

    def about_to_commit(self) -> None:
        connection = connections[self.using]
        if connection.vendor == "postgresql":  # None when it wrote nothing: then there is nothing to lose
            with connection.cursor() as cursor:
                cursor.execute("SELECT txid_current_if_assigned()")
                self.xid = cursor.fetchone()[0]
        self.committing = True


@contextmanager
def resolved(using: str) -> Iterator[Attempt]:
    """Around one outermost transaction (see the module's docstring)."""
    attempt = Attempt(using)
    try:
        yield attempt
    except (
        DatabaseError,
        InterfaceError,
    ) as exc:  # InterfaceError ("connection already closed") is not a DatabaseError
        if not is_connection_error(exc) or connections[using].in_atomic_block:
            raise
        if not attempt.committing:
            raise RunAgain(using) from exc
        outcome = _outcome(attempt, exc)
        logger.warning("connection lost while committing; the transaction %s error=%r", outcome, exc)
        if outcome == "aborted":
            raise RunAgain(using) from exc
        if outcome != "committed":
            raise


def _outcome(attempt: Attempt, exc: BaseException) -> str:
    if _raised_after_commit(exc.__traceback__):
        return "committed"
    connection = connections[attempt.using]
    if connection.vendor != "postgresql":
        return "may or may not have committed"
    if attempt.xid is None:
        return "committed"  # it wrote nothing
    connection.close()
    deadline = time.monotonic() + STATUS_PATIENCE
    while True:
        try:
            with connection.cursor() as cursor:
                cursor.execute("SELECT txid_status(%s)", [attempt.xid])
                status = cursor.fetchone()[0]
        except (DatabaseError, InterfaceError) as error:
            if not is_connection_error(error) or time.monotonic() > deadline:
                return "may or may not have committed"
            connection.close()
            time.sleep(0.2)
            continue
        if status in ("committed", "aborted") or time.monotonic() > deadline:
            return status or "may or may not have committed"
        time.sleep(0.05)  # "in progress": the server is still ending the killed session


def _raised_after_commit(tb: TracebackType | None) -> bool:
    """Whether the error came from restoring autocommit (Django's ``set_autocommit``) rather than the
    commit: ``atomic`` commits first and restores it after."""
    names = []
    while tb is not None:
        names.append(tb.tb_frame.f_code.co_name)
        tb = tb.tb_next
    return "set_autocommit" in names and "_commit" not in names and "commit" not in names
