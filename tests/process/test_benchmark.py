"""The benchmark still works (a smoke run with tiny sizes); never a speed threshold."""

from __future__ import annotations

import subprocess
import sys

import pytest
from django.db import connection

from tests.support import ROOT

pytestmark = pytest.mark.process
DATABASES = {"sqlite": "sqlite", "postgresql": "postgres", "mysql": "mysql"}  # vendor: the benchmarks' --db


def smoke_run(script: str, *args: str) -> str:
    """Run a benchmark script with ``--smoke`` and ``args``; returns what it printed, once it exited 0."""
    out = subprocess.run(
        [sys.executable, script, "--smoke", *args], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_benchmark_smoke_run_prints_every_metric():
    db = DATABASES[connection.vendor]
    stdout = smoke_run("benchmarks/bench.py", "--db", db)
    for label in (
        "enqueue, one per transaction/s",
        "drain no-op actions, 2 workers/s",
        "enqueue->start p99, ms",
        "worker peak RSS (draining), MB",
        "baseline: bare Model.objects.create/s",
        "chain steps / no-op mutations drained, 1 worker",
    ):
        row = next(line for line in stdout.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("[") == 1, row  # one database, a median with its range


def test_benchmark_scale_smoke_run_prints_both_rates_and_the_claim_plan():
    db = DATABASES[connection.vendor]
    stdout = smoke_run("benchmarks/bench.py", "--scale", "3000", "--db", db)
    row = next(line for line in stdout.splitlines() if line.startswith(f"| {db} (n=1) |"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[1].endswith("/s") and cells[2].endswith("/s") and cells[4] in ("unchanged", "CHANGED"), row
    assert "claim plan with the table full" in stdout


def test_workflow_benchmark_smoke_run_prints_every_metric():
    db = DATABASES[connection.vendor]
    stdout = smoke_run("benchmarks/workflows.py", "--db", db)
    for label in (
        "... their steps/s",
        "workflows.start -> first step start p99, ms",
        "journal rows per step (runs + steps)",
        "idle worker CPU, runs asleep, % of a core",
        f"{db}: workflow steps / chain steps",
    ):
        row = next(line for line in stdout.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("[") == 1 and "nan" not in row, row


def test_io_benchmark_smoke_run_prints_every_row():
    db = DATABASES[connection.vendor]
    stdout = smoke_run("benchmarks/bench.py", "--io", "--db", db)
    for label in (
        "drain of 50 ms I/O-bound actions, --concurrency 200, 1 worker/s",
        "drain of 50 ms I/O-bound actions, --async-concurrency 1000, 1 worker/s",
        "  as a share of its ceiling (1000 in flight / 50 ms = 20,000/s)",
        "  worker peak RSS, MB",
    ):
        row = next(line for line in stdout.splitlines() if line.startswith(f"| {label} |"))
        assert row.count("[") == 1, row
