"""Settings for the benchmark: the production-like defaults (DEBUG off, no INFO logging)."""

import environ

from tests.settings import *  # noqa: F403

env = environ.Env()
DEBUG = False
BENCH_SQLITE = BASE_DIR.parent / "build" / "bench.sqlite3"  # noqa: F405
DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{BENCH_SQLITE}")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20}
SCHEDULED_ACTIONS_POLL_INTERVAL = env.float("SCHEDULED_ACTIONS_POLL_INTERVAL", default=1.0)
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "loggers": {"django_scheduled_actions": {"level": "WARNING"}},
}
# bench.py --telemetry: the drains with telemetry off, on with the API alone, and on with the SDK
SCHEDULED_ACTIONS_TELEMETRY = env.bool("SCHEDULED_ACTIONS_TELEMETRY", default=True)
if env("BENCH_OTEL_SDK", default=""):  # "1": traces and metrics; or "traces", "metrics"
    from benchmarks.otel import install

    install("traces,metrics" if env("BENCH_OTEL_SDK") == "1" else env("BENCH_OTEL_SDK"))
