"""The benchmark's I/O-bound rows (``bench.py --io``): jobs that wait on the network, as the shared
harness's test E measures them, with the connections the worker holds and its memory. (Not named io.py:
run as a script, bench.py's folder comes first on the path, and that would shadow the standard library's.)

Each job waits 50 ms (``time.sleep`` for a sync action, ``asyncio.sleep`` for an async one), then records
one row through ``ctx.run_mutation`` (the sync one also runs a ``ctx.run_query`` first):
``tests/app/async_functions.py`` ``waits_then_records_sync`` / ``waits_then_records``. One worker process,
``--db-connections 8``:

- sync, ``--concurrency 200``;
- async, ``--async-concurrency 200``;
- async, ``--async-concurrency 1000`` (five times the jobs).

Beside each, in the same run, its ceiling: ``in flight / 50 ms``, what the drain would reach if the
bookkeeping cost nothing; the ratio to it says how much of the worker's capacity goes to its own work.
Connections are sampled every 50 ms in ``pg_stat_activity`` / MariaDB's processlist during the drain.
"""

from __future__ import annotations

import time

WAIT = 0.05
CONNECTIONS = 8
VARIANTS = [  # (name, function, worker options, in flight, jobs per `drain` of the sizes)
    ("sync_200", "waits_then_records_sync", ["--concurrency", "200"], 200, 1),
    ("async_200", "waits_then_records", ["--async-concurrency", "200"], 200, 1),
    ("async_1000", "waits_then_records", ["--async-concurrency", "1000"], 1000, 5),
]

LABELS = [
    row
    for name, _fn, options, flight, _times in VARIANTS
    for row in (
        (f"io_{name}_per_s", f"drain of 50 ms I/O-bound actions, {' '.join(options)}, 1 worker/s"),
        (
            f"io_{name}_ceiling_ratio",
            f"  as a share of its ceiling ({flight} in flight / 50 ms = {flight / WAIT:,.0f}/s)",
        ),
        (f"io_{name}_connections", f"  connections held at most (--db-connections {CONNECTIONS})"),
        (f"io_{name}_rss_mb", "  worker peak RSS, MB"),
    )
]


def measure_io(db: str, drain: int) -> dict[str, float]:
    results: dict[str, float] = {}
    for name, fn_name, options, flight, times in VARIANTS:
        rate, peak, rss = io_drain(db, fn_name, options, drain * times)
        results |= {
            f"io_{name}_per_s": rate,
            f"io_{name}_ceiling_ratio": rate / (flight / WAIT),
            f"io_{name}_connections": float(peak),
            f"io_{name}_rss_mb": rss,
        }
    return results


def io_drain(db: str, fn_name: str, options: list[str], n: int) -> tuple[float, int, float]:
    """Drain ``n`` jobs of ``fn_name`` with one worker; (jobs/s from the first start to the last completion,
    the most connections the worker held at once, its peak RSS in MB)."""
    from django.db import connection
    from django.db.models import Max, Min

    from benchmarks import bench
    from django_scheduled_actions import scheduler
    from django_scheduled_actions.models import ScheduledFunction
    from tests.app import async_functions as af
    from tests.app.models import Effect
    from tests.support.connections import other_connections

    ScheduledFunction.objects.exclude(name=bench.FILLER).delete()
    Effect.objects.all().delete()
    scheduler.run_many(getattr(af, fn_name), [{"i": i, "wait": WAIT} for i in range(n)])
    bench.analyze()
    before = ScheduledFunction.objects.aggregate(first=Min("pk"))["first"] - 1
    done = ScheduledFunction.objects.filter(pk__gt=before, state="success")
    baseline = other_connections() if connection.vendor != "sqlite" else 0
    proc = bench.start_worker(db, *options, "--db-connections", str(CONNECTIONS))
    peak = 0
    try:
        deadline = time.monotonic() + max(120.0, n / 20)
        while done.count() < n:
            if time.monotonic() > deadline or proc.poll() is not None:
                raise TimeoutError(f"the I/O drain of {fn_name} did not finish (the worker exited: {proc.poll()})")
            if connection.vendor != "sqlite":
                peak = max(peak, other_connections() - baseline)
            time.sleep(0.05)
        rss = bench.peak_rss_mb(proc)
    finally:
        bench.stop([proc])
    if Effect.objects.count() != n:
        raise AssertionError(f"{Effect.objects.count()} effects recorded for {n} jobs")
    span = done.aggregate(first=Min("started_at"), last=Max("completed_time"))
    return bench.rate(n, (span["last"] - span["first"]).total_seconds()), peak, rss


def report(all_results: dict[str, list[dict[str, float]]], summarise) -> str:
    dbs = list(all_results)
    lines = ["| metric | " + " | ".join(f"{db} (n={len(all_results[db])})" for db in dbs) + " |"]
    lines.append("|---|" + "---|" * len(dbs))
    for key, label in LABELS:
        cells = []
        for db in dbs:
            values = [r[key] for r in all_results[db]]
            cells.append("-" if db == "sqlite" and key.endswith("_connections") else summarise(values))
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
