"""The README's quick start, step by step as a reader follows it: read from README.md itself (its ``sh`` blocks
run, its ``python`` blocks written to the file their first line names), in a new virtualenv, with the package
installed from a wheel built from this checkout (not the checkout itself). Fails if any step breaks.

Two substitutions only, both what a reader does by hand: ``pip install django-scheduled-actions`` installs
the wheel instead of the registry's release, and the long-running ``runworker`` and ``runserver`` are started
in the background (the server on a free port) while the test checks what the quick start says they do.
``createsuperuser`` gets its answers from ``DJANGO_SUPERUSER_*`` and ``--noinput``. Needs the package
registry for Django and croniter. Then the tutorial's files (docs/tutorial/index.md) are written into that
project as the tutorial says, and ``manage.py check --fail-level WARNING`` and its ``manage.py test shop`` pass.
Runs in the SQLite run of the process stage (it uses no matrix database).
"""

from __future__ import annotations

import http.cookiejar
import json
import os
import re
import shlex
import signal
import socket
import sqlite3
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(
        bool(os.environ.get("DATABASE_URL")), reason="SQLite, the quick start's database: the SQLite run"
    ),
]
# What `pip install django-scheduled-actions` may bring: Django, croniter and what they need, nothing else.
ALLOWED = {"django-scheduled-actions", "django", "asgiref", "sqlparse", "tzdata", "croniter", "python-dateutil", "six"}
ALLOWED |= {"pip", "setuptools", "pytz"}  # the venv's own; pytz: older croniter releases


def quickstart_steps() -> list[tuple[str, str]]:
    """The (language, text) of each fenced block of the README's "Quick start" section, in order."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Quick start\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^```(\w+)\n(.*?)^```$", section, re.MULTILINE | re.DOTALL)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Reader:
    """A shell as the reader has it: a working directory, a PATH with the activated venv first."""

    def __init__(self, home: Path, wheel: Path):
        self.cwd, self.wheel = home, wheel
        self.env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTHON", "VIRTUAL_ENV"))}
        self.env.pop("DATABASE_URL", None)
        self.env.update(PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", PYTHONUNBUFFERED="1")
        self.env.update(  # createsuperuser --noinput reads its answers from these
            DJANGO_SUPERUSER_USERNAME="admin",
            DJANGO_SUPERUSER_EMAIL="admin@example.com",
            DJANGO_SUPERUSER_PASSWORD="quickstart-password",
        )
        self.background: list[subprocess.Popen] = []
        self.stderr = ""

    def run(self, line: str) -> str:
        words = shlex.split(line, comments=True)
        if not words:
            return ""
        if words[0] == "cd":
            self.cwd = self.cwd / words[1]
            return ""
        if words[0] == "source":  # activate: the venv's bin first on PATH
            venv = (self.cwd / words[1]).parent.parent
            self.env.update(VIRTUAL_ENV=str(venv), PATH=f"{venv / 'bin'}{os.pathsep}{self.env['PATH']}")
            return ""
        if words[:3] == ["pip", "install", "django-scheduled-actions"]:
            words[2] = str(self.wheel)
        if words[-1] == "createsuperuser":
            words.append("--noinput")
        proc = subprocess.run(words, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=300)
        assert proc.returncode == 0, f"{line}\n{proc.stdout}\n{proc.stderr}"
        self.stderr = proc.stderr
        return proc.stdout

    def start(self, words: list[str], log: Path) -> subprocess.Popen:
        with log.open("w") as out:
            proc = subprocess.Popen(words, cwd=self.cwd, env=self.env, stdout=out, stderr=subprocess.STDOUT)
        self.background.append(proc)
        return proc

    def write(self, block: str) -> None:
        first, _, body = block.partition("\n")
        path = first.removeprefix("# ").split(" (")[0]
        target = self.cwd / path
        if "(add at the end)" in first:
            target.write_text(target.read_text() + "\n" + body)
        else:
            target.write_text(block)


def wait_for(predicate, timeout: float, what: str, log: Path | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"{what} within {timeout} s" + (f"\n{log.read_text()[-3000:]}" if log else ""))


def test_the_readme_quick_start_runs_from_a_built_wheel_in_a_new_virtualenv(tmp_path):
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
        timeout=300,
        env={**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1"},
    )
    [wheel] = dist.glob("django_scheduled_actions-*.whl")
    home = tmp_path / "home"
    home.mkdir()
    reader = Reader(home, wheel)
    steps = quickstart_steps()
    assert [lang for lang, _ in steps] == ["sh", "python", "python", "python", "sh", "sh", "sh"]
    try:
        order_id = None
        for lang, block in steps:
            if lang == "python":
                compile(block, block.partition("\n")[0], "exec")
                reader.write(block)
                continue
            for line in block.splitlines():
                words = shlex.split(line, comments=True)
                if words[-1:] == ["runworker"]:
                    check_worker(reader, words, tmp_path / "worker.log", order_id)
                elif words[-1:] == ["runserver"]:
                    check_admin(reader, words, tmp_path / "server.log")
                else:
                    out = reader.run(line)
                    if words[:3] == ["pip", "install", "django-scheduled-actions"]:
                        check_installed(reader)
                    if "place_order" in line:
                        order_id = int(out.split()[-1])  # Django 6 shell first says what it imported
        assert order_id == 1
        check_tutorial(reader)
    finally:
        for proc in reader.background:
            if proc.poll() is None:
                proc.kill()
                proc.wait()


def check_installed(reader: Reader) -> None:
    """A plain install pulls Django, croniter and what they need, nothing the library does not import."""
    listed = json.loads(reader.run("pip list --format json"))
    names = {d["name"].lower().replace("_", "-") for d in listed}
    assert "django-scheduled-actions" in names and {"django", "croniter"} <= names
    assert names - ALLOWED == set()


def check_worker(reader: Reader, words: list[str], log: Path, order_id: int | None) -> None:
    """runworker, as the README says: it logs the charge's success and the order is paid; Ctrl-C stops it."""
    assert order_id is not None
    worker = reader.start(words, log)
    db = reader.cwd / "db.sqlite3"

    def paid():
        with sqlite3.connect(db) as conn:
            return conn.execute("SELECT status, charge_id FROM shop_order WHERE id = ?", (order_id,)).fetchone()

    status, charge_id = wait_for(lambda: (row := paid()) and row[0] == "paid" and row, 60, "the order paid", log)
    assert charge_id.startswith("ch_")
    wait_for(lambda: "job succeeded job=1 name=shop.functions:charge" in log.read_text(), 30, "the log line", log)
    worker.send_signal(signal.SIGINT)  # Ctrl-C
    assert worker.wait(timeout=60) == 0, log.read_text()
    assert "scheduled_actions.W40" not in log.read_text()  # the SQLite options of the quick start are enough


def check_admin(reader: Reader, words: list[str], log: Path) -> None:
    """runserver: the superuser signs in and sees the charge's job in the admin."""
    port = free_port()
    server = reader.start([*words, "--noreload", f"127.0.0.1:{port}"], log)
    base = f"http://127.0.0.1:{port}"
    jar = http.cookiejar.CookieJar()
    opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))

    def login_page():
        try:
            with opener.open(f"{base}/admin/login/", timeout=5) as response:
                return response.read().decode()
        except OSError:
            return None

    page = wait_for(login_page, 60, "the admin's login page", log)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page)[1]
    form = {"username": "admin", "password": "quickstart-password", "csrfmiddlewaretoken": token}
    form["next"] = "/admin/django_scheduled_actions/scheduledfunction/"
    request = urllib.request.Request(f"{base}/admin/login/", urllib.parse.urlencode(form).encode())  # noqa: S310
    request.add_header("Referer", f"{base}/admin/login/")
    with opener.open(request, timeout=10) as response:
        jobs = response.read().decode()
        assert response.url.endswith("/admin/django_scheduled_actions/scheduledfunction/"), response.url
    assert "shop.functions:charge" in jobs and "shop.functions:place_order" not in jobs
    assert server.poll() is None


def check_tutorial(reader: Reader) -> None:
    """The tutorial's files, written into the quick start's project as it says, pass the checks and its test."""
    text = (ROOT / "docs" / "tutorial" / "index.md").read_text()
    blocks = re.findall(r"^```python\n(# ((?:shop|mysite)/\w+\.py)[^\n]*\n.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert [path for _, path in blocks] == [
        "shop/functions.py",
        "mysite/urls.py",
        "shop/crons.py",
        "shop/workflows.py",
        "shop/tests.py",
    ]
    for block, path in blocks:
        (reader.cwd / path).write_text(block)
        told = re.search(r"\(imported from (\S+): `([^`]+)` at its end\)", block.partition("\n")[0])
        if told:  # as the block's first line tells the reader to
            target = reader.cwd / told[1]
            target.write_text(target.read_text() + "\n" + told[2] + "\n")
    reader.run("python manage.py check --fail-level WARNING")  # the crons and the SQLite options included
    reader.run("python manage.py test shop")
    assert "Ran 1 test" in reader.stderr and "OK" in reader.stderr, reader.stderr
