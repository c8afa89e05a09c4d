"""Benchmark: enqueue rates, drain rates, enqueue->start latency and worker memory, per database.

    python benchmarks/bench.py                      # SQLite, PostgreSQL and MariaDB, 3 runs each
    python benchmarks/bench.py --db postgres --runs 5
    python benchmarks/bench.py --smoke              # tiny sizes: checks the benchmark works (CI)
    python benchmarks/bench.py --db postgres --scale 1000000   # drain beside 1M finished + 1M future jobs
    python benchmarks/bench.py --rates              # rate limits: a limited drain against its rate
    python benchmarks/bench.py --io --db postgres   # I/O-bound actions: sync and async, connections held
    python benchmarks/bench.py --telemetry          # the drain with OpenTelemetry on against off

Every figure is printed as the median of the runs with the range [min-max], beside two baselines
measured in the same run on the same database: a bare ``Model.objects.create`` of the same job row
(what an enqueue cannot beat) and ``SELECT 1`` round trips (the connection's ceiling).
Workers are real ``manage.py runworker`` processes (``--concurrency 4``, default settings, no crons).
The machine is shared and noisy: compare ratios within one run, not absolute numbers across runs.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SQLITE_PATH = ROOT / "build" / "bench.sqlite3"
DATABASES = {
    "sqlite": f"sqlite:///{SQLITE_PATH}",
    "postgres": "postgres://postgres@127.0.0.1:5432/scheduled_actions_bench",
    "mysql": "mysql://root@127.0.0.1:3306/scheduled_actions_bench",
}
SIZES = {
    "full": {"enqueue": 2000, "bulk": 10000, "drain": 5000, "latency": 300, "rated": 1000, "io": 4000},
    "smoke": {"enqueue": 50, "bulk": 200, "drain": 200, "latency": 20, "rated": 400, "io": 200},
}


def env_for(db: str) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": DATABASES[db],
        "DJANGO_SETTINGS_MODULE": "benchmarks.settings",
        "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "testproject")]),
    }


def setup_django(db: str) -> None:
    os.environ.update(env_for(db))
    sys.path[:0] = [str(ROOT), str(ROOT / "testproject")]
    import django

    django.setup()


def recreate_database(db: str) -> None:
    """A fresh database per benchmark run, then migrate (in a subprocess: this one stays unconnected)."""
    name = DATABASES[db].rsplit("/", 1)[1]
    if db == "sqlite":
        SQLITE_PATH.parent.mkdir(exist_ok=True)
        for suffix in ("", "-wal", "-shm"):
            Path(f"{SQLITE_PATH}{suffix}").unlink(missing_ok=True)
    elif db == "postgres":
        subprocess.run(
            [
                "psql",
                "-qh",
                "127.0.0.1",
                "-U",
                "postgres",
                "-c",
                f"DROP DATABASE IF EXISTS {name}",
                "-c",
                f"CREATE DATABASE {name}",
            ],
            check=True,
            capture_output=True,
        )
    else:
        subprocess.run(
            [
                "mariadb",
                "-h127.0.0.1",
                "-uroot",
                "-e",
                f"DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name} CHARACTER SET utf8mb4",
            ],
            check=True,
            capture_output=True,
        )
    subprocess.run([sys.executable, "-m", "django", "migrate", "-v0"], env=env_for(db), check=True, cwd=ROOT)


# ---- measurements, run inside a child process per database (see main) ----


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def measure_enqueue(sizes: dict[str, int]) -> dict[str, float]:
    from django.db import connection, transaction
    from django.utils import timezone

    from django_scheduled_actions import scheduler
    from django_scheduled_actions.models import ScheduledFunction
    from tests.app.functions import noop_mutation

    n = sizes["enqueue"]
    results = {}
    started = time.perf_counter()
    with connection.cursor() as cursor:
        for _ in range(n):
            cursor.execute("SELECT 1")
    results["select1_per_s"] = rate(n, time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(n):
        ScheduledFunction.objects.create(
            name=noop_mutation.name, kind="mutation", args={"i": i}, scheduled_time=timezone.now(), state="canceled"
        )
    results["bare_create_per_s"] = rate(n, time.perf_counter() - started)
    started = time.perf_counter()
    for i in range(n):
        scheduler.run_after(3600, noop_mutation, {"i": i})
    results["enqueue_per_s"] = rate(n, time.perf_counter() - started)
    started = time.perf_counter()
    with transaction.atomic():
        for i in range(sizes["bulk"]):
            scheduler.run_after(3600, noop_mutation, {"i": i})
    results["enqueue_in_one_txn_per_s"] = rate(sizes["bulk"], time.perf_counter() - started)
    started = time.perf_counter()
    ScheduledFunction.objects.bulk_create(
        [
            ScheduledFunction(
                name=noop_mutation.name, kind="mutation", args={"i": i}, scheduled_time=timezone.now(), state="canceled"
            )
            for i in range(sizes["bulk"])
        ],
        batch_size=1000,
    )
    results["bare_bulk_create_per_s"] = rate(sizes["bulk"], time.perf_counter() - started)
    started = time.perf_counter()
    scheduler.run_many(noop_mutation, [{"i": i} for i in range(sizes["bulk"])], delay=3600)
    results["enqueue_run_many_per_s"] = rate(sizes["bulk"], time.perf_counter() - started)
    started = time.perf_counter()
    scheduler.batch(noop_mutation, [{"i": i} for i in range(sizes["bulk"])], delay=3600)
    results["enqueue_batch_per_s"] = rate(sizes["bulk"], time.perf_counter() - started)
    ScheduledFunction.objects.all().delete()
    return results


def start_worker(db: str, *options: str, **extra_env: str) -> subprocess.Popen:
    """``runworker --no-crons`` with ``options`` (default ``--concurrency 4``), its output discarded."""
    return subprocess.Popen(
        [sys.executable, "-m", "django", "runworker", *(options or ("--concurrency", "4")), "--no-crons"],
        env={**env_for(db), **extra_env},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def peak_rss_mb(proc: subprocess.Popen) -> float:
    for line in Path(f"/proc/{proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def stop(procs: list[subprocess.Popen]) -> None:
    for proc in procs:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def wait_for(predicate, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark waited too long; is a worker failing? (see runworker output)")
        time.sleep(0.05)  # the rates come from the jobs' own timestamps, not from when this loop notices


def analyze() -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        if connection.vendor == "mysql":
            cursor.execute("ANALYZE TABLE scheduled_actions_job")
            cursor.fetchall()
        elif connection.vendor == "postgresql":
            cursor.execute("VACUUM ANALYZE scheduled_actions_job")
        else:
            cursor.execute("ANALYZE")


def measure_drain(
    db: str,
    kind: str,
    workers: int,
    n: int,
    plans: list[str] | None = None,
    backlog: Callable[[], object] | None = None,
    **worker_env: str,
) -> dict[str, float]:
    """Drain ``n`` no-op jobs with ``workers`` processes; ``plans`` gets the claim's plan, backlog queued.
    ``backlog`` schedules other jobs beside them first (benchmarks/rates.py)."""
    from django.db import transaction
    from django.db.models import Max, Min

    from django_scheduled_actions import scheduler
    from django_scheduled_actions.models import ScheduledFunction
    from tests.app.functions import noop_action, noop_mutation

    fn = noop_mutation if kind == "mutation" else noop_action
    ScheduledFunction.objects.exclude(name=FILLER).delete()
    if backlog is not None:
        backlog()
    before = ScheduledFunction.objects.aggregate(last=Max("pk"))["last"] or 0
    with transaction.atomic():
        for i in range(n):
            scheduler.run_after(0, fn, {"i": i})
    analyze()
    if plans is not None:
        plans.append(claim_plan())
    # by primary key range: polled while the worker drains, it must cost next to nothing whatever the table
    # holds (a count over the state read 2,000,000 rows per poll in the scale run, on the cores it measures)
    done = ScheduledFunction.objects.filter(pk__gt=before, state="success")
    launched = time.time()
    procs = [start_worker(db, **worker_env) for _ in range(workers)]
    try:
        wait_for(lambda: done.count() == n, timeout=max(120.0, n / 20))
        rss = max(peak_rss_mb(p) for p in procs)
    finally:
        stop(procs)
    span = done.aggregate(first=Min("started_at"), last=Max("completed_time"))
    steady = (span["last"] - span["first"]).total_seconds()
    return {
        f"drain_{kind}_{workers}w_per_s": rate(n, span["last"].timestamp() - launched),
        f"steady_{kind}_{workers}w_per_s": rate(n, steady),
        f"rss_{kind}_{workers}w_mb": rss,
    }


def measure_chain(db: str, chains: int, steps: int = 5) -> dict[str, float]:
    """The guide's core pattern: ``chains`` chains of ``steps`` mutations, each writing a row and scheduling
    the next step, all first steps due at once, one worker; checks every step's row exists exactly once."""
    from django.db.models import Max, Min

    from django_scheduled_actions import scheduler
    from django_scheduled_actions.models import ScheduledFunction
    from tests.app.functions import chain_step
    from tests.app.models import Note

    ScheduledFunction.objects.exclude(name=FILLER).delete()
    Note.objects.all().delete()
    scheduler.run_many(chain_step, [{"chain": c, "k": 1, "steps": steps} for c in range(chains)])
    analyze()
    launched = time.time()
    proc = start_worker(db)
    done = ScheduledFunction.objects.filter(name=chain_step.name, state="success")
    try:
        wait_for(lambda: done.count() == chains * steps, timeout=max(120.0, chains * steps / 10))
    finally:
        stop([proc])
    rows = sorted(Note.objects.values_list("text", flat=True))
    if rows != sorted(f"{c}:{k}" for c in range(chains) for k in range(1, steps + 1)):
        raise AssertionError(f"the chain's rows are not each step once: {len(rows)} rows for {chains * steps} steps")
    span = done.aggregate(first=Min("started_at"), last=Max("completed_time"))
    return {
        "drain_chain_per_s": rate(chains * steps, span["last"].timestamp() - launched),
        "steady_chain_per_s": rate(chains * steps, (span["last"] - span["first"]).total_seconds()),
    }


def measure_latency(db: str, n: int, per_second: float = 30.0) -> dict[str, float]:
    from django_scheduled_actions import scheduler
    from django_scheduled_actions.models import ScheduledFunction
    from tests.app.functions import clock_action

    ScheduledFunction.objects.all().delete()
    proc = start_worker(db)
    try:
        warm = scheduler.run_after(0, clock_action, {"i": -1})
        wait_for(lambda: ScheduledFunction.objects.filter(pk=warm, state="success").exists(), 60)
        time.sleep(1.0)  # the worker is idle: the enqueues below find it asleep
        enqueued = {}
        start = time.perf_counter()
        for i in range(n):
            time.sleep(max(0.0, start + i / per_second - time.perf_counter()))
            job_id = scheduler.run_after(0, clock_action, {"i": i})
            enqueued[job_id] = time.time()
        wait_for(lambda: ScheduledFunction.objects.filter(pk__in=enqueued, state="success").count() == n, 60)
        rss = peak_rss_mb(proc)
    finally:
        stop([proc])
    # from the enqueue's return to the body's start, as the body saw it: started_at is when the job was
    # marked started, which on PostgreSQL an idle worker's claim does before the body runs
    started = dict(ScheduledFunction.objects.filter(pk__in=enqueued).values_list("pk", "result"))
    latencies = sorted((started[pk] - t) * 1000 for pk, t in enqueued.items())
    pick = lambda q: latencies[min(len(latencies) - 1, int(q * len(latencies)))]  # noqa: E731
    return {
        "latency_p50_ms": pick(0.50),
        "latency_p95_ms": pick(0.95),
        "latency_p99_ms": pick(0.99),
        "latency_max_ms": latencies[-1],
        "rss_idle_worker_mb": rss,
    }


# ---- scale: a table that already holds many finished jobs and many jobs scheduled for later ----

FILLER = "benchmark.filler"


def fill_table(rows: int) -> None:
    """Add ``rows`` finished jobs and ``rows`` pending jobs scheduled a day ahead, one statement each."""
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    now = timezone.now()
    if connection.vendor == "postgresql":
        source, args = "FROM generate_series(1, %s)", "'{}'::jsonb"
    else:  # SQLite and MariaDB: a recursive CTE counts
        source, args = (
            "FROM (WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < %s) "
            "SELECT i FROM s) AS numbers",
            "'{}'",
        )
    with connection.cursor() as cursor:
        if connection.vendor == "mysql":  # recursion is capped at 1,000 rows by default
            variable = "max_recursive_iterations" if connection.mysql_is_mariadb else "cte_max_recursion_depth"
            cursor.execute(f"SET SESSION {variable} = %s", [rows + 1])
        for state, scheduled, completed in (
            ("success", now - timedelta(hours=1), now - timedelta(hours=1)),
            ("pending", now + timedelta(days=1), None),
        ):
            cursor.execute(
                "INSERT INTO scheduled_actions_job (name, kind, args, state, queue, priority, scheduled_time, "
                "created_at, completed_time, attempts, max_attempts, error, worker_id, token, batch_counted) "
                f"SELECT %s, 'mutation', {args}, %s, 'default', 0, %s, %s, %s, 0, 1, '', '', '', %s {source}",
                [FILLER, state, scheduled, now, completed, False, rows],
            )
        if connection.vendor == "postgresql":  # as after a while in production: vacuumed, written out
            cursor.execute("VACUUM scheduled_actions_job")
            cursor.execute("CHECKPOINT")
    analyze()


def claim_plan() -> str:
    """The claim query's plan, digits blanked (estimates change with the table's size, the shape must not)."""
    import re
    from datetime import timedelta

    from django.db import connection
    from django.utils import timezone

    from django_scheduled_actions.models import ScheduledFunction
    from django_scheduled_actions.store.engines.base import POSTGRESQL

    now = timezone.now()
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            claim = POSTGRESQL["claim"].format(conditions="", columns="id", priority="%s")
            cursor.execute("EXPLAIN (COSTS OFF) " + claim, [now, 0, 64, 4, "bench", "plan", timedelta(minutes=1), 0])
            plan = "\n".join(row[0] for row in cursor.fetchall())
    else:
        plan = ScheduledFunction.objects.due(now).filter(priority=0).claim_order()[:64].explain()
    return re.sub(r"\d+", "N", plan)


def measure_scale(db: str, rows: int, drain: int, repeat: int = 3) -> dict[str, object]:
    """Drain rate and the claim's plan with only the backlog in the table, then beside ``rows`` finished
    and ``rows`` future jobs: the median of ``repeat`` drains each, after one drain that warms the full
    table up (the fill leaves a checkpoint and autovacuum's work behind, which production spreads out)."""
    from django_scheduled_actions.models import ScheduledFunction

    def drains(plans: list[str]) -> float:
        rates = [measure_drain(db, "mutation", 1, drain, plans)["steady_mutation_1w_per_s"] for _ in range(repeat)]
        return statistics.median(rates)

    ScheduledFunction.objects.all().delete()
    empty_plans: list[str] = []
    results: dict[str, object] = {"drain_empty_per_s": drains(empty_plans)}
    started = time.perf_counter()
    fill_table(rows)
    results["fill_seconds"] = time.perf_counter() - started
    measure_drain(db, "mutation", 1, drain)
    full_plans: list[str] = []
    results["drain_full_per_s"] = drains(full_plans)
    results["plan_empty"], results["plan_full"] = empty_plans[0], full_plans[0]
    return results


def run_once(db: str, sizes: dict[str, int]) -> dict[str, float]:
    results = measure_enqueue(sizes)
    for kind in ("mutation", "action"):
        for workers in (1, 2):
            results.update(measure_drain(db, kind, workers, sizes["drain"]))
    results.update(measure_chain(db, sizes["drain"] // 5))
    results["chain_over_mutations"] = results["drain_chain_per_s"] / results["drain_mutation_1w_per_s"]
    results.update(measure_latency(db, sizes["latency"]))
    return results


# ---- reporting ----

LABELS = [
    ("select1_per_s", "baseline: SELECT 1 round trips/s"),
    ("bare_create_per_s", "baseline: bare Model.objects.create/s"),
    ("enqueue_per_s", "enqueue, one per transaction/s"),
    ("enqueue_in_one_txn_per_s", "enqueue, run_after many times in one transaction/s"),
    ("bare_bulk_create_per_s", "baseline: bare bulk_create, 1,000 per statement/s"),
    ("enqueue_run_many_per_s", "enqueue in bulk, scheduler.run_many/s"),
    ("enqueue_batch_per_s", "enqueue in bulk, scheduler.batch (fan-out with fan-in)/s"),
    ("drain_mutation_1w_per_s", "drain no-op mutations, 1 worker/s"),
    ("drain_mutation_2w_per_s", "drain no-op mutations, 2 workers/s"),
    ("drain_chain_per_s", "drain chains of mutations (write a row, schedule the next), 1 worker, steps/s"),
    ("chain_over_mutations", "chain steps / no-op mutations drained, 1 worker"),
    ("drain_action_1w_per_s", "drain no-op actions, 1 worker/s"),
    ("drain_action_2w_per_s", "drain no-op actions, 2 workers/s"),
    ("latency_p50_ms", "enqueue->start p50 at 30/s, ms"),
    ("latency_p95_ms", "enqueue->start p95, ms"),
    ("latency_p99_ms", "enqueue->start p99, ms"),
    ("latency_max_ms", "enqueue->start max, ms"),
    ("rss_mutation_1w_mb", "worker peak RSS (draining), MB"),
    ("rss_idle_worker_mb", "worker peak RSS (latency run), MB"),
]


def summarise(values: list[float]) -> str:
    median = statistics.median(values)
    fmt = (
        (lambda v: f"{v:,.2f}") if median < 10 else (lambda v: f"{v:,.1f}") if median < 100 else (lambda v: f"{v:,.0f}")
    )
    return f"{fmt(median)} [{fmt(min(values))}-{fmt(max(values))}]"


def report(all_results: dict[str, list[dict[str, float]]]) -> str:
    dbs = list(all_results)
    runs = {db: len(r) for db, r in all_results.items()}
    header = "| metric | " + " | ".join(f"{db} (n={runs[db]})" for db in dbs) + " |"
    lines = [header, "|---|" + "---|" * len(dbs)]
    for key, label in LABELS:
        cells = [summarise([r[key] for r in all_results[db]]) if all_results[db] else "-" for db in dbs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for db in dbs:
        ratios = [r["enqueue_per_s"] / r["bare_create_per_s"] for r in all_results[db]]
        lines.append(f"| {db}: enqueue / bare create | " + summarise(ratios) + " |")
    return "\n".join(lines)


def scale_report(all_results: dict[str, list[dict]], rows: int) -> str:
    lines = [
        f"| drain of no-op mutations, 1 worker | empty table | beside {rows:,} finished + {rows:,} future jobs "
        "| ratio | claim plan |",
        "|---|---|---|---|---|",
    ]
    for db, results in all_results.items():
        ratios = [r["drain_full_per_s"] / r["drain_empty_per_s"] for r in results]
        same = all(r["plan_empty"] == r["plan_full"] for r in results)
        lines.append(
            f"| {db} (n={len(results)}) | {summarise([r['drain_empty_per_s'] for r in results])}/s "
            f"| {summarise([r['drain_full_per_s'] for r in results])}/s | {summarise(ratios)} "
            f"| {'unchanged' if same else 'CHANGED'} |"
        )
    for db, results in all_results.items():
        lines += [
            "",
            f"{db}: claim plan with the table full (filling took "
            f"{statistics.median(r['fill_seconds'] for r in results):.0f} s):",
            results[0]["plan_full"],
        ]
        if results[0]["plan_empty"] != results[0]["plan_full"]:
            lines += [f"{db}: claim plan on the empty table:", results[0]["plan_empty"]]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", choices=list(DATABASES), help="database(s); default all three")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run: checks the benchmark works")
    parser.add_argument(
        "--scale",
        type=int,
        metavar="ROWS",
        help="instead: drain rate and claim plan on an empty table, then with ROWS finished and "
        "ROWS future jobs in it (the issue's scale check uses 1000000)",
    )
    parser.add_argument(
        "--rates",
        action="store_true",
        help="instead: the rate limit rows (a rate-limited drain against its rate; the unlimited drain "
        "beside a limited backlog), see benchmarks/rates.py",
    )
    parser.add_argument(
        "--io",
        action="store_true",
        help="instead: the I/O-bound rows (50 ms actions, sync on 200 threads and async with 200 and 1,000 "
        "in flight; connections held, RSS), see benchmarks/waiting.py",
    )
    parser.add_argument(
        "--telemetry",
        action="store_true",
        help="instead: the no-op drains with OpenTelemetry tracing and metrics on (the SDK, dropping "
        "exporters; the API alone) against off, interleaved, see benchmarks/telemetry.py",
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SIZES["smoke" if args.smoke else "full"]
    if args.child:  # one run against one database, results as one line of JSON
        setup_django(args.child)
        if args.scale:
            print(json.dumps(measure_scale(args.child, args.scale, sizes["drain"])))
        elif args.rates:
            from benchmarks.rates import measure_rates  # after django.setup(): it imports the test app

            print(json.dumps(measure_rates(args.child, sizes["rated"], sizes["drain"])))
        elif args.io:
            from benchmarks.waiting import measure_io

            print(json.dumps(measure_io(args.child, sizes["io"])))
        elif args.telemetry:
            from benchmarks.telemetry import measure_telemetry  # after django.setup(): it imports the test app

            print(json.dumps(measure_telemetry(args.child, sizes["drain"], 1 if args.smoke else 3)))
        else:
            print(json.dumps(run_once(args.child, sizes)))
        return 0
    runs = 1 if args.smoke else args.runs
    all_results: dict[str, list[dict[str, float]]] = {}
    for db in args.db or list(DATABASES):
        all_results[db] = []
        for i in range(runs):
            print(f"{db}: run {i + 1}/{runs}", file=sys.stderr, flush=True)
            recreate_database(db)
            cmd = (
                [sys.executable, __file__, "--child", db]
                + (["--smoke"] if args.smoke else [])
                + (["--scale", str(args.scale)] if args.scale else [])
                + (["--rates"] if args.rates else [])
                + (["--io"] if args.io else [])
                + (["--telemetry"] if args.telemetry else [])
            )
            out = subprocess.run(cmd, env=env_for(db), cwd=ROOT, check=True, capture_output=True, text=True)
            all_results[db].append(json.loads(out.stdout.strip().splitlines()[-1]))
    if args.rates:
        sys.path.insert(0, str(ROOT))  # run as a script, this process has only benchmarks/ on its path
        from benchmarks.rates import report as rates_report  # here: after the path is set

        print(rates_report(all_results, summarise))
    elif args.io:
        sys.path.insert(0, str(ROOT))
        from benchmarks.waiting import report as io_report

        print(io_report(all_results, summarise))
    elif args.telemetry:
        sys.path.insert(0, str(ROOT))
        from benchmarks.telemetry import report as telemetry_report  # here: after the path is set

        print(telemetry_report(all_results, summarise))
    else:
        print(scale_report(all_results, args.scale) if args.scale else report(all_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
