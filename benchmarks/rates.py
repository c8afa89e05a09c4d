"""The benchmark's rate limit rows (``bench.py --rates``): how close a rate-limited function's drain comes
to its rate, and what a limited function's backlog costs the claims of the others.

- A rate-limited drain: ``n`` no-op mutations with ``rate_limit="100/s"`` (``tests/app/rate_functions.py``)
  drained by two workers. The first 100 start at once (the burst); the rest can start no faster than the
  rate, so the measured rate is ``(n - 100) / (last start - first start)``, against the allowed 100/s.
- The unlimited drain (no-op mutations, one worker) without any limit registered, then with the rate-limited
  functions registered in the worker and 1,000 jobs of one of them (``2/m``) waiting beside: every claim
  then also opens the limited functions' buckets.
"""

from __future__ import annotations

from typing import Any

RATE = 100.0  # fast_rate's rate_limit="100/s"
BACKLOG = 1000

LABELS = [
    ("rated_drain_per_s", "drain of a rate-limited no-op mutation (100/s), 2 workers, starts/s"),
    ("rated_drain_pct", "  as % of its allowed rate"),
    ("unlimited_per_s", "drain no-op mutations, 1 worker, no limit registered/s"),
    ("unlimited_beside_limited_per_s", "  the same beside 1,000 jobs waiting on a 2/m function/s"),
    ("beside_ratio", "  ratio (1.0: the limited backlog costs the others nothing)"),
]


def measure_rates(db: str, n: int, drain: int) -> dict[str, float]:
    from benchmarks import bench  # the helpers (bench.py runs this after django.setup())
    from tests.app import rate_functions as rf

    rated = rf.enable_rates()
    try:
        results = rated_drain(db, rated.fast_rate, n)
        plain = bench.measure_drain(db, "mutation", 1, drain)["steady_mutation_1w_per_s"]
        beside = bench.measure_drain(
            db, "mutation", 1, drain, backlog=lambda: backlog(rated.slow_rate), SA_TEST_RATES="1"
        )["steady_mutation_1w_per_s"]
    finally:
        rf.disable_rates(rated)
    return {
        **results,
        "unlimited_per_s": plain,
        "unlimited_beside_limited_per_s": beside,
        "beside_ratio": beside / plain,
    }


def rated_drain(db: str, fn: Any, n: int) -> dict[str, float]:
    from django.db import transaction
    from django.db.models import Max, Min

    from benchmarks import bench
    from django_scheduled_actions import scheduler
    from django_scheduled_actions.models import RateLimitBucket, ScheduledFunction

    ScheduledFunction.objects.exclude(name=bench.FILLER).delete()
    RateLimitBucket.objects.all().delete()
    with transaction.atomic():
        ids = [scheduler.run_after(0, fn, {"i": i}) for i in range(n)]
    done = ScheduledFunction.objects.filter(pk__in=ids, state="success")
    procs = [bench.start_worker(db, SA_TEST_RATES="1") for _ in range(2)]
    try:
        bench.wait_for(lambda: done.count() == n, timeout=max(120.0, 3 * n / RATE))
    finally:
        bench.stop(procs)
    span = done.aggregate(first=Min("started_at"), last=Max("started_at"))
    measured = (n - RATE) / (span["last"] - span["first"]).total_seconds()
    return {"rated_drain_per_s": measured, "rated_drain_pct": 100 * measured / RATE}


def backlog(fn: Any) -> None:
    from django.db import transaction

    from django_scheduled_actions import scheduler

    with transaction.atomic():
        for i in range(BACKLOG):
            scheduler.run_after(0, fn, {"i": i})


def report(all_results: dict[str, list[dict[str, float]]], summarise: Any) -> str:
    dbs = list(all_results)
    lines = ["| rate limits | " + " | ".join(f"{db} (n={len(all_results[db])})" for db in dbs) + " |"]
    lines.append("|---|" + "---|" * len(dbs))
    for key, label in LABELS:
        lines.append(f"| {label} | " + " | ".join(summarise([r[key] for r in all_results[db]]) for db in dbs) + " |")
    return "\n".join(lines)
