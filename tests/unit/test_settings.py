"""Settings (DESIGN §10): one accessor, validated by system checks with ids and hints."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core import checks
from django.test import override_settings

from django_scheduled_actions.checks import check_settings
from django_scheduled_actions.conf import app_settings
from django_scheduled_actions.core.retry import RetryPolicy


def test_defaults():
    assert app_settings.POLL_INTERVAL == 0.2  # tests/settings.py
    assert app_settings.ACTION_TIMEOUT == 600.0
    assert app_settings.RETENTION == timedelta(days=7)
    assert app_settings.IDEMPOTENCY_TTL == timedelta(hours=24)
    assert app_settings.STRICT_ACTIONS is True
    assert app_settings.MAX_ARGS_BYTES == 1024 * 1024
    assert app_settings.MUTATION_ISOLATION == "serializable"
    assert app_settings.UNKNOWN_FUNCTION_GRACE == 600.0


def test_override_settings_is_seen_and_numbers_become_durations():
    with override_settings(SCHEDULED_ACTIONS_RETENTION=3600, SCHEDULED_ACTIONS_LEASE_SECONDS=5):
        assert app_settings.RETENTION == timedelta(hours=1)
        assert app_settings.LEASE_SECONDS == 5
    assert app_settings.RETENTION == timedelta(days=7)


def test_valid_settings_pass_the_checks():
    with override_settings(
        SCHEDULED_ACTIONS_RETENTION=timedelta(days=1),
        SCHEDULED_ACTIONS_MUTATION_ISOLATION="read committed",
        SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=0,
    ):
        assert check_settings() == []
    with override_settings(SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE="600"):
        assert [e.id for e in check_settings()] == ["scheduled_actions.E011"]


def test_check_messages_name_the_setting_with_ids_and_hints():
    with override_settings(
        SCHEDULED_ACTIONS_POLL_INTERVALL=1,
        SCHEDULED_ACTIONS_LEASE_SECONDS=0,
        SCHEDULED_ACTIONS_ACTION_TIMEOUT="10",
        SCHEDULED_ACTIONS_RETENTION=-1,
        SCHEDULED_ACTIONS_IDEMPOTENCY_TTL=timedelta(0),
        SCHEDULED_ACTIONS_STRICT_ACTIONS=1,
        SCHEDULED_ACTIONS_MAX_ARGS_BYTES=1.5,
        SCHEDULED_ACTIONS_MUTATION_ISOLATION="snapshot",
        SCHEDULED_ACTIONS_POLL_INTERVAL=float("nan"),
        SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=-1,
    ):
        errors = check_settings()
    assert [(e.id, e.msg) for e in errors] == [
        ("scheduled_actions.E004", "SCHEDULED_ACTIONS_ACTION_TIMEOUT must be a finite number of seconds, got '10'."),
        (
            "scheduled_actions.E006",
            "SCHEDULED_ACTIONS_IDEMPOTENCY_TTL must be a positive duration, got datetime.timedelta(0).",
        ),
        ("scheduled_actions.E003", "SCHEDULED_ACTIONS_LEASE_SECONDS must be greater than 0, got 0."),
        (
            "scheduled_actions.E008",
            "SCHEDULED_ACTIONS_MAX_ARGS_BYTES must be a positive whole number of bytes, got 1.5.",
        ),
        (
            "scheduled_actions.E009",
            "SCHEDULED_ACTIONS_MUTATION_ISOLATION must be one of 'serializable', 'read committed', got 'snapshot'.",
        ),
        ("scheduled_actions.E002", "SCHEDULED_ACTIONS_POLL_INTERVAL must be a finite number of seconds, got nan."),
        ("scheduled_actions.E001", "Unknown setting SCHEDULED_ACTIONS_POLL_INTERVALL."),
        ("scheduled_actions.E005", "SCHEDULED_ACTIONS_RETENTION must be positive, got -1."),
        ("scheduled_actions.E007", "SCHEDULED_ACTIONS_STRICT_ACTIONS must be True or False, got 1."),
        ("scheduled_actions.E011", "SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE must be 0 or more, got -1."),
    ]
    unknown = next(e for e in errors if e.id == "scheduled_actions.E001")
    assert unknown.hint == "Did you mean SCHEDULED_ACTIONS_POLL_INTERVAL?"
    assert all(e.hint for e in errors)


def test_checks_are_registered_with_django():
    with override_settings(SCHEDULED_ACTIONS_BOGUS=1):
        ids = [e.id for e in checks.run_checks(tags=[checks.Tags.compatibility])]
    assert "scheduled_actions.E001" in ids


@pytest.mark.parametrize(("attempt", "expected"), [(1, 0.25), (2, 0.5), (3, 1.0), (20, 3600.0), (5000, 3600.0)])
def test_retry_backoff_without_jitter(attempt, expected):
    assert RetryPolicy(jitter=False).backoff(attempt) == expected


def test_retry_backoff_jitter_is_within_half_to_one_and_a_half():
    policy = RetryPolicy(initial_backoff=1.0, base=3.0)
    delays = [policy.backoff(2) for _ in range(2000)]
    assert 1.5 <= min(delays) < 1.7 and 4.3 < max(delays) < 4.5


@pytest.mark.parametrize(
    "kwargs", [{"max_attempts": 0}, {"initial_backoff": -1}, {"base": 0.5}, {"max_backoff": float("inf")}]
)
def test_retry_policy_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        RetryPolicy(**kwargs)


@pytest.mark.filterwarnings("ignore:Overriding setting DATABASES")  # only read by the check here
def test_listen_database_must_be_an_alias_of_a_postgresql_database():
    sqlite = {"ENGINE": "django.db.backends.sqlite3", "NAME": "x.sqlite3"}
    direct = {"ENGINE": "django.db.backends.postgresql", "NAME": "app", "HOST": "db.internal"}
    assert app_settings.LISTEN_DATABASE is None
    with override_settings(DATABASES={"default": sqlite, "direct": direct}):
        for good in (None, "direct"):
            with override_settings(SCHEDULED_ACTIONS_LISTEN_DATABASE=good):
                assert check_settings() == []
                assert app_settings.LISTEN_DATABASE == good
        problems = []
        for bad in ("replica", "default", 1):
            with override_settings(SCHEDULED_ACTIONS_LISTEN_DATABASE=bad):
                problems += [(e.id, e.msg) for e in check_settings()]
    assert problems == [
        (
            "scheduled_actions.E012",
            "SCHEDULED_ACTIONS_LISTEN_DATABASE must be None or an alias of DATABASES ('default', 'direct'), "
            "got 'replica'.",
        ),
        (
            "scheduled_actions.E012",
            "SCHEDULED_ACTIONS_LISTEN_DATABASE must name a PostgreSQL database (LISTEN/NOTIFY is PostgreSQL's), "
            "got 'default'.",
        ),
        (
            "scheduled_actions.E012",
            "SCHEDULED_ACTIONS_LISTEN_DATABASE must be None or an alias of DATABASES ('default', 'direct'), got 1.",
        ),
    ]


def test_only_the_apps_logging_receives_a_signal_until_another_receiver_connects():
    from django.dispatch import Signal

    from django_scheduled_actions.signals import LOGGING_UID, only_logged

    signal = Signal()
    assert only_logged(signal)
    signal.connect(lambda **kwargs: None, dispatch_uid=f"{LOGGING_UID}log_started", weak=False)
    assert only_logged(signal)
    signal.connect(lambda **kwargs: None, weak=False)  # a project's receiver may use the ORM
    assert not only_logged(signal)
