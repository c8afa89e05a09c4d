"""The test project's crons: opt-in, so workers started by other tests never enqueue anything by
themselves. ``SA_TEST_CRONS=1`` (set for the worker processes of tests/process/test_cron_processes.py)
registers a one-second interval cron; without it the demo's crons are dropped as well."""

from __future__ import annotations

import os

from django_scheduled_actions import cron_jobs
from django_scheduled_actions.cron.definitions import cron_registry

from . import cron_functions as cf

EVERY_SECOND = "test: every second"

crons = cron_jobs()
if os.environ.get("SA_TEST_CRONS") == "1":
    crons.interval(EVERY_SECOND, {"seconds": 1}, cf.mark, {"label": EVERY_SECOND})
else:
    cron_registry.discard("demo.crons")
cron_registry.discard("patterns.crons")  # its sync calls the fake provider: tests/db/test_patterns.py runs them
