"""The guarantees of DESIGN.md section 4, proven with real ``runworker`` processes, signals and ``kill -9``.

Every test starts workers as separate processes (``conftest.start_worker``, one session each) against the
committed test database, waits for conditions by polling the database (never a bare sleep where a
condition can be observed), and kills every worker it started in teardown.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import statistics
import subprocess
import time
from collections import Counter as Tally
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from django.db import connection, transaction
from django.db.models import Count

from django_scheduled_actions import scheduler
from django_scheduled_actions.models import ScheduledFunction, State, WorkerProcess
from tests.app import functions as f
from tests.app import process_functions as pf
from tests.app.models import Batch, Counter, Effect
from tests.support import start_worker
from tests.support.connections import kill_other_connections

pytestmark = [pytest.mark.process, pytest.mark.django_db(transaction=True)]

T = TypeVar("T")
FINAL = (State.SUCCESS, State.FAILED, State.CANCELED)
SHORT_LEASE = "2"  # seconds: a killed worker's claims are recovered a few seconds later


# --- helpers ---


def wait_until(predicate: Callable[[], T], timeout: float, what: str | Callable[[], str], interval: float = 0.05) -> T:
    """Poll ``predicate`` until it returns something truthy (returned); fail clearly after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            pytest.fail(f"timed out after {timeout:g}s waiting for {what() if callable(what) else what}")
        time.sleep(interval)


def counter(name: str) -> int:
    return Counter.objects.filter(name=name).values_list("value", flat=True).first() or 0


def job(job_id: int) -> ScheduledFunction:
    return ScheduledFunction.objects.get(pk=job_id)


def finished(job_id: int) -> ScheduledFunction | None:
    row = job(job_id)
    return row if row.state in FINAL else None


def jobs_table(limit: int = 30) -> str:
    """The jobs that are not successes (else the last few), for failure messages."""
    rows = (
        ScheduledFunction.objects.exclude(state=State.SUCCESS).order_by("id")[:limit]
        or ScheduledFunction.objects.order_by("-id")[:limit]
    )
    by_state = dict(ScheduledFunction.objects.values_list("state").annotate(n=Count("id")))
    lines = [
        f"#{j.pk} {j.name} state={j.state} attempts={j.attempts} worker={j.worker_id!r} "
        f"error={j.error.strip().splitlines()[-1] if j.error.strip() else ''!r}"
        for j in rows
    ]
    return f"jobs by state {by_state}:\n  " + "\n  ".join(lines)


class Workers:
    """The worker processes of one test; each is a session leader with its own log file."""

    def __init__(self, tmp_path: Path):
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []
        self.logs: list[Path] = []

    def start(self, *args: str, ready: bool = False, **env: str) -> subprocess.Popen:
        """Start ``runworker *args``. With ``ready``, also serve a private queue and return only once the
        worker has run a job from it (its main loop is up)."""
        number = len(self.procs) + 1
        private = f"ready-{number}"
        if ready:
            args = (*args, "--queue", "default", "--queue", private)
        log = self.tmp_path / f"worker-{number}.log"
        proc = start_worker(*args, "--worker-id", f"w{number}", log=log, **env)
        self.procs.append(proc)
        self.logs.append(log)
        if ready:
            probe = scheduler.run_after(0, pf.tally, {"name": private}, queue=private)
            wait_until(lambda: finished(probe), 60, lambda: f"worker {number} to start serving jobs\n{self}")
            assert job(probe).state == State.SUCCESS, self.describe()
        return proc

    def kill(self, proc: subprocess.Popen) -> None:
        """``kill -9`` the worker (its whole process group) and reap it."""
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=30)

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                self.kill(proc)

    def describe(self) -> str:
        return f"{jobs_table()}\n{self}"

    def __str__(self) -> str:
        parts = []
        for proc, log in zip(self.procs, self.logs, strict=True):
            text = log.read_text(errors="replace") if log.exists() else ""
            tail = "\n    ".join(text.splitlines()[-25:])
            parts.append(f"--- worker pid={proc.pid} returncode={proc.poll()} log {log}:\n    {tail}")
        return "\n".join(parts)


@pytest.fixture
def workers(transactional_db, tmp_path: Path):
    group = Workers(tmp_path)
    yield group
    group.kill_all()


def wait_for_exit(proc: subprocess.Popen, timeout: float, workers: Workers) -> int:
    try:
        return proc.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        state = workers.describe()
        log = workers.logs[workers.procs.index(proc)]
        before = log.stat().st_size if log.exists() else 0
        os.kill(proc.pid, signal.SIGABRT)  # PYTHONFAULTHANDLER=1: every thread's stack goes to its log
        proc.wait(timeout=30)
        stacks = log.read_bytes()[before:].decode(errors="replace") if log.exists() else ""
        pytest.fail(
            f"worker pid={proc.pid} still running {timeout:g}s later\n{state}\n"
            f"--- its threads when it was aborted:\n{stacks}"
        )


# --- 1-3: kill -9 mid-run, recovered by another worker ---


def test_mutation_killed_mid_transaction_takes_effect_exactly_once(workers, tmp_path):
    marker = tmp_path / "inside-transaction"
    job_id = scheduler.run_after(0, pf.write_then_hold, {"key": "killed", "marker": str(marker)})
    first = workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)
    wait_until(marker.exists, 60, lambda: f"the mutation to write and hold its transaction\n{workers}")
    assert not Effect.objects.filter(key="killed").exists(), "a mutation's write is visible before it commits"

    workers.kill(first)
    assert job(job_id).state == State.IN_PROGRESS
    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)

    done = wait_until(
        lambda: finished(job_id), 30, lambda: f"another worker to recover and rerun the mutation\n{workers.describe()}"
    )
    assert done.state == State.SUCCESS, workers.describe()
    assert done.error == ""
    effects = list(Effect.objects.filter(key="killed").values_list("job_id", flat=True))
    assert effects == [job_id], f"the killed mutation took effect {len(effects)} times, not once"


def running_one_job_with_claims_queued(workers, tmp_path, *args: str, **env: str):
    """A --concurrency 1 worker running a held action, with quick jobs (an action, two mutations) scheduled
    behind it, at least one of them claimed by the worker but not started (its one thread is busy)."""
    release = tmp_path / "release"
    held = scheduler.run_after(0, pf.tally_then_hold, {"name": "held", "release": str(release)}, priority=10)
    queued = [
        scheduler.run_after(0, pf.effect_action, {"key": "b0"}),
        *(scheduler.run_after(0, pf.effect, {"key": f"b{i}"}) for i in (1, 2)),
    ]
    proc = workers.start("--concurrency", "1", *args, **env)
    claimed = ScheduledFunction.objects.filter(pk__in=queued, state=State.IN_PROGRESS)
    wait_until(
        lambda: counter("held") == 1 and claimed.exists(),
        60,
        lambda: f"the held action to run with a claim queued behind it\n{workers.describe()}",
    )
    assert not claimed.exclude(started_at=None).exists() and not Effect.objects.exists()
    return proc, held, queued, release


def all_handed_back(job_ids: list[int]) -> bool:
    """Pending again (not failed), never started."""
    rows = ScheduledFunction.objects.filter(pk__in=job_ids)
    return {(row.state, row.attempts, row.started_at) for row in rows} == {(State.PENDING, 0, None)}


def test_action_killed_mid_run_fails_as_worker_lost_and_never_reruns(workers, tmp_path):
    first, held, queued, _release = running_one_job_with_claims_queued(
        workers, tmp_path, SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE
    )

    workers.kill(first)
    running = job(held)
    assert (running.state, running.attempts) == (State.IN_PROGRESS, 1)
    assert running.started_at is not None
    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)

    wait_until(
        lambda: all(finished(pk) for pk in (held, *queued)),
        30,
        lambda: f"the lost worker's jobs to be recovered\n{workers.describe()}",
    )
    lost = job(held)
    assert (lost.state, lost.attempts) == (State.FAILED, 1), workers.describe()
    assert "worker lost" in lost.error, lost.error
    # the claimed action that had not started is no lost action: it runs, once
    assert [(job(pk).state, job(pk).attempts) for pk in queued] == [(State.SUCCESS, 1)] * 3, workers.describe()
    assert sorted(Effect.objects.values_list("key", flat=True)) == ["b0", "b1", "b2"]
    # never re-run: the recovering worker goes on serving later jobs, and the side effect stays single
    later = scheduler.run_after(0, pf.tally, {"name": "later"})
    assert wait_until(lambda: finished(later), 30, workers.describe).state == State.SUCCESS
    assert counter("held") == 1, "an at-most-once action ran again after its worker was lost"
    assert job(held).state == State.FAILED


def test_action_with_retry_policy_killed_mid_run_reruns_and_succeeds(workers):
    job_id = scheduler.run_after(0, pf.tally_then_hold_first_attempt, {"name": "retried"})
    first = workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)
    wait_until(lambda: counter("retried") == 1, 60, lambda: f"the first attempt to start\n{workers}")

    workers.kill(first)
    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)

    done = wait_until(lambda: finished(job_id), 30, lambda: f"the retried action to finish\n{workers.describe()}")
    assert done.state == State.SUCCESS, workers.describe()
    assert (done.attempts, done.result) == (2, 2)
    assert counter("retried") == 2, "each attempt's body ran once: the lost one and the retry"


# --- a paused worker (a machine lost, then back) whose lease another worker took over ---


def _sqlite_write_lock_free() -> bool:
    db = sqlite3.connect(connection.settings_dict["NAME"], timeout=0, isolation_level=None)
    try:
        db.execute("BEGIN IMMEDIATE")
        db.execute("ROLLBACK")
        return True
    except sqlite3.OperationalError:
        return False
    finally:
        db.close()


def pause(proc: subprocess.Popen, vendor: str) -> None:
    """SIGSTOP the worker. On SQLite, at a moment it holds no write lock: a paused writer would block
    every other worker. (A paused client of PostgreSQL/MariaDB holds locks only inside its open
    transactions: here the held mutation's, and a claim's on pending rows that others skip.)"""
    for _ in range(100):
        os.killpg(proc.pid, signal.SIGSTOP)
        wait_until(lambda: Path(f"/proc/{proc.pid}/stat").read_text().split(") ")[1][0] == "T", 5, "the worker to stop")
        if vendor != "sqlite" or _sqlite_write_lock_free():
            return
        os.killpg(proc.pid, signal.SIGCONT)
        time.sleep(0.01)  # let it finish the write it was paused in
    pytest.fail("the paused worker always held the SQLite write lock")


def resume_and_stop(proc: subprocess.Popen, workers: Workers) -> None:
    """SIGCONT then SIGTERM: the worker finishes what it was running, then exits 0."""
    os.killpg(proc.pid, signal.SIGCONT)
    proc.send_signal(signal.SIGTERM)
    assert wait_for_exit(proc, 30, workers) == 0, workers.describe()


def test_paused_mutation_whose_lease_was_taken_over_takes_effect_once(workers, tmp_path, vendor):
    if vendor == "sqlite":
        pytest.skip("a paused SQLite writer holds the only write lock: no other worker can take over")
    marker, release = tmp_path / "inside-transaction", tmp_path / "release"
    job_id = scheduler.run_after(
        0, pf.write_then_hold, {"key": "paused", "marker": str(marker), "release": str(release)}
    )
    first = workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)
    wait_until(marker.exists, 60, lambda: f"the mutation to write and hold its transaction\n{workers}")
    pause(first, vendor)
    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)

    done = wait_until(
        lambda: finished(job_id), 30, lambda: f"another worker to take the mutation over\n{workers.describe()}"
    )
    assert done.state == State.SUCCESS, workers.describe()  # by the second worker: the first is stopped
    # the paused worker wakes up inside its transaction, finishes the body, finds its claim gone
    release.touch()
    resume_and_stop(first, workers)
    effects = list(Effect.objects.filter(key="paused").values_list("job_id", flat=True))
    assert effects == [job_id], f"the mutation took effect {len(effects)} times, not once\n{workers}"
    assert job(job_id).state == State.SUCCESS


def test_paused_action_whose_lease_was_taken_over_stays_failed_when_it_finishes(workers, tmp_path, vendor):
    release = tmp_path / "release"
    job_id = scheduler.run_after(0, pf.tally_then_hold, {"name": "paused", "release": str(release)})
    first = workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)
    wait_until(lambda: counter("paused") == 1, 60, lambda: f"the action to start\n{workers}")
    pause(first, vendor)
    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)

    lost = wait_until(lambda: finished(job_id), 30, lambda: f"the action to be recovered\n{workers.describe()}")
    assert lost.state == State.FAILED and "worker lost" in lost.error, workers.describe()
    release.touch()
    resume_and_stop(first, workers)  # its body returns True late
    late = job(job_id)
    assert (late.state, late.error, late.result) == (State.FAILED, lost.error, None), (
        "a late result overwrote the job of a lost worker"
    )
    assert counter("paused") == 1


# --- 4: lease renewal ---


def test_action_longer_than_its_lease_runs_once_with_two_workers(workers):
    lease = "2"
    for _ in range(2):
        workers.start("--concurrency", "2", ready=True, SCHEDULED_ACTIONS_LEASE_SECONDS=lease)
    job_id = scheduler.run_after(0, pf.tally_then_sleep, {"name": "long", "seconds": 6.0})

    done = wait_until(lambda: finished(job_id), 40, lambda: f"the 6 s action to finish\n{workers.describe()}")
    assert done.state == State.SUCCESS, workers.describe()
    assert (done.attempts, done.error, counter("long")) == (1, "", 1), "the action ran more than once"
    assert (done.completed_time - done.started_at).total_seconds() >= 6.0


# --- 5: many workers, each job once ---


def test_three_workers_run_each_of_600_jobs_exactly_once(workers):
    for _ in range(3):
        workers.start("--concurrency", "4", ready=True)
    with transaction.atomic():
        for i in range(300):
            scheduler.run_after(0, pf.effect, {"key": f"m{i}"})
            scheduler.run_after(0, pf.effect_action, {"key": f"a{i}"})
    batch = ScheduledFunction.objects.filter(queue="default")

    def all_done() -> bool:
        if batch.filter(state=State.FAILED).exists():
            pytest.fail(f"a job failed\n{workers.describe()}")
        return not batch.exclude(state=State.SUCCESS).exists()

    wait_until(all_done, 120, lambda: f"600 jobs to finish\n{workers.describe()}")
    assert batch.count() == 600
    assert set(batch.values_list("attempts", flat=True)) == {1}
    runs = Tally(Effect.objects.values_list("key", flat=True))
    expected = {f"{kind}{i}" for kind in "ma" for i in range(300)}
    assert set(runs) == expected, f"missing effects: {sorted(expected - set(runs))[:10]}"
    twice = {key: n for key, n in runs.items() if n != 1}
    assert not twice, f"jobs that took effect more than once: {twice}"
    share = Tally(batch.values_list("worker_id", flat=True))
    assert len(share) >= 2, f"the jobs were not shared between workers: {share}"
    print(f"\njobs per worker: {dict(share)}")
    for proc in workers.procs:
        proc.send_signal(signal.SIGTERM)
    assert [wait_for_exit(proc, 30, workers) for proc in workers.procs] == [0, 0, 0]


@pytest.mark.parametrize("group", [1, 8])
def test_workers_killed_and_stopped_mid_flow_lose_nothing_and_run_mutations_once(workers, group):
    """Chaos: of 3 busy workers one is ``kill -9``-ed and one SIGTERM-ed mid-flow; a fresh one takes over.
    A killed worker may leave, per thread, the actions it had started and not recorded: one, or up to
    ``--action-group`` quick ones started together."""
    lease = {"SCHEDULED_ACTIONS_LEASE_SECONDS": SHORT_LEASE}
    options = ("--concurrency", "4", "--action-group", str(group))
    first, second, _third = (workers.start(*options, ready=True, **lease) for _ in range(3))
    with transaction.atomic():
        for i in range(300):
            scheduler.run_after(0, pf.effect, {"key": f"m{i}"})
            scheduler.run_after(0, pf.effect_action, {"key": f"a{i}"})
    batch = ScheduledFunction.objects.filter(queue="default")
    wait_until(lambda: Effect.objects.count() >= 150, 60, lambda: f"the work to be under way\n{workers}")
    workers.kill(first)
    second.send_signal(signal.SIGTERM)
    abandoned = batch.filter(state=State.IN_PROGRESS, worker_id="w1").count()
    assert wait_for_exit(second, 30, workers) == 0
    workers.start(*options, **lease)

    wait_until(
        lambda: not batch.exclude(state__in=FINAL).exists(), 120, lambda: f"every job to settle\n{workers.describe()}"
    )
    runs = Tally(Effect.objects.values_list("key", flat=True))
    states = dict(batch.values_list("args__key", "state"))
    errors = dict(batch.filter(state=State.FAILED).values_list("args__key", "error"))
    for i in range(300):
        assert (states[f"m{i}"], runs[f"m{i}"]) == (State.SUCCESS, 1), f"mutation m{i}\n{workers.describe()}"
        key = f"a{i}"
        if states[key] == State.SUCCESS:
            assert runs[key] == 1, f"action {key} succeeded with {runs[key]} effects"
        else:  # at most once: only an action that was running on the killed worker may be lost
            assert states[key] == State.FAILED and "worker lost" in errors[key], (key, states[key], errors.get(key))
            assert runs[key] <= 1, f"a lost action {key} took effect {runs[key]} times"
    lost = sorted(errors)
    assert len(lost) <= 4 * group, f"more lost actions than the killed worker's 4 threads held started: {lost}"
    print(
        f"\nclaims of the killed worker: {abandoned}; lost actions: {lost}; "
        f"jobs per worker: {dict(Tally(batch.values_list('worker_id', flat=True)))}"
    )


# --- 6: SIGTERM ---


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_signal_finishes_the_running_job_hands_back_claims_and_exits_0(workers, tmp_path, signum):
    proc, held, queued, release = running_one_job_with_claims_queued(workers, tmp_path)
    proc.send_signal(signum)

    wait_until(
        lambda: all_handed_back(queued), 15, lambda: f"the queued claims to be handed back\n{workers.describe()}"
    )
    assert proc.poll() is None, "the worker exited before its running job finished"
    assert job(held).state == State.IN_PROGRESS
    release.touch()
    assert wait_for_exit(proc, 15, workers) == 0, workers.describe()

    done = job(held)
    assert (done.state, done.result, done.attempts) == (State.SUCCESS, True, 1), workers.describe()
    assert all_handed_back(queued), "unstarted jobs must stay pending"
    assert not Effect.objects.exists(), "a job claimed but not started ran during shutdown"


def test_second_signal_exits_at_once_and_nothing_is_lost(workers, tmp_path):
    proc, held, queued, _release = running_one_job_with_claims_queued(
        workers, tmp_path, SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE
    )
    proc.send_signal(signal.SIGTERM)
    wait_until(lambda: all_handed_back(queued), 15, lambda: f"the first signal to be handled\n{workers.describe()}")

    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    code = wait_for_exit(proc, 5, workers)
    assert code != 0, "a second signal ends the worker at once, with a failure code"
    assert time.monotonic() - signalled < 5
    assert job(held).state == State.IN_PROGRESS, "the held action was still running"

    # nothing is lost: another worker recovers the abandoned action and runs the handed-back jobs
    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)
    wait_until(
        lambda: all(finished(pk) for pk in (held, *queued)),
        30,
        lambda: f"the abandoned jobs to be recovered\n{workers.describe()}",
    )
    lost = job(held)
    assert lost.state == State.FAILED and "worker lost" in lost.error, workers.describe()
    assert counter("held") == 1
    assert [(job(pk).state, job(pk).attempts) for pk in queued] == [(State.SUCCESS, 1)] * 3
    assert sorted(Effect.objects.values_list("key", flat=True)) == ["b0", "b1", "b2"]


def test_after_the_grace_period_the_worker_exits_0_and_its_unfinished_action_is_recovered(workers, tmp_path):
    proc, held, queued, _release = running_one_job_with_claims_queued(
        workers, tmp_path, "--grace", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE
    )
    signalled = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    assert wait_for_exit(proc, 10, workers) == 0, workers.describe()
    assert time.monotonic() - signalled < 5, "the worker outstayed its 1 s grace period"
    assert all_handed_back(queued)

    workers.start("--concurrency", "1", SCHEDULED_ACTIONS_LEASE_SECONDS=SHORT_LEASE)
    lost = wait_until(
        lambda: finished(held), 30, lambda: f"the unfinished action to be recovered\n{workers.describe()}"
    )
    assert lost.state == State.FAILED and "worker lost" in lost.error, workers.describe()
    assert counter("held") == 1


# --- 7: fan-out / fan-in under contention ---


def test_fan_out_fan_in_with_three_workers_of_four_threads(workers):
    for _ in range(3):
        workers.start("--concurrency", "4", ready=True)
    size = 120
    start = scheduler.run_after(0, f.start_batch, {"size": size})
    fan = ScheduledFunction.objects.filter(queue="default")

    def settled() -> bool:
        if fan.filter(state=State.FAILED).exists():
            pytest.fail(f"a fan-out job failed\n{workers.describe()}")
        return job(start).state == State.SUCCESS and not fan.exclude(state__in=FINAL).exists()

    wait_until(settled, 120, lambda: f"the batch to settle\n{workers.describe()}")
    batch = Batch.objects.get()
    assert (batch.total, batch.completed, batch.on_complete_runs) == (size, size, 1), workers.describe()
    names = Tally(fan.values_list("name", flat=True))
    assert names == {"fan.start": 1, "fan.item": size, "fan.on_complete": 1}
    assert set(fan.values_list("state", "attempts")) == {(State.SUCCESS, 1)}


# --- 8: waking an idle worker ---


def _latencies(samples: int, idle: float) -> list[float]:
    """Schedule ``samples`` jobs, one at a time, each after ``idle`` seconds of the worker idling; return
    the seconds from just before each commit to the start of the job's body (measured by the body)."""
    latencies = []
    for _ in range(samples):
        time.sleep(idle)  # the scenario itself: nothing to wait for, the worker must be idle
        with transaction.atomic():
            job_id = scheduler.run_after(0, pf.started_at, {})
            committing = time.time()
        done = wait_until(lambda pk=job_id: finished(pk), 30, "the job to run")
        assert done.state == State.SUCCESS, jobs_table()
        latencies.append(done.result - committing)
    return latencies


def _ms(values: list[float]) -> str:
    return ", ".join(f"{v * 1000:.1f}" for v in values) + " ms"


def start_listening_worker(workers: Workers, vendor: str) -> subprocess.Popen:
    """A PostgreSQL worker with a 30 s poll interval (only a NOTIFY can wake it in time), once it LISTENs."""
    if vendor != "postgresql":
        pytest.skip("LISTEN/NOTIFY wake-up is PostgreSQL only; other databases poll")
    proc = workers.start("--concurrency", "1", "--poll-interval", "30", ready=True)
    with connection.cursor() as cursor:

        def listening() -> bool:
            cursor.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND query LIKE 'LISTEN %%'"
            )
            return cursor.fetchone()[0] >= 1

        wait_until(listening, 30, lambda: f"the worker to LISTEN\n{workers}")
    return proc


def test_postgres_listen_notify_wakes_an_idle_worker_within_50ms(workers, vendor):
    start_listening_worker(workers, vendor)
    _latencies(1, 0.2)  # warm-up: the executor thread opens its connection on its first job
    latencies = _latencies(9, 0.3)
    median = statistics.median(latencies)
    print(f"\nNOTIFY wake-up latencies: {_ms(latencies)}; median {median * 1000:.1f} ms")
    assert median < 0.050, f"median wake-up {median * 1000:.1f} ms; samples {_ms(latencies)}"


def test_postgres_worker_woken_by_notify_sleeps_until_a_delayed_job_is_due(workers, vendor):
    start_listening_worker(workers, vendor)
    lateness = []
    for delay in (0.5, 1.0, 1.5):
        job_id = scheduler.run_after(delay, pf.started_at, {})
        due = job(job_id).scheduled_time.timestamp()
        done = wait_until(lambda pk=job_id: finished(pk), 30, "the delayed job to run")
        assert done.state == State.SUCCESS, jobs_table()
        lateness.append(done.result - due)
    print(f"\ndelayed jobs started after their due time by: {_ms(lateness)}")
    assert all(0 <= late < 0.2 for late in lateness), f"lateness {_ms(lateness)} (poll interval 30 s)"


def test_idle_worker_runs_a_new_job_within_about_its_poll_interval(workers, vendor):
    poll = 0.5
    workers.start("--concurrency", "1", "--poll-interval", str(poll), ready=True)
    latencies = _latencies(6, 0.35)
    print(f"\n{vendor} wake-up latencies (poll {poll}s): {_ms(latencies)}")
    assert max(latencies) < poll + 1.0, f"samples {_ms(latencies)} with --poll-interval {poll}"


# --- 9: unknown function ---


def test_unknown_function_fails_its_job_and_the_worker_goes_on(workers):
    from django.utils import timezone

    missing = ScheduledFunction.objects.create(
        name="nope:missing", kind="mutation", args={}, scheduled_time=timezone.now()
    ).pk
    after = scheduler.run_after(0, pf.tally, {"name": "after"})
    proc = workers.start("--concurrency", "1", SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE="0")

    wait_until(lambda: finished(missing) and finished(after), 30, lambda: f"both jobs to finish\n{workers.describe()}")
    failed = job(missing)
    assert failed.state == State.FAILED
    assert "no function is registered as 'nope:missing'" in failed.error, failed.error
    assert job(after).state == State.SUCCESS and counter("after") == 1
    # and it keeps serving
    later = scheduler.run_after(0, pf.tally, {"name": "later"})
    assert wait_until(lambda: finished(later), 30, workers.describe).state == State.SUCCESS
    assert proc.poll() is None


# --- rolling deploys: a worker of the previous release and one of the new (tests/release2) ---


def new_release_jobs() -> dict[int, str]:
    """Jobs of the functions (and the task) the new release adds, scheduled by its web servers: id -> key."""
    from importlib.util import find_spec

    from tests.release2 import functions as new

    jobs = {scheduler.run_after(0, new.new_mutation, {"key": f"m{i}"}): f"m{i}" for i in range(3)}
    jobs |= {scheduler.run_after(0, new.new_action, {"key": f"a{i}"}): f"a{i}" for i in range(3)}
    if find_spec("django.tasks") is not None:
        from tests.release2.tasks import new_task

        jobs[int(new_task.enqueue("t0").id)] = "t0"
    return jobs


def left_by(worker_id: str, names: set[str]) -> bool:
    """The worker met these functions and published that it cannot run them."""
    row = WorkerProcess.objects.filter(worker_id=worker_id).first()
    return row is not None and names <= set(row.unknown)


def test_a_rolling_deploy_loses_no_job(workers):
    old = workers.start("--concurrency", "2", ready=True, TEST_OLD_RELEASE="1", TEST_LOG_LEVEL="INFO")
    jobs = new_release_jobs()
    names = set(ScheduledFunction.objects.filter(pk__in=jobs).values_list("name", flat=True))
    wait_until(lambda: left_by("w1", names), 30, lambda: f"the old worker to leave the new jobs\n{workers.describe()}")
    for name in ("before", "after"):  # the old worker keeps serving what it knows
        known = scheduler.run_after(0, pf.tally, {"name": name})
        assert wait_until(lambda k=known: finished(k), 30, workers.describe).state == State.SUCCESS
    rows = ScheduledFunction.objects.filter(pk__in=jobs)
    assert {(r.state, r.attempts, r.started_at) for r in rows} == {(State.PENDING, 0, None)}, workers.describe()
    log = workers.logs[0].read_text()
    left = Tally(int(line.split("job=")[1].split()[0]) for line in log.splitlines() if "job left for a worker" in line)
    # each job claimed and left at most once, not again and again (once a name is left, the claims skip it)
    assert set(left) <= set(jobs) and set(left.values()) == {1}, log

    workers.start("--concurrency", "2")  # the new release's worker
    wait_until(
        lambda: rows.filter(state__in=FINAL).count() == len(jobs),
        60,
        lambda: f"the new worker to run the new jobs\n{workers.describe()}",
    )
    assert set(rows.values_list("state", flat=True)) == {State.SUCCESS}, workers.describe()
    assert sorted(Effect.objects.filter(key__in=jobs.values()).values_list("key", flat=True)) == sorted(jobs.values())
    assert old.poll() is None


def test_with_a_grace_of_zero_unknown_functions_fail_at_once(workers):
    jobs = new_release_jobs()
    workers.start("--concurrency", "2", TEST_OLD_RELEASE="1", SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE="0")
    rows = ScheduledFunction.objects.filter(pk__in=jobs)
    wait_until(lambda: rows.filter(state__in=FINAL).count() == len(jobs), 30, workers.describe)
    assert set(rows.values_list("state", flat=True)) == {State.FAILED}
    assert all("FunctionNotFound" in row.error for row in rows), workers.describe()


def test_after_a_short_grace_jobs_no_worker_knows_fail(workers):
    grace = 5.0
    jobs = new_release_jobs()
    workers.start("--concurrency", "2", TEST_OLD_RELEASE="1", SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=str(grace))
    rows = ScheduledFunction.objects.filter(pk__in=jobs)
    names = set(rows.values_list("name", flat=True))
    wait_until(lambda: left_by("w1", names), 30, lambda: f"the old worker to leave the new jobs\n{workers.describe()}")
    wait_until(lambda: rows.filter(state__in=FINAL).count() == len(jobs), 60, workers.describe)
    for row in rows:
        assert row.state == State.FAILED and "no live worker has known the" in row.error, workers.describe()
        assert (row.completed_time - max(row.scheduled_time, row.created_at)).total_seconds() >= grace
        assert row.attempts == 0 and row.started_at is None  # never run


# --- the database connection: killed under a running worker ---


def test_worker_reconnects_after_its_connections_are_killed_and_the_mutation_runs_once(workers, tmp_path, vendor):
    if vendor == "sqlite":
        pytest.skip("SQLite has no server connections to lose")
    marker, release = tmp_path / "inside-transaction", tmp_path / "release"
    proc = workers.start("--concurrency", "1", ready=True)
    assert kill_other_connections(vendor) >= 2, "the worker's main and executor connections"
    job_id = scheduler.run_after(0, pf.tally, {"name": "after-reconnect"})
    assert (
        wait_until(lambda: finished(job_id), 15, lambda: f"the idle worker to reconnect\n{workers.describe()}").state
        == State.SUCCESS
    ), workers.describe()

    # and while a mutation holds its transaction open: its connection dies under it
    job_id = scheduler.run_after(0, pf.write_then_hold, {"key": "cut", "marker": str(marker), "release": str(release)})
    wait_until(marker.exists, 15, lambda: f"the mutation to hold its transaction\n{workers.describe()}")
    kill_other_connections(vendor)
    release.touch()
    done = wait_until(lambda: finished(job_id), 15, lambda: f"the mutation to be run again\n{workers.describe()}")
    assert done.state == State.SUCCESS, workers.describe()
    assert list(Effect.objects.filter(key="cut").values_list("job_id", flat=True)) == [job_id]
    assert proc.poll() is None


def test_postgres_notify_arriving_on_a_dropped_connection_still_runs_the_job_at_once(workers, vendor):
    start_listening_worker(workers, vendor)  # a 30 s poll interval
    assert kill_other_connections(vendor, keep_listener=True) >= 2, "the worker's main and executor connections"
    job_id = scheduler.run_after(0, pf.tally, {"name": "notified"})
    done = wait_until(lambda: finished(job_id), 5, lambda: f"the notified job to run\n{workers.describe()}")
    assert done.state == State.SUCCESS, workers.describe()


# --- a body raising a BaseException ---


@pytest.mark.parametrize("body", [pf.cancelled_action, pf.exiting_mutation], ids=["CancelledError", "SystemExit"])
def test_a_body_raising_a_base_exception_fails_its_job_and_the_worker_goes_on(workers, body):
    proc = workers.start("--concurrency", "1", ready=True)
    bad = scheduler.run_after(0, body, {})

    done = wait_until(lambda: finished(bad), 5, lambda: f"the job to fail\n{workers.describe()}")
    assert done.state == State.FAILED, workers.describe()
    after = scheduler.run_after(0, pf.tally, {"name": "after"})
    assert wait_until(lambda: finished(after), 5, workers.describe).state == State.SUCCESS
    assert proc.poll() is None
