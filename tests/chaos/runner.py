"""Runs chaos scenarios against one chaos server, inside a process whose Django points at it as the superuser:
``python -m tests.chaos.runner --db postgres --scenario crash_recovery [--short]``. Prints one JSON line per
scenario (``RESULT {...}``) and exits 1 if any invariant failed. ``python -m tests.chaos`` drives it."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from pathlib import Path

STUCK_AFTER = 20.0  # seconds past its lease: an in-progress job this overdue is stuck
RECOVERY_LIMIT = 30.0
CLOCK_TOLERANCE = timedelta(seconds=5)  # a recorded time this far ahead of the database's was not its clock
MOVING_WITHIN = 10.0  # seconds after the fault's end by which jobs complete again
LATE_AFTER = 1.5  # seconds: a job due while the workers sleep must start this soon
RATE = 25.0  # jobs a second of steady load (plus the one-second cron)


@dataclass
class Result:
    scenario: str
    db: str
    jobs: int = 0
    lost: int = 0
    duplicated: int = 0
    recovery: float | None = None
    moving: float | None = None
    during: float | None = None  # jobs a second in the fault's second half, where it must not stop the queue
    before: float = 0.0
    after: float = 0.0
    kills: int = 0
    load_errors: int = 0
    seconds: float = 0.0
    note: str = ""
    violations: list[str] = field(default_factory=list)


class Run:
    """One scenario's run: its workers, load and measurements."""

    def __init__(self, scenario, vendor: str, short: bool, server, logs: Path):
        from .load import Load, Monitor, Workers

        self.scenario = scenario
        self.server = server
        self.short = short
        self.fault_seconds = scenario.short_seconds if short else scenario.full_seconds
        self.workers = Workers(server.worker_url(), logs, *scenario.worker_args)
        self.load = Load(RATE)
        self.monitor = Monitor()
        self.kills = 0
        self.expected: dict[str, tuple[str, bool]] = {}  # key -> (kind, must start on time)
        self.result = Result(scenario.label(vendor), vendor)

    def expect(self, job_id: int, key: str, kind: str, on_time: bool = False) -> None:
        self.expected[key] = (kind, on_time)

    def violation(self, text: str) -> None:
        self.result.violations.append(text)


def run_scenario(run: Run) -> Result:
    from django.db import connections
    from django.utils import timezone

    from .load import rate_between, reset_tables, wait_for

    started = time.monotonic()
    connections.close_all()  # the last scenario may have restarted the server under this connection
    reset_tables()
    workers, load = run.workers, run.load
    load_stopped = timezone.now()
    for slot in ("w1", "w2"):
        workers.start(slot)
    try:
        workers.wait_ready()
        run.monitor.start()
        load.start()
        time.sleep(1.5 if run.short else 3.0)
        t0 = timezone.now()
        time.sleep(3.0 if run.short else 8.0)
        t1 = timezone.now()
        before = rate_between(t0, t1)
        fault_start = timezone.now()
        run.scenario.fault(run)
        fault_end = timezone.now()
        if run.scenario.moves_during:
            run.result.during = round(rate_between(fault_start + (fault_end - fault_start) / 2, fault_end), 1)
            if not run.result.during:
                run.violation("no job completed in the second half of the fault: it stopped the queue")
        run.result.moving = _wait_moving(run, fault_end)
        recovered_at = _wait_recovered(run, before, fault_end)
        time.sleep(2.0 if run.short else 5.0)
        after_end = timezone.now()
        load.stop()
        load_stopped = timezone.now()
        after = rate_between(recovered_at or fault_end, after_end)
        _drain(run, load_stopped, wait_for)
        run.result.before, run.result.after = round(before, 1), round(after, 1)
        if recovered_at is not None:
            run.result.recovery = round(max((recovered_at - fault_end).total_seconds(), 0.0), 1)
    finally:
        load.stopping.set()
        run.monitor.stop()
        workers.stop_all()
    check_invariants(run, load_stopped)
    run.result.kills, run.result.load_errors = run.kills, load.errors
    run.result.seconds = round(time.monotonic() - started, 1)
    return run.result


def _wait_moving(run: Run, fault_end) -> float | None:
    """Seconds from the fault's end to the first job completed after it (the queue moving again)."""
    from django.db import connection

    from django_scheduled_actions.models import ScheduledFunction

    deadline = time.monotonic() + MOVING_WITHIN
    while time.monotonic() < deadline:
        try:
            first = (
                ScheduledFunction.objects.filter(completed_time__gte=fault_end)
                .order_by("completed_time")
                .values_list("completed_time", flat=True)
                .first()
            )
        except Exception:
            connection.close()
            first = None
        if first is not None:
            return round(max((first - fault_end).total_seconds(), 0.0), 1)
        time.sleep(0.2)
    run.violation(f"no job completed within {MOVING_WITHIN:g}s of the fault's end")
    return None


def _wait_recovered(run: Run, before: float, fault_end):
    """The first moment after the fault when the last 3 s ran at >= 90% of the pre-fault rate."""
    from django.db import connection
    from django.utils import timezone

    from .load import rate_between

    deadline = time.monotonic() + RECOVERY_LIMIT
    while time.monotonic() < deadline:
        now = timezone.now()
        try:
            if rate_between(now - timedelta(seconds=3), now) >= 0.9 * before:
                return now
        except Exception:
            connection.close()
        time.sleep(0.5)
    run.violation(f"throughput not back to 90% of {before:.1f}/s within {RECOVERY_LIMIT:g}s of the fault's end")
    return None


def _drain(run: Run, load_stopped, wait_for) -> None:
    """Wait until every job that should have run by now is final (far-future ones excepted)."""
    from django.db.models import Q
    from django.utils import timezone

    from django_scheduled_actions.models import FINAL_STATES, ScheduledFunction

    def open_jobs():
        soon = timezone.now() + timedelta(hours=1)
        return (
            ScheduledFunction.objects.exclude(state__in=FINAL_STATES)
            .filter(scheduled_time__lt=soon)
            .filter(Q(cron__isnull=True) | Q(scheduled_time__lt=load_stopped))
        )

    try:
        wait_for(lambda: not open_jobs().exists(), 60, "every due job to finish")
    except AssertionError as exc:
        rows = list(open_jobs().values_list("id", "name", "state", "worker_id", "scheduled_time")[:10])
        run.violation(f"{exc}; still open: {rows}\n{run.workers.tails()}")


def check_invariants(run: Run, load_stopped) -> None:
    from django.utils import timezone

    from django_scheduled_actions.models import FINAL_STATES, ScheduledFunction, State
    from tests.app.models import Counter as ChaosCounter
    from tests.app.models import Effect

    from .functions import COUNTER, MAX_ATTEMPTS
    from .load import CRON_LABEL

    res, now = run.result, timezone.now()
    expected = {key: (kind, False) for key, kind in run.load.acked.items()} | run.expected
    effects = Counter(Effect.objects.exclude(key=CRON_LABEL).values_list("key", flat=True))
    jobs = list(ScheduledFunction.objects.filter(cron__isnull=True))
    by_key = {job.args.get("key") if isinstance(job.args, dict) else None: job for job in jobs}
    lost, duplicated = [], []
    for key in expected.keys() - by_key.keys():
        lost.append(f"{key}: scheduled (the call returned) but no job row")
    for key, job in by_key.items():
        kind = job.name.rsplit(":", 1)[-1]
        n = effects[key]
        where = f"{key} job={job.pk} {job.name} state={job.state} attempts={job.attempts} effects={n}"
        if job.scheduled_time > now + timedelta(hours=1):
            if job.state != State.PENDING or n or job.attempts:
                duplicated.append(f"{where}: a far-future job ran")
            continue
        if job.state not in FINAL_STATES:
            lost.append(f"{where}: never finished")
            continue
        if job.completed_time and (
            job.completed_time > now + CLOCK_TOLERANCE or (job.started_at and job.started_at > job.completed_time)
        ):
            run.violation(
                f"{where}: times not on the database's clock: started {job.started_at}, "
                f"completed {job.completed_time}, checked at {now}"
            )
        if job.state == State.FAILED and not _lost_with(job, run.workers.faulted) and not _commit_unknowable(run, job):
            lost.append(f"{where}: failed, though its worker was not the fault's; error={_last_line(job.error)!r}")
        if kind in ("effect", "stall"):
            if n > 1:
                duplicated.append(f"{where}: mutation took effect {n} times")
            if job.state != State.SUCCESS or n == 0:
                lost.append(f"{where}: mutation did not take effect; error={_last_line(job.error)!r}")
        elif kind == "once" and (n > 1 or job.attempts > 1):
            duplicated.append(f"{where}: action without retries ran more than once")
        elif kind == "retried" and (n > MAX_ATTEMPTS or job.attempts > MAX_ATTEMPTS):
            duplicated.append(f"{where}: action ran more than max_attempts={MAX_ATTEMPTS}")
        elif kind in ("once", "retried") and job.state == State.SUCCESS and n == 0:
            lost.append(f"{where}: action succeeded without its effect")
        if expected.get(key, ("", False))[1] and job.started_at:
            late = (job.started_at - job.scheduled_time).total_seconds()
            if late > LATE_AFTER:
                run.violation(f"{where}: due while the workers slept, started {late:.1f}s late")
    cron_jobs = ScheduledFunction.objects.filter(cron__isnull=False)
    for (cron, tick), count in Counter(cron_jobs.values_list("cron__name", "cron_tick")).items():
        if count > 1:
            duplicated.append(f"cron {cron!r} tick {tick} fired {count} times")
    for job_id, count in Counter(Effect.objects.filter(key=CRON_LABEL).values_list("job_id", flat=True)).items():
        if count > 1:
            duplicated.append(f"cron job {job_id} took effect {count} times")
    for job in cron_jobs.exclude(state__in=FINAL_STATES).filter(scheduled_time__lt=load_stopped):
        lost.append(f"cron job {job.pk} tick {job.cron_tick} state={job.state}: never finished")
    for job in cron_jobs.filter(state=State.FAILED):
        if not _lost_with(job, run.workers.faulted):
            lost.append(f"cron job {job.pk} failed, though its worker was not the fault's: {_last_line(job.error)!r}")
    counted = ChaosCounter.objects.get(name=COUNTER).value
    if counted != sum(effects.values()):
        duplicated.append(f"the counter says {counted} mutations took effect, the effect rows {sum(effects.values())}")
    if run.monitor.worst > STUCK_AFTER:
        run.violation(f"a job stayed in progress {run.monitor.worst:.1f}s past its lease")
    res.jobs = len(jobs) + cron_jobs.count()
    res.lost, res.duplicated = len(lost), len(duplicated)
    res.violations[:0] = [f"lost: {t}" for t in lost[:10]] + [f"duplicated: {t}" for t in duplicated[:10]]


def _commit_unknowable(run: Run, job) -> bool:
    """MariaDB cannot say whether a COMMIT whose connection was killed applied (docs/how-to/deploy-workers.md,
    "Bounded connections"), so under ``backend_kill`` an action's ``ctx.run_mutation`` may fail with a lost
    connection there: counted in the row's note, not a violation. PostgreSQL asks ``txid_status``."""
    if run.result.db != "mysql" or run.scenario.name != "backend_kill" or "Lost connection" not in job.error:
        return False
    run.result.note = f"{run.result.note} commit unknown: job {job.pk}".strip()
    return True


def _lost_with(job, faulted: set[str]) -> bool:
    """Whether ``job`` failed as a lost worker's job, the worker being one the fault killed or paused."""
    prefix = "worker lost: "
    return job.error.startswith(prefix) and job.error[len(prefix) :].split(" ", 1)[0] in faulted


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos.runner")
    parser.add_argument("--db", required=True, choices=["postgres", "mysql"])
    parser.add_argument("--scenario", action="append", required=True)
    parser.add_argument("--short", action="store_true")
    parser.add_argument("--logs", type=Path, required=True)
    options = parser.parse_args(argv)

    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.chaos.settings")
    django.setup()
    from .scenarios import find
    from .servers import server

    srv = server(options.db)
    failed = False
    for name in options.scenario:
        scenario = find(name)
        run = Run(scenario, options.db, options.short, srv, options.logs / f"{options.db}-{scenario.name}")
        try:
            result = scenario.fault(run) if scenario.whole_run else run_scenario(run)
        except Exception as exc:  # the scenario itself broke: report it as a failed row
            import traceback

            result = run.result
            result.violations.append(f"scenario error: {''.join(traceback.format_exception(exc))}")
        failed |= bool(result.violations)
        print("RESULT " + json.dumps(asdict(result)), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
