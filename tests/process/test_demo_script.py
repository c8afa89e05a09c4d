"""``make demo`` (scripts/demo.sh) as a new user runs it: no root, its own virtualenv, a port of one's choosing,
a taken port said before anything is seeded, its pages named and served, and every process it started stopped
when one of them dies. The demo is SQLite whatever the matrix run's database: it runs in the SQLite run."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from tests.support import ROOT

pytestmark = [
    pytest.mark.process,
    pytest.mark.skipif(bool(os.environ.get("DATABASE_URL")), reason="the demo is SQLite: run in the SQLite run"),
]
DEMO = ROOT / "scripts" / "demo.sh"


def demo_env(port: int, db: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "DJANGO_SETTINGS_MODULE", "PYTHONPATH")}
    return {**env, "PORT": str(port), "DEMO_DB": str(db)}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_taken_port_is_said_at_once_and_nothing_is_built_or_seeded(tmp_path):
    db = tmp_path / "demo.sqlite3"
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = time.monotonic()
        proc = subprocess.run(["bash", str(DEMO)], env=demo_env(port, db), capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert f"demo: ERROR: cannot serve on 127.0.0.1:{port} (Address already in use)" in proc.stderr
    assert "make demo PORT=8010" in proc.stderr
    assert time.monotonic() - started < 30
    assert proc.stdout == ""  # nothing built, migrated or seeded
    assert not db.exists()


def test_the_demo_serves_its_pages_and_stops_every_process_when_one_dies(tmp_path):
    port, db = free_port(), tmp_path / "demo.sqlite3"
    log = tmp_path / "demo.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            ["bash", str(DEMO)], env=demo_env(port, db), stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        deadline = time.monotonic() + 400  # the first run builds .venv-demo
        while "Ctrl-C stops" not in log.read_text() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
        console = log.read_text()
        assert "Ctrl-C stops" in console, console[-3000:]
        assert f"http://127.0.0.1:{port}/demo/" in console and f"http://127.0.0.1:{port}/admin/" in console
        assert "on purpose" in console and "simulated" in console
        assert db.exists()
        pids = re.search(r"worker started \(pid (\d+)\), server started \(pid (\d+)\)", console)
        assert pids, console[-3000:]
        worker, server = int(pids[1]), int(pids[2])
        answered = None
        while answered is None and time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/demo/", timeout=5) as response:
                    answered = response.status
            except OSError:
                time.sleep(0.5)
        assert answered == 200
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/admin/login/", timeout=5) as response:
            assert response.status == 200

        os.kill(server, signal.SIGKILL)  # one process dies: the demo stops the other and exits
        assert proc.wait(timeout=60) == 1
        assert not alive(worker)
        assert "the server exited" in log.read_text()
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
