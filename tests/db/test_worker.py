"""The worker, run in-process (DESIGN §4, §8): outcomes, retries, timeouts, options, recovery, pruning."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.test import override_settings
from django.utils import timezone

from django_scheduled_actions import internal_mutation, run_mutation, scheduler
from django_scheduled_actions.models import ScheduledFunction, State, WorkerProcess
from django_scheduled_actions.store import leases
from django_scheduled_actions.store.engines import engine
from django_scheduled_actions.store.leases import claim, heartbeat, register_worker, sign_off
from django_scheduled_actions.worker import claims
from django_scheduled_actions.worker.maintenance import prune, recover_expired
from tests.app import functions as f
from tests.app.models import Counter, Effect, Note
from tests.support import subprocess_env, wait_until
from tests.support.connections import kill_other_connections
from tests.support.threads import WorkerThread

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects


def burst(**options):
    call_command("runworker", burst=True, **options)


def test_mutation_job_succeeds_once_with_job_info():
    job_id = scheduler.run_after(0, f.record, {"key": "k"})
    burst()
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts, job.result, job.error) == (State.SUCCESS, 1, {"key": "k"}, "")
    assert job.started_at and job.completed_time and job.started_at <= job.completed_time
    assert list(Effect.objects.values_list("key", "job_id", "attempt")) == [("k", job_id, 1)]


def test_failing_mutation_is_failed_and_rolled_back():
    job_id = scheduler.run_after(0, f.write_then_fail, {"text": "x"})
    burst()
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts) == (State.FAILED, 1)
    assert "ValueError: failing after writing 'x'" in job.error and "Traceback" in job.error
    assert not Note.objects.exists()


def test_action_without_retry_fails_once():
    job_id = scheduler.run_after(0, f.failing_action, {})
    burst()
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts) == (State.FAILED, 1) and "RuntimeError: boom" in job.error


def test_action_retry_policy_retries_until_success():
    job_id = scheduler.run_after(0, f.flaky_action, {"name": "flaky", "fail_times": 1})
    burst()
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts, job.result) == (State.SUCCESS, 2, 2)
    assert Counter.objects.get(name="flaky").value == 2


def test_action_retries_are_bounded_by_max_attempts():
    job_id = scheduler.run_after(0, f.flaky_action, {"name": "flaky", "fail_times": 10})
    burst()
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts) == (State.FAILED, 3) and "attempt 3 fails" in job.error
    assert Counter.objects.get(name="flaky").value == 3


def test_non_retryable_error_fails_at_once():
    job_id = scheduler.run_after(0, f.non_retryable, {})
    burst()
    job = Jobs.get(pk=job_id)
    assert (job.state, job.attempts) == (State.FAILED, 1) and "NonRetryableError" in job.error


@override_settings(SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=0)  # else left for a worker that knows it: test_deploys.py
def test_unknown_function_fails_that_job_and_the_worker_goes_on():
    bad = Jobs.create(name="nope:missing", kind="mutation", args={}, scheduled_time=timezone.now())
    good = scheduler.run_after(0, f.bump, {"name": "after"})
    burst()
    bad.refresh_from_db()
    assert bad.state == State.FAILED and "no function is registered as 'nope:missing'" in bad.error
    assert Jobs.get(pk=good).state == State.SUCCESS


def test_corrupt_arguments_fail_the_job_clearly():
    job = Jobs.create(name=f.bump.name, kind="mutation", args={"name": 5}, scheduled_time=timezone.now())
    burst()
    job.refresh_from_db()
    assert job.state == State.FAILED and "argument 'name' of tests.app.functions:bump" in job.error


def test_unserialisable_action_result_fails_the_job():
    job_id = scheduler.run_after(0, f.returns_unserialisable, {})
    burst()
    job = Jobs.get(pk=job_id)
    assert job.state == State.FAILED and "not JSON-serialisable" in job.error


def test_action_timeout_fails_it_and_the_worker_keeps_serving():
    slow = scheduler.run_after(0, f.slow_action, {"seconds": 3})
    with WorkerThread(concurrency=1) as worker:
        wait_until(lambda: Jobs.filter(pk=slow, state=State.FAILED).exists(), message="timeout")
        quick = scheduler.run_after(0, f.bump, {"name": "meanwhile"})
        wait_until(
            lambda: Jobs.filter(pk=quick, state=State.SUCCESS).exists(),
            timeout=2,
            message="another job while the slow action still sleeps",
        )
        assert worker.pool.threads[0].job is None
    job = Jobs.get(pk=slow)
    assert "JobTimeout" in job.error and job.result is None


def test_max_jobs_and_queues():
    for _ in range(3):
        scheduler.run_after(0, f.bump, {"name": "default"})
        scheduler.run_after(0, f.bump, {"name": "emails"}, queue="emails")
    call_command("runworker", max_jobs=2, queues=["emails"], poll_interval=0.05, concurrency=1)
    assert Counter.objects.get(name="emails").value == 2
    assert not Counter.objects.filter(name="default").exists()


def test_priority_orders_claims():
    low = scheduler.run_after(0, f.bump, {"name": "x"}, priority=-1)
    high = scheduler.run_after(0, f.bump, {"name": "x"}, priority=10)
    mid = scheduler.run_after(0, f.bump, {"name": "x"})
    _token, jobs = claim("w", 3, timezone.now(), timedelta(seconds=60))
    assert [j.pk for j in jobs] == [high, mid, low]


def test_claims_walk_down_the_priorities_that_have_due_jobs():
    scheduler.run_after(60, f.bump, {"name": "x"}, priority=5)  # the highest, but not due
    p3 = [scheduler.run_after(0, f.bump, {"name": "x"}, priority=3) for _ in range(2)]
    p1 = [scheduler.run_after(0, f.bump, {"name": "x"}, priority=1) for _ in range(2)]
    scheduler.run_after(0, f.bump, {"name": "x"}, priority=1, queue="other")
    p0 = scheduler.run_after(0, f.bump, {"name": "x"}, priority=0)
    now = timezone.now()
    assert [j.pk for j in claim("w", 3, now, timedelta(seconds=60), ["default"])[1]] == [*p3, p1[0]]
    assert [j.pk for j in claim("w", 10, now, timedelta(seconds=60), ["default"])[1]] == [p1[1], p0]
    assert claim("w", 10, now, timedelta(seconds=60), ["default"])[1] == []


def deallocate(statement_like: str) -> int:
    """Drop this connection's prepared statements whose text is LIKE ``statement_like``, as a pooler's next
    server connection would not have them; by name, since psycopg notices DEALLOCATE ALL and forgets them
    itself. Returns how many."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements WHERE statement LIKE %s", [statement_like])
        names = [name for (name,) in cursor.fetchall()]
        for name in names:
            cursor.execute(f'DEALLOCATE "{name}"')
    return len(names)


def test_claims_go_on_when_the_connection_loses_its_prepared_statements(vendor, caplog):
    """PostgreSQL claims are prepared statements; behind a pooler in transaction mode the next server
    connection does not have them (here: DEALLOCATE). The claim falls back to unprepared statements
    on that connection, and says so once."""
    if vendor != "postgresql":
        pytest.skip("prepared statements are used on PostgreSQL only")
    from django_scheduled_actions.store.transactions import _UNPREPARABLE, _UNPREPARABLE_WARNED

    _UNPREPARABLE_WARNED.clear()  # it warns once per process: maybe already in an earlier test
    ids = [scheduler.run_after(0, f.bump, {"name": "x"}) for _ in range(3)]
    claimed = [j.pk for j in claim("w", 1, timezone.now(), timedelta(seconds=60))[1]]
    assert connection.connection not in _UNPREPARABLE
    assert deallocate("%") >= 1
    claimed += [j.pk for j in claim("w", 1, timezone.now(), timedelta(seconds=60))[1]]
    claimed += [j.pk for j in claim("w", 1, timezone.now(), timedelta(seconds=60))[1]]
    assert claimed == ids
    assert connection.connection in _UNPREPARABLE
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warnings) == 1 and warnings[0].startswith("prepared statements do not work on this connection")
    assert "does not exist" in warnings[0]


def test_prepared_statement_names_are_the_connections_own(vendor):
    """psycopg names every connection's prepared statements _pg3_0, _pg3_1...: behind a pooler that shares
    server connections (PgBouncer before 1.21), another client's _pg3_0 would run in place of ours. The
    worker's are numbered from a random point, so that a name is only ever missing elsewhere, never another's."""
    if vendor != "postgresql":
        pytest.skip("prepared statements are used on PostgreSQL only")
    scheduler.run_after(0, f.bump, {"name": "x"})
    assert len(claim("w", 1, timezone.now(), timedelta(seconds=60))[1]) == 1
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_prepared_statements")
        names = [name for (name,) in cursor.fetchall()]
    assert names and all(name.startswith("_pg3_") and int(name[5:]) >= 2**32 for name in names), names


def test_a_mutation_completes_once_when_its_prepared_completion_went_missing(vendor):
    """Mutations complete through a prepared statement inside their transaction. If it went missing there
    (a pooler), the error aborts the transaction: it rolls back, the job runs again alone and completes
    once, and that connection prepares nothing more."""
    if vendor != "postgresql":
        pytest.skip("prepared statements are used on PostgreSQL only")
    from django_scheduled_actions.store.transactions import _UNPREPARABLE
    from django_scheduled_actions.testing import run_due_jobs

    first = scheduler.run_after(0, f.record, {"key": "first"})
    assert run_due_jobs() == 1
    assert deallocate("UPDATE %'success'%") == 1
    second = scheduler.run_after(0, f.record, {"key": "second"})
    assert run_due_jobs() == 1
    assert sorted(Effect.objects.values_list("job_id", "key")) == [(first, "first"), (second, "second")]
    assert Jobs.get(pk=second).state == State.SUCCESS
    assert connection.connection in _UNPREPARABLE


def test_claims_skip_future_jobs_and_other_queues():
    scheduler.run_after(60, f.bump, {"name": "x"})
    scheduler.run_after(0, f.bump, {"name": "x"}, queue="other")
    assert claim("w", 5, timezone.now(), timedelta(seconds=60), ["default"])[1] == []


def test_a_job_is_claimed_once():
    job_id = scheduler.run_after(0, f.bump, {"name": "x"})
    now = timezone.now()
    token, jobs = claim("w1", 5, now, timedelta(seconds=60))
    assert [j.pk for j in jobs] == [job_id]
    assert claim("w2", 5, now, timedelta(seconds=60))[1] == []
    job = Jobs.get(pk=job_id)
    assert (job.state, job.worker_id, job.token) == (State.IN_PROGRESS, "w1", token)


def claim_for_two_idle_threads(vendor):
    """A claim of [mutation, action, action] made for two idle threads: on PostgreSQL it marks the first
    action started (the mutation is the other of the first two jobs)."""
    ids = [
        scheduler.run_after(0, f.bump, {"name": "x"}),  # claim order: scheduled time, then id
        scheduler.run_after(0, f.noop_action, {}),
        scheduler.run_after(0, f.noop_action, {}),
    ]
    now = timezone.now()
    token, jobs = claim("w", 10, now, timedelta(seconds=60), start=2)
    assert [j.pk for j in jobs] == ids
    prestarted = [ids[1]] if vendor == "postgresql" else []
    rows = {j.pk: (j.started_at, j.attempts) for j in Jobs.filter(pk__in=ids)}
    assert rows == {pk: ((now, 1) if pk in prestarted else (None, 0)) for pk in ids}
    # in memory, as any action about to start: its attempt is counted when its body runs
    assert [(j.started_at, j.attempts) for j in jobs] == [(now if pk in prestarted else None, 0) for pk in ids]
    return token, jobs


def unclaimed(ids) -> bool:
    return set(Jobs.filter(pk__in=ids).values_list("state", "started_at", "attempts", "token")) == {
        (State.PENDING, None, 0, "")
    }


def test_a_claim_for_idle_threads_starts_its_first_actions_and_handing_them_back_undoes_that(vendor):
    token, jobs = claim_for_two_idle_threads(vendor)
    ids = [j.pk for j in jobs]
    # a job a thread started since is not the claim's to hand back: it may have run
    Jobs.mark_started(ids[2], token, timezone.now() + timedelta(seconds=1))
    assert leases.hand_back(token, jobs) == 2
    assert unclaimed(ids[:2])
    assert Jobs.get(pk=ids[2]).state == State.IN_PROGRESS


def test_a_claim_that_raised_is_released_whole_even_the_actions_it_started(vendor):
    token, jobs = claim_for_two_idle_threads(vendor)  # the worker never got these rows: none of them ran
    assert leases.release_claim(token) == 3
    assert unclaimed([j.pk for j in jobs])


def test_the_next_due_time_is_the_earliest_pending_job_of_any_priority_in_the_queues():
    now = timezone.now()
    assert engine("default").next_due_time(None) is None
    plan = [(30, 5, "default"), (20, -3, "default"), (10, 0, "other"), (40, 5, "other"), (50, 9, "default")]
    for seconds, priority, queue in plan:
        scheduler.run_after(seconds, f.noop_action, {}, priority=priority, queue=queue)
    done = scheduler.run_after(5, f.noop_action, {}, priority=1)
    Jobs.filter(pk=done).update(state=State.SUCCESS)  # finished jobs do not count

    def expected(queues):
        times = [j.scheduled_time for j in Jobs.filter(state=State.PENDING) if not queues or j.queue in queues]
        return min(times, default=None)

    for queues in (None, ["default"], ["other"], ["default", "other"], ["nowhere"]):
        assert engine("default").next_due_time(queues) == expected(queues), queues
    assert abs((engine("default").next_due_time(None) - now).total_seconds() - 10) < 2


def test_a_worker_of_slow_jobs_claims_no_more_than_it_can_start_soon():
    """Claimed jobs wait in a worker for a free thread; with slow jobs that is work other workers could do.
    A worker of two threads holds at most its two running jobs and two waiting ones."""
    job_ids = [scheduler.run_after(0, f.slow_action, {"seconds": 0.1, "name": f"s{i}"}) for i in range(16)]
    held = []
    with WorkerThread(concurrency=2, crons=False) as worker:
        deadline = time.monotonic() + 30
        while Jobs.filter(pk__in=job_ids).exclude(state=State.SUCCESS).exists() and time.monotonic() < deadline:
            held.append(Jobs.filter(pk__in=job_ids, state=State.IN_PROGRESS).count())
            time.sleep(0.02)
    assert not Jobs.filter(pk__in=job_ids).exclude(state=State.SUCCESS).exists()
    assert 0 < max(held) <= 4, held
    assert worker.claims.prefetch == 2


def test_a_worker_of_quick_jobs_claims_more_at_a_time(monkeypatch):
    """... and with quick jobs it lets more wait, so that its threads do not wait for the next claim. (The
    jobs waiting are the work of ``PREFETCH_SECONDS``: a second of it here, so that even a loaded machine's
    drain rate, well over 4 jobs/s, lets more than one job per thread wait.)"""
    monkeypatch.setattr(claims, "PREFETCH_SECONDS", 1.0)
    scheduler.run_many(f.noop_action, [{"i": i} for i in range(1500)])
    sizes = []
    with WorkerThread(concurrency=2, crons=False) as worker:
        wait_until(
            lambda: sizes.append(worker.claims.prefetch) or not Jobs.exclude(state=State.SUCCESS).exists(),
            60,
            "the quick jobs to be done",
        )
        time.sleep(0.3)  # idle since: back to one per thread, so that slow jobs coming next are not hoarded
    assert max(sizes) > 2 * 2, sizes
    assert worker.claims.prefetch == 2


def test_expired_leases_are_recovered_by_kind():
    mutation = scheduler.run_after(0, f.bump, {"name": "x"})
    unstarted = scheduler.run_after(0, f.noop_action, {})
    started = scheduler.run_after(0, f.noop_action, {})
    retried = scheduler.run_after(0, f.flaky_action, {"name": "x", "fail_times": 0})
    now = timezone.now()
    token, _ = claim("lost", 10, now, timedelta(seconds=1))
    for job_id in (started, retried):
        assert Jobs.mark_started(job_id, token, now) == 1
    assert recover_expired(now) == 0  # leases still valid
    later = now + timedelta(seconds=2)
    assert recover_expired(later) == 4
    states = dict(Jobs.values_list("pk", "state"))
    assert states == {mutation: State.PENDING, unstarted: State.PENDING, started: State.FAILED, retried: State.PENDING}
    assert "worker lost" in Jobs.get(pk=started).error
    assert Jobs.get(pk=retried).attempts == 1 and "worker lost" in Jobs.get(pk=retried).error
    assert recover_expired(later) == 0


def test_a_heartbeating_worker_keeps_its_jobs_and_a_silent_one_loses_them():
    scheduler.run_after(0, f.bump, {"name": "x"})
    now = timezone.now()
    lease = timedelta(seconds=1)
    register_worker("alive", hostname="h", pid=1, queues=None, concurrency=1, now=now, lease=lease)
    claim("alive", 1, now, lease)
    assert heartbeat("alive", timedelta(seconds=10)) == 1  # renewed to the database's time + 10 s
    later = now + timedelta(seconds=5)
    assert recover_expired(later) == 0  # the claim's own lease ran out, but the worker is alive
    assert WorkerProcess.objects.lost(later + timedelta(seconds=6)).count() == 1
    assert recover_expired(later + timedelta(seconds=6)) == 1
    sign_off("alive", later)
    assert not WorkerProcess.objects.lost(later + timedelta(seconds=10)).exists()


def test_the_worker_registers_heartbeats_and_signs_off():
    with WorkerThread(concurrency=1, worker_id="registered") as worker:
        wait_until(lambda: WorkerProcess.objects.filter(worker_id="registered").exists(), message="registration")
        row = WorkerProcess.objects.get(worker_id="registered")
        assert (row.concurrency, row.queues, row.stopped_at) == (1, [], None)
        assert row.expires_at > timezone.now()
        assert worker.worker_id == "registered"
    row.refresh_from_db()
    assert row.stopped_at is not None and row.expires_at <= timezone.now()


def test_canceled_running_action_keeps_state_and_late_result_and_cancels_children():
    job_id = scheduler.run_after(0, f.schedule_after_sleep, {"seconds": 1.0, "name": "child"})
    with WorkerThread(concurrency=1):
        wait_until(lambda: Jobs.filter(pk=job_id, started_at__isnull=False).exists(), message="start")
        scheduler.cancel(job_id)
        wait_until(lambda: Jobs.filter(parent_id=job_id).exists(), message="child scheduled")
        wait_until(lambda: Jobs.get(pk=job_id).result is not None, message="late result")
        time.sleep(0.3)  # the worker would have had time to run the child were it pending
    job = Jobs.get(pk=job_id)
    child = Jobs.get(parent_id=job_id)
    assert job.state == State.CANCELED and job.result == child.pk
    assert child.state == State.CANCELED
    assert not Counter.objects.filter(name="child").exists()


def test_canceled_pending_job_never_runs():
    job_id = scheduler.run_after(0, f.bump, {"name": "never"})
    scheduler.cancel(job_id)
    burst()
    assert Jobs.get(pk=job_id).state == State.CANCELED
    assert not Counter.objects.filter(name="never").exists()


def test_mutation_canceled_before_commit_has_no_effect():
    job_id = scheduler.run_after(0, f.record, {"key": "k"})
    token, [job] = claim("w", 1, timezone.now(), timedelta(seconds=60))
    scheduler.cancel(job_id)
    from django_scheduled_actions.worker.executor import Executor

    Executor("w").run(job, token)
    assert Jobs.get(pk=job_id).state == State.CANCELED
    assert not Effect.objects.exists()


def test_retention_prunes_only_old_finished_jobs(settings):
    now = timezone.now()
    old = [scheduler.run_after(0, f.bump, {"name": "x"}) for _ in range(3)]
    recent = scheduler.run_after(0, f.bump, {"name": "x"})
    pending = scheduler.run_after(0, f.bump, {"name": "x"})
    child = Jobs.create(name=f.bump.name, kind="mutation", scheduled_time=now, parent_id=old[0], args={})
    Jobs.filter(pk__in=old).update(state=State.SUCCESS, completed_time=now - timedelta(days=8))
    Jobs.filter(pk=recent).update(state=State.FAILED, completed_time=now - timedelta(days=6))
    assert prune(now, timedelta(days=7), batch=2) == 3
    assert set(Jobs.values_list("pk", flat=True)) == {recent, pending, child.pk}
    assert Jobs.get(pk=child.pk).parent_id is None


def test_mutations_run_serializable_by_default(settings, vendor):
    expected = {"postgresql": "serializable", "mysql": "serializable", "sqlite": "sqlite"}[vendor]
    assert run_mutation(f.isolation_level, {}) == expected
    settings.SCHEDULED_ACTIONS_MUTATION_ISOLATION = "read committed"
    if vendor != "sqlite":
        assert run_mutation(f.isolation_level, {}).replace("-", " ") == "read committed"


def test_concurrent_read_modify_write_mutations_lose_no_update():
    """Without locks in user code: conflicts are retried, so 4 threads x 15 increments make 60."""
    errors = []

    def bump_many():
        try:
            for _ in range(15):
                run_mutation(f.bump, {"name": "shared"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)
        finally:
            connection.close()

    run_mutation(f.bump, {"name": "shared", "by": 0})
    threads = [threading.Thread(target=bump_many) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    assert Counter.objects.get(name="shared").value == 60


def test_due_job_query_uses_the_partial_index(vendor):
    scheduler.run_after(0, f.bump, {"name": "x"})
    qs = Jobs.due(timezone.now()).in_queues(["default"]).claim_order()[:10]
    if vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SET enable_seqscan = off")
            plan = qs.explain()
            cursor.execute("SET enable_seqscan = on")
        assert "sa_job_due_idx" in plan
    elif vendor == "sqlite":
        assert "sa_job_due_idx" in qs.explain()
    else:  # MySQL/MariaDB have no partial indexes: a plain composite index (Django 5.2 also builds
        # sa_job_due_idx there, without its condition; either serves the query)
        assert "sa_job_due_mysql_idx" in qs.explain() or "sa_job_due_idx" in qs.explain()


def test_postgresql_vacuums_the_jobs_table_by_dead_rows_not_by_its_size(vendor):
    if vendor != "postgresql":
        pytest.skip("per-table autovacuum settings are PostgreSQL's")
    with connection.cursor() as cursor:
        cursor.execute("SELECT reloptions FROM pg_class WHERE relname = 'scheduled_actions_job'")
        options = cursor.fetchone()[0]
    assert sorted(options) == ["autovacuum_vacuum_scale_factor=0", "autovacuum_vacuum_threshold=5000"]


def test_worker_reconnects_after_its_connections_are_killed(vendor):
    if vendor == "sqlite":
        pytest.skip("SQLite has no server connections to kill")
    with WorkerThread(concurrency=2):
        first = scheduler.run_after(0, f.record, {"key": "before"})
        wait_until(lambda: Jobs.filter(pk=first, state=State.SUCCESS).exists(), message="first job")
        assert kill_other_connections(vendor) >= 2
        later = [scheduler.run_after(0, f.record, {"key": f"after-{i}"}) for i in range(3)]
        later.append(scheduler.run_after(0, f.action_via_ctx, {"name": "after"}))
        wait_until(
            lambda: Jobs.filter(pk__in=later, state=State.SUCCESS).count() == 4,
            timeout=15,
            message="jobs after the connections were killed",
        )
    assert sorted(Effect.objects.values_list("key", flat=True)) == ["after-0", "after-1", "after-2", "before"]


WAKE_UP_UNDER_SIGNALS = """
import signal, time
import django
django.setup()
from django_scheduled_actions.worker.wakeup import Wakeup

wake, fired, running = Wakeup(), 0, True

def handler(signum, frame):  # as the worker's SIGTERM handler does, every 0.3 ms
    global fired
    fired += 1
    wake.set()
    if running:  # handlers run in this thread: once it is False, none re-arms the timer
        signal.setitimer(signal.ITIMER_REAL, 0.0003)

signal.signal(signal.SIGALRM, handler)
signal.setitimer(signal.ITIMER_REAL, 0.0003)
deadline = time.monotonic() + 3
while time.monotonic() < deadline:  # the main loop's own use: wait, then clear
    wake.wait(0)
    wake.clear()
running = False
signal.setitimer(signal.ITIMER_REAL, 0)
signal.signal(signal.SIGALRM, signal.SIG_IGN)  # one already pending must not kill the process on exit
print(fired)
"""


def test_a_signal_handler_can_wake_the_main_loop_whatever_the_loop_is_doing():
    """Signal handlers run in the main thread between two of its bytecodes, perhaps inside the wake-up's
    own ``wait()`` or ``clear()``: setting it there must not deadlock (with a ``threading.Event`` this
    script hung in 3 runs of 3: a SIGTERM could leave the worker hanging for good)."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", WAKE_UP_UNDER_SIGNALS],
            env=subprocess_env(),
            timeout=30,
            capture_output=True,
            text=True,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("the main loop deadlocked when a signal handler set its wake-up")
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) > 1000, "too few signals to have tried every point of the loop"


BODY_THREADS: list[str] = []


@internal_mutation
def note_thread(ctx) -> None:
    BODY_THREADS.append(threading.current_thread().name)


@pytest.mark.parametrize(
    ("concurrency", "runs_on"),
    [(5, "scheduled-actions-executor-"), (6, "scheduled-actions-db_")],
)
def test_mutations_run_on_executor_threads_only_where_each_can_keep_a_connection(concurrency, runs_on):
    """Of the default 8 connections a burst worker's heartbeat keeps one (no listener in a burst) and its
    own work at least two: up to 5 executor threads each get a lane and run their mutations themselves; a
    sixth would overdraw, so with 6 every mutation is handed to the worker's connections."""
    BODY_THREADS.clear()
    scheduler.run_many(note_thread, [{} for _ in range(20)])
    call_command("runworker", burst=True, concurrency=concurrency)
    assert len(BODY_THREADS) == 20
    assert all(name.startswith(runs_on) for name in BODY_THREADS), sorted(set(BODY_THREADS))


def test_an_idle_worker_wakes_for_a_job_scheduled_elsewhere_without_polling(vendor):
    """PostgreSQL: the listener's NOTIFY; SQLite: ``PRAGMA data_version`` changes when another connection
    commits. The worker polls once a minute here, yet each job starts within a fraction of a second."""
    if vendor not in ("postgresql", "sqlite"):
        pytest.skip("MariaDB workers poll: nothing tells them of another connection's commit")
    with WorkerThread(concurrency=1, crons=False, poll_interval=60):
        wait_until(lambda: WorkerProcess.objects.exists(), 10, "the worker to register")
        time.sleep(0.5)  # the worker is idle: its first claims found nothing
        waits = []
        for i in range(5):
            enqueued = time.monotonic()
            job_id = scheduler.run_after(0, f.bump, {"name": f"woken{i}"})
            wait_until(lambda: Jobs.get(pk=job_id).state == State.SUCCESS, 10, "the job")  # noqa: B023
            waits.append(time.monotonic() - enqueued)
    assert max(waits) < 2.0, waits  # the poll would take up to 60 s
