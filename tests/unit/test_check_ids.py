"""The ids of the system checks: one literal table (core/check_ids.py), one id per check (the docs: test_docs.py)."""

from __future__ import annotations

import re
from collections import Counter

from django_scheduled_actions.conf import SETTINGS
from django_scheduled_actions.core import check_ids

ID = re.compile(r"scheduled_actions\.[EW]\d{3}")


def all_ids() -> list[str]:
    """Every id the module holds: its constants and the values of its tables."""
    found: list[str] = []
    for name, value in vars(check_ids).items():
        if name.startswith("_"):
            continue
        if isinstance(value, str) and value.startswith("scheduled_actions."):
            found.append(value)
        elif isinstance(value, dict):
            found += value.values()
    return found


def test_every_setting_has_an_id_and_every_id_a_setting():
    assert sorted(check_ids.SETTINGS) == sorted(SETTINGS)


def test_no_id_repeats_and_each_is_well_formed():
    ids = all_ids()
    assert len(ids) == 1 + len(SETTINGS) + 7 + 3 + 1 + 2  # unknown setting, settings, crons, tasks, rates, SQLite
    assert [i for i, n in Counter(ids).items() if n > 1] == []
    assert [i for i in ids if not ID.fullmatch(i)] == []


def test_the_ids_of_the_settings_never_moved():
    """Ids are kept once given (SILENCED_SYSTEM_CHECKS names them): these are the ones released."""
    assert check_ids.UNKNOWN_SETTING == "scheduled_actions.E001"
    assert {name: int(i[-3:]) for name, i in check_ids.SETTINGS.items()} == {
        "POLL_INTERVAL": 2,
        "LEASE_SECONDS": 3,
        "ACTION_TIMEOUT": 4,
        "RETENTION": 5,
        "IDEMPOTENCY_TTL": 6,
        "STRICT_ACTIONS": 7,
        "MAX_ARGS_BYTES": 8,
        "MUTATION_ISOLATION": 9,
        "QUEUE_CONCURRENCY": 10,
        "UNKNOWN_FUNCTION_GRACE": 11,
        "LISTEN_DATABASE": 12,
        "TELEMETRY": 13,
    }
