"""Helpers shared by the test tiers: the test database's URL for worker subprocesses, real worker processes, waiting."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from django.db import connection

ROOT = Path(__file__).resolve().parent.parent.parent


def database_url() -> str:
    """A DATABASE_URL for the test database, for worker subprocesses."""
    s = connection.settings_dict
    vendor = connection.vendor
    if vendor == "sqlite":
        return f"sqlite:///{s['NAME']}"
    user = s.get("USER") or ""
    password = f":{s['PASSWORD']}" if s.get("PASSWORD") else ""
    scheme = {"postgresql": "postgres", "mysql": "mysql"}[vendor]
    return f"{scheme}://{user}{password}@{s['HOST']}:{s['PORT']}/{s['NAME']}"


def subprocess_env(**extra: str) -> dict[str, str]:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
        "PYTHONUNBUFFERED": "1",
        "PYTHONFAULTHANDLER": "1",
    }  # a worker that hangs is sent SIGABRT: its threads' stacks go to its log
    env.update(extra)
    return env


def start_worker(*args: str, log: Path | None = None, **env: str) -> subprocess.Popen:
    """Start ``manage.py runworker`` as a real process against the test database."""
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - closed with the process
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runworker", *args],
        cwd=ROOT,
        env=subprocess_env(**env),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_until(predicate, timeout: float = 10.0, message: str = "condition", describe=None) -> None:
    """Poll ``predicate`` until it is true; fail with ``message`` after ``timeout`` seconds, and with what
    ``describe()`` returns then (the state that kept the predicate false)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    found = f"\n{describe()}" if describe else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {message}{found}")
