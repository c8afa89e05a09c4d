"""The benchmark's telemetry rows (``bench.py --telemetry``): what OpenTelemetry tracing and metrics cost the
no-op drain (B1), measured against the drain with them off in the same run, the variants interleaved
(off, SDK, API, off, SDK, API, ...) so the machine's drift falls on all of them alike.

- off: ``SCHEDULED_ACTIONS_TELEMETRY=False`` (the worker's path is the one without the extra).
- API only: telemetry on, ``opentelemetry-api`` installed, no SDK configured (its no-op provider).
- SDK: telemetry on, the SDK configured with exporters that drop everything (benchmarks/otel.py): every
  job span is made, batched and handed over; the metrics are recorded and collected every second.
"""

from __future__ import annotations

import statistics
from typing import Any

REPEAT = 3
VARIANTS = {
    "off": {"SCHEDULED_ACTIONS_TELEMETRY": "false"},
    "sdk": {"BENCH_OTEL_SDK": "1"},
    "api": {},
}
LABELS = [
    ("mutation_off_per_s", "drain no-op mutations, 1 worker, telemetry off/s"),
    ("mutation_sdk_per_s", "  the same, tracing and metrics on (SDK, dropping exporters)/s"),
    ("mutation_sdk_ratio", "  on (SDK) / off"),
    ("mutation_api_per_s", "  the same, telemetry on, API only (no SDK)/s"),
    ("mutation_api_ratio", "  on (API only) / off"),
    ("action_off_per_s", "drain no-op actions, 1 worker, telemetry off/s"),
    ("action_sdk_per_s", "  the same, tracing and metrics on (SDK, dropping exporters)/s"),
    ("action_sdk_ratio", "  on (SDK) / off"),
    ("action_api_per_s", "  the same, telemetry on, API only (no SDK)/s"),
    ("action_api_ratio", "  on (API only) / off"),
]


def measure_telemetry(db: str, drain: int, repeat: int = REPEAT) -> dict[str, float]:
    from benchmarks import bench  # the helpers (bench.py runs this after django.setup())

    results: dict[str, float] = {}
    for kind in ("mutation", "action"):
        rates: dict[str, list[float]] = {variant: [] for variant in VARIANTS}
        bench.measure_drain(db, kind, 1, drain)  # a warm-up drain: caches, the table's first pages
        for _ in range(repeat):
            for variant, env in VARIANTS.items():
                rates[variant].append(bench.measure_drain(db, kind, 1, drain, **env)[f"steady_{kind}_1w_per_s"])
        for variant, values in rates.items():
            results[f"{kind}_{variant}_per_s"] = statistics.median(values)
        for variant in ("sdk", "api"):
            results[f"{kind}_{variant}_ratio"] = results[f"{kind}_{variant}_per_s"] / results[f"{kind}_off_per_s"]
    return results


def report(all_results: dict[str, list[dict[str, Any]]], summarise: Any) -> str:
    dbs = list(all_results)
    lines = [
        f"| metric (each run: the median of {REPEAT} interleaved drains) | "
        + " | ".join(f"{db} (n={len(all_results[db])})" for db in dbs)
        + " |",
        "|---|" + "---|" * len(dbs),
    ]
    for key, label in LABELS:
        cells = [summarise([r[key] for r in all_results[db]]) if all_results[db] else "-" for db in dbs]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
