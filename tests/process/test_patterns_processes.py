"""The real-worker-process tests of tests/db/test_patterns.py (same fixtures and helpers)."""

from __future__ import annotations

import signal

import pytest
from django.core.management import call_command

from tests.db.test_patterns import EXPECTED, demo_progress, outcomes
from tests.support import start_worker, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.mark.process
def test_the_demo_seed_with_a_real_worker(provider, tmp_path):
    call_command("patterns_seed", stdout=open("/dev/null", "w"))  # noqa: SIM115
    worker = start_worker(
        "--concurrency", "4", "--no-crons", log=tmp_path / "worker.log", PATTERNS_PROVIDER_URL=provider.url
    )
    try:
        wait_until(
            lambda: outcomes() == EXPECTED,
            timeout=90,
            message="every pattern of the demo to finish",
            describe=demo_progress,
        )
    finally:
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(30) == 0, (tmp_path / "worker.log").read_text()
