"""The chaos suite's short run (CI: ``scripts/test.sh`` stage ``chaos``): every scenario on each database it
applies to, against the suite's own servers (set up on first use, stopped at the end of the session).
The whole run, full length, is ``python -m tests.chaos`` (``make chaos``)."""

from __future__ import annotations

import pytest

from .driver import exclusive, format_table, prepare, run_scenarios, stop_servers
from .scenarios import SCENARIOS

pytestmark = pytest.mark.chaos
RESULTS: list[dict] = []  # printed as a table at the end of the session (tests/chaos/conftest.py)


@pytest.fixture(scope="session")
def chaos_server():
    prepared: set[str] = set()

    def ready(vendor: str) -> None:
        if vendor not in prepared:
            prepare(vendor)
            prepared.add(vendor)

    with exclusive():  # one chaos run at a time on this machine: they would share the servers
        try:
            yield ready
        finally:
            stop_servers()


@pytest.mark.parametrize(
    ("name", "vendor"),
    [(s.name, v) for v in ("postgres", "mysql") for s in SCENARIOS if v in s.vendors],
    ids=lambda value: value,
)
def test_nothing_is_lost_or_doubled(chaos_server, name, vendor):
    chaos_server(vendor)
    rows = run_scenarios(vendor, [name], short=True)
    RESULTS.extend(rows)
    problems = [f"{row['scenario']} ({row['db']}): {text}" for row in rows for text in row["violations"]]
    assert not problems, format_table(rows) + "\n" + "\n".join(problems)
