"""crons.py: ``cron_jobs()`` definitions, and bad definitions failing start-up through the system checks."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta

import pytest
from django.core import checks
from django.core.management import call_command
from django.core.management.base import SystemCheckError

from django_scheduled_actions import cron_jobs
from django_scheduled_actions.cron import definitions as crons
from django_scheduled_actions.cron.definitions import CronRegistry
from django_scheduled_actions.cron.schedules import Cron, Interval
from tests.app import cron_functions as cf
from tests.support import ROOT, subprocess_env


@pytest.fixture
def registry(monkeypatch) -> CronRegistry:
    """A fresh default registry, so ``cron_jobs()`` and the system checks see only this test's crons."""
    fresh = CronRegistry()
    monkeypatch.setattr(crons, "cron_registry", fresh)
    return fresh


def test_every_kind_of_definition_from_design(registry):
    jobs = cron_jobs()
    jobs.interval("cleanup stale jobs", {"hours": 1}, cf.mark, {"label": "a"})
    jobs.interval("as timedelta", timedelta(seconds=30), cf.ping)
    jobs.cron("daily report", "0 9 * * *", cf.mark, {"label": "b"}, tz="Europe/Amsterdam")
    jobs.hourly("sync", {"minute_utc": 5}, cf.ping)
    jobs.daily("digest", {"hour_utc": 9, "minute_utc": 0}, cf.ping, {"times": 2})
    jobs.weekly("cleanup", {"day_of_week": "sunday", "hour_utc": 0, "minute_utc": 0}, cf.ping)
    jobs.monthly("invoice", {"day": 1, "hour_utc": 0, "minute_utc": 0}, cf.ping)
    assert registry.problems() == []
    defined = {d.name: (d.schedule, d.function.name, d.args, d.module) for d in registry.all()}
    assert defined == {
        "cleanup stale jobs": (Interval(timedelta(hours=1)), cf.mark.name, {"label": "a"}, __name__),
        "as timedelta": (Interval(timedelta(seconds=30)), cf.ping.name, {}, __name__),
        "daily report": (Cron("0 9 * * *", "Europe/Amsterdam"), cf.mark.name, {"label": "b"}, __name__),
        "sync": (Cron("5 * * * *"), cf.ping.name, {}, __name__),
        "digest": (Cron("0 9 * * *"), cf.ping.name, {"times": 2}, __name__),
        "cleanup": (Cron("0 0 * * 0"), cf.ping.name, {}, __name__),
        "invoice": (Cron("0 0 1 * *"), cf.ping.name, {}, __name__),
    }
    assert registry.get("daily report").model_fields() == {
        "function": "tests.app.cron_functions:mark",
        "args": {"label": "b"},
        "expression": "0 9 * * *",
        "interval_seconds": None,
        "timezone": "Europe/Amsterdam",
    }
    assert registry.get("cleanup stale jobs").model_fields()["interval_seconds"] == 3600.0


def test_bad_definitions_are_reported_by_system_checks_naming_the_cron(registry):
    jobs = cron_jobs()
    jobs.interval("fine", {"seconds": 1}, cf.ping)
    jobs.interval("fine", {"seconds": 2}, cf.ping)
    jobs.cron("bad minute", "61 * * * *", cf.ping)
    jobs.cron("bad zone", "0 9 * * *", cf.ping, tz="Europe/Atlantis")
    jobs.interval("too often", {"seconds": 0.5}, cf.ping)
    jobs.interval("a query", {"seconds": 5}, cf.look)
    jobs.interval("plain callable", {"seconds": 5}, print)
    jobs.interval("bad args", {"seconds": 5}, cf.mark, {"label": 5})
    jobs.interval("missing args", {"seconds": 5}, cf.mark)
    jobs.daily("bad helper", {"hour_utc": 25, "minute_utc": 0}, cf.ping)
    jobs.interval("", {"seconds": 5}, cf.ping)
    errors = checks.run_checks(tags=[checks.Tags.compatibility])
    mine = [(e.id, e.msg) for e in errors if e.id.startswith("scheduled_actions.E1")]
    module = __name__
    assert mine == [
        ("scheduled_actions.E101", f"Cron 'fine' ({module}): the name is already used by a cron in {module}."),
        ("scheduled_actions.E102", f"Cron 'bad minute' ({module}): invalid cron expression '61 * * * *'."),
        ("scheduled_actions.E103", f"Cron 'bad zone' ({module}): unknown time zone 'Europe/Atlantis'."),
        (
            "scheduled_actions.E104",
            f"Cron 'too often' ({module}): an interval must be at least one second, "
            "got datetime.timedelta(microseconds=500000).",
        ),
        (
            "scheduled_actions.E105",
            f"Cron 'a query' ({module}): only mutations and actions can run as crons, got a query.",
        ),
        (
            "scheduled_actions.E105",
            f"Cron 'plain callable' ({module}): only mutations and actions can run as "
            "crons, got <built-in function print>.",
        ),
        (
            "scheduled_actions.E106",
            f"Cron 'bad args' ({module}): argument 'label' of "
            "tests.app.cron_functions:mark: expected str, got int (5).",
        ),
        (
            "scheduled_actions.E106",
            f"Cron 'missing args' ({module}): argument 'label' of "
            "tests.app.cron_functions:mark: missing required argument.",
        ),
        (
            "scheduled_actions.E102",
            f"Cron 'bad helper' ({module}): hour_utc must be a whole number from 0 to 23, got 25.",
        ),
        (
            "scheduled_actions.E107",
            f"Cron '' ({module}): the name must be a non-empty string of at most 200 characters.",
        ),
    ]
    assert all(e.hint for e in errors if e.id.startswith("scheduled_actions.E1"))
    assert [d.name for d in registry.all()] == ["fine"]
    with pytest.raises(SystemCheckError, match="E102"):
        call_command("check", tag=["compatibility"])


def test_importing_a_crons_module_again_replaces_its_definitions(registry):
    for _ in range(2):
        jobs = registry.jobs("shop.crons")
        jobs.interval("cleanup", {"hours": 1}, cf.ping)
    assert registry.problems() == [] and len(registry.all()) == 1
    registry.jobs("other.crons").interval("cleanup", {"hours": 2}, cf.ping)
    assert [p.message for p in registry.problems()] == ["the name is already used by a cron in shop.crons"]


def test_manage_py_check_fails_on_a_bad_cron(tmp_path):
    """As a user would see it: a crons.py in an installed app with a bad expression stops ``check``."""
    app = tmp_path / "badcrons"
    app.mkdir()
    (app / "__init__.py").write_text("")
    (app / "crons.py").write_text(
        textwrap.dedent("""
        from django_scheduled_actions import cron_jobs
        from tests.app import cron_functions as cf

        crons = cron_jobs()
        crons.cron("broken", "61 * * * *", cf.ping)
    """)
    )
    (tmp_path / "badcrons_settings.py").write_text(
        "from tests.settings import *\nINSTALLED_APPS = [*INSTALLED_APPS, 'badcrons']\n"
    )
    env = subprocess_env(DJANGO_SETTINGS_MODULE="badcrons_settings")
    env["PYTHONPATH"] = f"{tmp_path}:{env['PYTHONPATH']}"
    result = subprocess.run(
        [sys.executable, "-m", "django", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode != 0
    assert "scheduled_actions.E102" in result.stderr and "'broken' (badcrons.crons)" in result.stderr
