"""The chaos suite's moving parts, run inside the runner process (Django set up against the chaos server as
its superuser): worker processes, the steady mixed load, the throughput meter and the invariants."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from datetime import UTC, datetime, timedelta
from pathlib import Path

from django.db import connection, connections
from django.utils import timezone

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import (
    CronJob,
    IdempotencyKey,
    ScheduledFunction,
    State,
    WorkerProcess,
    WorkflowRun,
    WorkflowStep,
)
from tests.app.models import Counter as ChaosCounter
from tests.app.models import Effect

from . import functions as cf

ROOT = Path(__file__).resolve().parents[2]
FINAL = (State.SUCCESS, State.FAILED, State.CANCELED)
LEASE_SECONDS = 3
CRON_LABEL = "test: every second"  # tests/app/crons.py, registered by SA_TEST_CRONS=1


def wait_for(predicate, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = predicate()
        except Exception:  # the database may be away mid-fault: keep waiting
            connection.close()
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


# --- worker processes ---


class Workers:
    """``runworker`` processes, each a session leader logging to its own file; killed by process group."""

    def __init__(self, worker_url: str, logs: Path, *args: str):
        self.worker_url = worker_url
        self.logs = logs
        self.args = args
        self.procs: dict[str, subprocess.Popen] = {}
        self.incarnations = Counter()
        self.faulted: set[str] = set()  # ids of the workers the fault killed or paused: they may lose jobs
        self.stall_marker = logs / "stall-marker"
        self.stall_marker.unlink(missing_ok=True)

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "DATABASE_URL": self.worker_url,
            "DJANGO_SETTINGS_MODULE": "tests.chaos.settings",
            "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
            "PYTHONUNBUFFERED": "1",
            "SCHEDULED_ACTIONS_LEASE_SECONDS": str(LEASE_SECONDS),
            "SA_TEST_CRONS": "1",
            cf.STALL_MARKER: str(self.stall_marker),
        }

    def worker_id(self, slot: str) -> str:
        return f"{slot}.{self.incarnations[slot]}"

    def start(self, slot: str, *extra: str, env: dict[str, str] | None = None) -> str:
        """Start the worker of ``slot``; each incarnation gets a worker id of its own."""
        self.incarnations[slot] += 1
        worker_id = self.worker_id(slot)
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{slot}.log", "ab") as log:
            log.write(f"=== start {worker_id} at {datetime.now(UTC).isoformat()}\n".encode())
            log.flush()
            self.procs[slot] = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "django",
                    "runworker",
                    "--concurrency",
                    "4",
                    "--worker-id",
                    worker_id,
                    *self.args,
                    *extra,
                ],
                cwd=ROOT,
                env=self.env() | (env or {}),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        return worker_id

    def wait_ready(self, timeout: float = 60) -> None:
        ids = [self.worker_id(slot) for slot in self.procs]
        wait_for(
            lambda: WorkerProcess.objects.filter(worker_id__in=ids).count() == len(ids),
            timeout,
            f"workers {ids} to register\n{self.tails()}",
        )

    def kill(self, slot: str) -> None:
        self.faulted.add(self.worker_id(slot))
        proc = self.procs[slot]
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(30)

    def claimed_by(self, slot: str) -> bool:
        return ScheduledFunction.objects.filter(worker_id=self.worker_id(slot)).exists()

    def signal(self, slot: str, signum: int) -> None:
        os.killpg(self.procs[slot].pid, signum)

    def stop(self, slot: str) -> None:
        """Stop the worker of ``slot`` as a deployment does (SIGTERM: it finishes what it runs)."""
        proc = self.procs.pop(slot)
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(30)
            raise AssertionError(f"worker {slot} did not stop within 30s of SIGTERM") from None

    def stop_all(self) -> None:
        for proc in self.procs.values():
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
        deadline = time.monotonic() + 15
        for proc in self.procs.values():
            try:
                proc.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:  # not a fault: the invariants will say what it left behind
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(30)

    def tails(self, lines: int = 15) -> str:
        out = []
        for slot in self.procs:
            text = (self.logs / f"{slot}.log").read_text(errors="replace").splitlines()
            out.append(f"--- {slot} ({self.logs / f'{slot}.log'}):\n    " + "\n    ".join(text[-lines:]))
        return "\n".join(out)


# --- the load ---


class Load(threading.Thread):
    """Schedules a steady mix at ``rate`` jobs a second: mutations, actions without and with a RetryPolicy,
    delayed jobs and far-future ones. Keys whose scheduling call returned are ``acked``."""

    def __init__(self, rate: float):
        super().__init__(name="chaos-load", daemon=True)
        self.rate = rate
        self.acked: dict[str, str] = {}  # key -> kind of job
        self.errors = 0
        self.paused = threading.Event()
        self.stopping = threading.Event()
        self.random = random.Random(1234)  # noqa: S311
        self.number = 0

    def one(self) -> None:
        self.number += 1
        key, roll = f"k{self.number}", self.random.random()
        if roll < 0.40:
            scheduler.run_after(0, cf.effect, {"key": key})
            kind = "mutation"
        elif roll < 0.58:
            scheduler.run_after(0, cf.once, {"key": key})
            kind = "once"
        elif roll < 0.78:
            scheduler.run_after(0, cf.retried, {"key": key, "fail_first": self.number % 3 == 0})
            kind = "retried"
        elif roll < 0.97:
            scheduler.run_after(self.random.uniform(0.5, 4.0), cf.effect, {"key": key})
            kind = "mutation"
        else:
            scheduler.run_after(timedelta(days=3), cf.effect, {"key": key})
            kind = "future"
        self.acked[key] = kind

    def run(self) -> None:
        interval = 1 / self.rate
        next_at = time.monotonic()
        while not self.stopping.is_set():
            if self.paused.is_set():
                self.stopping.wait(0.05)
                next_at = time.monotonic()
                continue
            try:
                self.one()
            except Exception:  # the database is away: the key is not acked; reconnect on the next call
                self.errors += 1
                connection.close()
                self.stopping.wait(0.1)
            next_at += interval
            delay = next_at - time.monotonic()
            if delay > 0:
                self.stopping.wait(delay)
            elif delay < -1:  # fell behind (the database was away): do not burst to catch up
                next_at = time.monotonic()
        connections.close_all()

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


# --- measuring ---


def completed_between(start: datetime, end: datetime) -> int:
    return ScheduledFunction.objects.filter(completed_time__gte=start, completed_time__lt=end).count()


def rate_between(start: datetime, end: datetime) -> float:
    return completed_between(start, end) / max((end - start).total_seconds(), 0.001)


class Monitor(threading.Thread):
    """Watches for jobs in progress long past their lease (recovery should take them within seconds)."""

    def __init__(self):
        super().__init__(name="chaos-monitor", daemon=True)
        self.stopping = threading.Event()
        self.worst = 0.0  # seconds past its lease of the most overdue in-progress job seen

    def run(self) -> None:
        while not self.stopping.wait(0.5):
            try:
                oldest = (
                    ScheduledFunction.objects.filter(state=State.IN_PROGRESS, lease_expires_at__isnull=False)
                    .order_by("lease_expires_at")
                    .values_list("lease_expires_at", flat=True)
                    .first()
                )
            except Exception:
                connection.close()
                continue
            if oldest is not None:
                self.worst = max(self.worst, (timezone.now() - oldest).total_seconds())
        connections.close_all()

    def stop(self) -> None:
        self.stopping.set()
        self.join(10)


def reset_tables() -> None:
    for model in (
        WorkflowStep,
        WorkflowRun,
        IdempotencyKey,
        ScheduledFunction,
        CronJob,
        WorkerProcess,
        Effect,
        ChaosCounter,
    ):
        model.objects.all().delete()
    ChaosCounter.objects.create(name=cf.COUNTER)
