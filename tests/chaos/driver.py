"""Driving the chaos runner from outside Django: set up a server and its schema, run scenarios in a runner
process pointed at it, collect the ``RESULT`` lines, format the table."""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .servers import CHAOS_ROOT, server

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def exclusive(timeout: float = 3600) -> Iterator[None]:
    """Hold the machine's chaos lock: two runs at once would share (and reset, and stop) the same servers."""
    CHAOS_ROOT.mkdir(parents=True, exist_ok=True)
    with open(CHAOS_ROOT / "run.lock", "w") as lock:
        deadline, told = time.monotonic() + timeout, False
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"another chaos run held {CHAOS_ROOT / 'run.lock'} for {timeout:g}s") from None
                if not told:
                    print(f"waiting for another chaos run to finish ({CHAOS_ROOT / 'run.lock'})", flush=True)
                    told = True
                time.sleep(1)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _env(url: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": url,
        "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
        "PYTHONUNBUFFERED": "1",
    }


def prepare(vendor: str) -> None:
    """Start the vendor's chaos server (set up on first use) and migrate its database."""
    srv = server(vendor)
    srv.ensure()
    result = subprocess.run(
        [sys.executable, "-m", "django", "migrate", "--no-input", "-v", "0"],
        cwd=ROOT,
        env=_env(srv.worker_url()),
        capture_output=True,
        text=True,
        timeout=300,
    )
    if result.returncode:
        raise RuntimeError(f"migrating the chaos database failed:\n{result.stdout}\n{result.stderr}")


def stop_servers() -> None:
    for vendor in ("postgres", "mysql"):
        srv = server(vendor)
        if srv.running():
            srv.stop()


def run_scenarios(
    vendor: str, names: list[str], *, short: bool, stream: bool = False, timeout: float = 1800
) -> list[dict]:
    """Run the scenarios in one runner process; returns their result rows."""
    srv = server(vendor)
    logs = CHAOS_ROOT / "logs"
    cmd = [sys.executable, "-m", "tests.chaos.runner", "--db", vendor, "--logs", str(logs)]
    for name in names:
        cmd += ["--scenario", name]
    if short:
        cmd.append("--short")
    proc = subprocess.Popen(
        cmd,
        cwd=ROOT,
        env=_env(srv.admin_url()),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    results, output = [], []
    try:
        for line in proc.stdout:
            output.append(line)
            if line.startswith("RESULT "):
                results.append(json.loads(line[len("RESULT ") :]))
                if stream:
                    row = results[-1]
                    print(
                        f"  {row['scenario']} ({row['db']}): lost={row['lost']} duplicated={row['duplicated']} "
                        f"recovery={row['recovery']}s violations={len(row['violations'])}",
                        flush=True,
                    )
                    if row.get("note"):
                        print(f"    {row['note']}", flush=True)
            elif stream:
                print("  | " + line, end="", flush=True)
        proc.wait(timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, 9)
            proc.wait()
    if len(results) < len(names):
        results.append(
            {
                "scenario": ",".join(names),
                "db": vendor,
                "jobs": 0,
                "lost": 0,
                "duplicated": 0,
                "recovery": None,
                "moving": None,
                "during": None,
                "before": 0,
                "after": 0,
                "kills": 0,
                "load_errors": 0,
                "seconds": 0,
                "violations": [f"runner exited {proc.returncode} early:\n{''.join(output[-40:])}"],
            }
        )
    return results


def format_table(rows: list[dict]) -> str:
    head = (
        f"{'scenario':<22} {'db':<9} {'jobs':>6} {'lost':>5} {'dup':>4} {'moving':>7} {'recovery':>9} {'before/s':>9} "
        f"{'during/s':>9} {'after/s':>8} {'faults':>7} {'result':>7}"
    )
    lines = [head, "-" * len(head)]
    for r in rows:
        recovery = "-" if r["recovery"] is None else f"{r['recovery']:.1f}s"
        moving = "-" if r.get("moving") is None else f"{r['moving']:.1f}s"
        during = "-" if r.get("during") is None else f"{r['during']:.1f}"
        db = {"postgres": "postgres", "mysql": "mariadb"}.get(r["db"], r["db"])
        lines.append(
            f"{r['scenario']:<22} {db:<9} {r['jobs']:>6} {r['lost']:>5} {r['duplicated']:>4} "
            f"{moving:>7} {recovery:>9} {r['before']:>9.1f} {during:>9} {r['after']:>8.1f} {r['kills']:>7} "
            f"{'FAIL' if r['violations'] else 'ok':>7}"
        )
    return "\n".join(lines)
