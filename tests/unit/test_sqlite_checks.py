"""SQLite as the embedded default: a warning when a database lacks WAL or a busy timeout (W401, W402)."""

from __future__ import annotations

from django.core import checks

from django_scheduled_actions.checks import SQLITE_OPTIONS, check_sqlite, sqlite_warnings

SQLITE = "django.db.backends.sqlite3"


def test_a_sqlite_database_as_startproject_leaves_it_gets_both_warnings_naming_the_alias():
    warnings = sqlite_warnings({"default": {"ENGINE": SQLITE, "NAME": "/srv/db.sqlite3"}})
    assert [(w.id, w.obj, w.level) for w in warnings] == [
        ("scheduled_actions.W401", "default", checks.WARNING),
        ("scheduled_actions.W402", "default", checks.WARNING),
    ]
    assert warnings[0].hint.startswith(
        'Add to DATABASES[\'default\']["OPTIONS"]: "init_command": "PRAGMA journal_mode=WAL;"'
    )
    assert warnings[1].hint == 'Add to DATABASES[\'default\']["OPTIONS"]: "timeout": 20 (seconds).'


def test_the_recommended_options_silence_them():
    assert sqlite_warnings({"default": {"ENGINE": SQLITE, "NAME": "db.sqlite3", "OPTIONS": dict(SQLITE_OPTIONS)}}) == []
    spelled = {"init_command": "pragma JOURNAL_MODE = wal; PRAGMA synchronous=NORMAL;", "timeout": 5}
    assert sqlite_warnings({"default": {"ENGINE": SQLITE, "NAME": "db.sqlite3", "OPTIONS": spelled}}) == []


def test_each_missing_option_is_its_own_warning():
    wal_only = {"ENGINE": SQLITE, "NAME": "a.sqlite3", "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"}}
    timeout_only = {"ENGINE": SQLITE, "NAME": "b.sqlite3", "OPTIONS": {"timeout": 20}}
    warnings = sqlite_warnings({"a": wal_only, "b": timeout_only})
    assert [(w.id, w.obj) for w in warnings] == [("scheduled_actions.W402", "a"), ("scheduled_actions.W401", "b")]


def test_other_databases_and_in_memory_sqlite_are_left_alone():
    assert (
        sqlite_warnings(
            {
                "default": {"ENGINE": "django.db.backends.postgresql", "NAME": "shop"},
                "mem": {"ENGINE": SQLITE, "NAME": ":memory:"},
                "shared": {"ENGINE": SQLITE, "NAME": "file:x?mode=memory&cache=shared"},
            }
        )
        == []
    )


def test_the_check_is_registered_and_the_suites_settings_pass_it():
    assert check_sqlite in checks.registry.registry.get_checks()
    assert check_sqlite() == []  # tests/settings.py (the demo's) sets WAL and a timeout on SQLite
