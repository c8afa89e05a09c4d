"""Benchmark: durable workflows, per database, beside the hand-written chain and the no-op drain.

    python benchmarks/workflows.py                  # SQLite, PostgreSQL and MariaDB, 3 runs each
    python benchmarks/workflows.py --db postgres --runs 5
    python benchmarks/workflows.py --smoke          # tiny sizes: checks the benchmark works (CI)

Measured with one real ``manage.py runworker --concurrency 4`` process:

- 1,000 workflows of 5 no-op mutation steps started in one transaction, then drained: workflows/s and
  steps/s, beside chains of 5 scheduling mutations (bench.py) and no-op mutations in the same run;
- ``workflows.start`` to the first step's start, p50/p99, one at a time at 10/s with the worker idle;
- the journal's rows and bytes per step (PostgreSQL: the tables' total size, indexes included);
- the CPU an idle worker spends with 10,000 runs asleep in ``step.sleep(timedelta(days=30))``, beside
  the same worker with none.

DBOS (the durable-workflow library for Python on PostgreSQL) is measured beside it by the shared harness's
test W (docs/explanation/performance.md). The machine is shared and noisy: compare ratios within one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from benchmarks import bench  # noqa: E402

SIZES = {
    "full": {"runs": 1000, "steps": 5, "latency": 50, "sleeping": 10000, "drain": 5000, "idle_seconds": 10},
    "smoke": {"runs": 20, "steps": 3, "latency": 5, "sleeping": 100, "drain": 100, "idle_seconds": 2},
}
LABELS = [
    ("workflows_per_s", "workflows of no-op mutation steps (5; smoke: 3) drained, 1 worker, runs/s"),
    ("steps_per_s", "... their steps/s"),
    ("drain_chain_per_s", "baseline: chains of scheduling mutations, steps/s"),
    ("drain_mutation_1w_per_s", "baseline: no-op mutations drained/s"),
    ("first_step_p50_ms", "workflows.start -> first step start p50, ms"),
    ("first_step_p99_ms", "workflows.start -> first step start p99, ms"),
    ("journal_rows_per_step", "journal rows per step (runs + steps)"),
    ("journal_bytes_per_step", "journal bytes per step (PostgreSQL, indexes included)"),
    ("idle_cpu_empty_pct", "idle worker CPU, no runs, % of a core"),
    ("idle_cpu_sleeping_pct", "idle worker CPU, runs asleep, % of a core"),
]


def cpu_percent(proc: subprocess.Popen, seconds: float) -> float:
    def ticks() -> int:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime

    before = ticks()
    time.sleep(seconds)
    return (ticks() - before) / seconds  # 100 ticks a second = one core


def measure_drain(db: str, runs: int, steps: int) -> dict[str, float]:
    from django.db import transaction
    from django.db.models import Max, Min

    from django_scheduled_actions import workflows
    from django_scheduled_actions.models import ScheduledFunction, WorkflowRun, WorkflowStep
    from tests.app.workflow_functions import noop_steps

    with transaction.atomic():
        for _ in range(runs):
            workflows.start(noop_steps, {"steps": steps})
    bench.analyze()
    launched = time.time()
    proc = bench.start_worker(db)
    done = WorkflowRun.objects.filter(state=WorkflowRun.State.SUCCESS)
    try:
        bench.wait_for(lambda: done.count() == runs, timeout=max(120.0, runs * steps / 5))
    finally:
        bench.stop([proc])
    assert WorkflowStep.objects.count() == runs * steps, "each step journaled once"
    finished = done.aggregate(last=Max("finished_at"), first=Min("created_at"))["last"].timestamp()
    results = {"workflows_per_s": bench.rate(runs, finished - launched)}
    results["steps_per_s"] = results["workflows_per_s"] * steps
    results.update(_journal_size(runs, runs * steps))
    WorkflowRun.objects.all().delete()
    ScheduledFunction.objects.all().delete()
    return results


def _journal_size(runs: int, steps: int) -> dict[str, float]:
    from django.db import connection

    results = {"journal_rows_per_step": (runs + steps) / steps}
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT pg_total_relation_size('scheduled_actions_workflow_run')"
                " + pg_total_relation_size('scheduled_actions_workflow_step')"
            )
            results["journal_bytes_per_step"] = cursor.fetchone()[0] / steps
    return results


def measure_first_step(db: str, n: int) -> dict[str, float]:
    from django_scheduled_actions import workflows
    from django_scheduled_actions.models import ScheduledFunction, WorkflowRun, WorkflowStep
    from tests.app.workflow_functions import noop_steps

    proc = bench.start_worker(db)
    waits = []
    try:
        bench.wait_for(lambda: _worker_ready(), 60)
        for _ in range(n):
            started = time.time()
            run_id = workflows.start(noop_steps, {"steps": 1})
            first = WorkflowStep.objects.filter(run_id=run_id, index=0)
            bench.wait_for(lambda: _first_started(first), 30)  # noqa: B023
            job = ScheduledFunction.objects.get(pk=first.get().job_id)
            waits.append((job.started_at.timestamp() - started) * 1000)
            time.sleep(0.1)
    finally:
        bench.stop([proc])
    WorkflowRun.objects.all().delete()
    ScheduledFunction.objects.all().delete()
    quantiles = statistics.quantiles(waits, n=100, method="inclusive")
    return {"first_step_p50_ms": statistics.median(waits), "first_step_p99_ms": quantiles[98]}


def _worker_ready() -> bool:
    from django_scheduled_actions.models import WorkerProcess

    return WorkerProcess.objects.exists()


def _first_started(first) -> bool:
    from django_scheduled_actions.models import ScheduledFunction

    step = first.first()
    return bool(step and step.job_id and ScheduledFunction.objects.filter(pk=step.job_id, started_at__isnull=False))


def measure_idle(db: str, sleeping: int, seconds: float) -> dict[str, float]:
    from django.db import transaction

    from django_scheduled_actions import workflows
    from django_scheduled_actions.models import WorkflowRun
    from tests.app.workflow_functions import sleeps_a_month

    results = {"idle_cpu_empty_pct": _idle_cpu(db, seconds)}
    with transaction.atomic():
        for _ in range(sleeping):
            workflows.start(sleeps_a_month, {})
    proc = bench.start_worker(db)  # replays each run once, to its sleep
    asleep = WorkflowRun.objects.filter(state=WorkflowRun.State.WAITING)
    try:
        bench.wait_for(lambda: asleep.count() == sleeping, timeout=max(120.0, sleeping / 20))
    finally:
        bench.stop([proc])
    bench.analyze()
    results["idle_cpu_sleeping_pct"] = _idle_cpu(db, seconds)
    return results


def _idle_cpu(db: str, seconds: float) -> float:
    proc = bench.start_worker(db)
    try:
        bench.wait_for(_worker_ready, 60)
        time.sleep(2.0)  # past its start
        return cpu_percent(proc, seconds)
    finally:
        bench.stop([proc])


def run_once(db: str, sizes: dict[str, int]) -> dict[str, float]:
    results = measure_drain(db, sizes["runs"], sizes["steps"])
    results.update(bench.measure_chain(db, sizes["runs"], sizes["steps"]))
    results.update(bench.measure_drain(db, "mutation", 1, sizes["drain"]))
    results.update(measure_first_step(db, sizes["latency"]))
    results.update(measure_idle(db, sizes["sleeping"], sizes["idle_seconds"]))
    return results


def report(all_results: dict[str, list[dict[str, float]]]) -> str:
    dbs = list(all_results)
    lines = ["| metric | " + " | ".join(f"{db} (n={len(all_results[db])})" for db in dbs) + " |"]
    lines.append("|---|" + "---|" * len(dbs))
    for key, label in LABELS:
        cells = [bench.summarise([r[key] for r in all_results[db] if key in r] or [float("nan")]) for db in dbs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    for db in dbs:
        ratios = [r["steps_per_s"] / r["drain_chain_per_s"] for r in all_results[db]]
        lines.append(f"| {db}: workflow steps / chain steps | " + bench.summarise(ratios) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", action="append", choices=list(bench.DATABASES), help="database(s); default all")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, one run: checks the benchmark works")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    sizes = SIZES["smoke" if args.smoke else "full"]
    if args.child:
        bench.setup_django(args.child)
        print(json.dumps(run_once(args.child, sizes)))
        return 0
    all_results: dict[str, list[dict[str, float]]] = {}
    for db in args.db or list(bench.DATABASES):
        all_results[db] = []
        for i in range(1 if args.smoke else args.runs):
            print(f"{db}: run {i + 1}", file=sys.stderr, flush=True)
            bench.recreate_database(db)
            cmd = [sys.executable, __file__, "--child", db] + (["--smoke"] if args.smoke else [])
            out = subprocess.run(cmd, env=bench.env_for(db), cwd=bench.ROOT, check=True, capture_output=True, text=True)
            all_results[db].append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(report(all_results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
