"""What became of a transaction whose connection failed (store/commits.py): run again only if nothing of it
committed. The lost connections themselves are the chaos suite's (``backend_kill``) and
tests/db/test_worker_faults.py's; here, on real transactions, the lookup that decides."""

from __future__ import annotations

import pytest
from django.db import InterfaceError, OperationalError, connection, transaction

from django_scheduled_actions.store import commits
from tests.app.models import Effect

pytestmark = pytest.mark.django_db(transaction=True)


def _attempt_of(rollback: bool) -> commits.Attempt:
    attempt = commits.Attempt("default")
    with transaction.atomic():
        Effect.objects.create(key="looked-up")
        attempt.about_to_commit()
        transaction.set_rollback(rollback)
    return attempt


@pytest.mark.parametrize(("rollback", "outcome"), [(False, "committed"), (True, "aborted")])
def test_a_commit_whose_answer_was_lost_is_looked_up_on_postgresql(rollback, outcome):
    if connection.vendor != "postgresql":
        pytest.skip("only PostgreSQL can tell what became of a transaction (txid_status)")
    attempt = _attempt_of(rollback)
    assert attempt.committing and attempt.xid is not None
    assert commits._outcome(attempt, OperationalError("lost")) == outcome


def test_elsewhere_a_commit_whose_answer_was_lost_is_not_guessed():
    if connection.vendor == "postgresql":
        pytest.skip("PostgreSQL looks it up")
    attempt = _attempt_of(rollback=False)
    assert commits._outcome(attempt, OperationalError("lost")) == "may or may not have committed"


def test_a_connection_lost_before_the_commit_runs_the_transaction_again():
    with pytest.raises(commits.RunAgain), commits.resolved("default"):
        raise InterfaceError("connection already closed")


def test_an_error_that_is_not_the_connections_is_raised_as_it_is():
    with pytest.raises(OperationalError, match="no such thing"), commits.resolved("default"):
        raise OperationalError("no such thing")
