"""``python -m tests.chaos [--short] [--db postgres --db mysql] [--scenario NAME ...] [--keep-servers]``:
sets up the suite's own servers, runs the scenarios, prints the table, stops the servers."""

from __future__ import annotations

import argparse
import sys

from .driver import exclusive, format_table, prepare, run_scenarios, stop_servers
from .scenarios import SCENARIOS


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.chaos", description=__doc__)
    parser.add_argument("--short", action="store_true", help="the short fault durations of the CI run")
    parser.add_argument("--db", action="append", choices=["postgres", "mysql"], help="default: both")
    parser.add_argument("--scenario", action="append", help="default: every scenario")
    parser.add_argument("--keep-servers", action="store_true", help="leave the chaos servers running")
    options = parser.parse_args(argv)
    results = []
    with exclusive():
        try:
            for vendor in options.db or ["postgres", "mysql"]:
                names = [
                    s.name
                    for s in SCENARIOS
                    if vendor in s.vendors
                    and (not options.scenario or s.name in options.scenario or s.label(vendor) in options.scenario)
                ]
                if not names:
                    continue
                prepare(vendor)
                results += run_scenarios(vendor, names, short=options.short, stream=True)
        finally:
            if not options.keep_servers:
                stop_servers()
    print(format_table(results))
    for row in results:
        for text in row["violations"]:
            print(f"{row['scenario']} ({row['db']}): {text}")
    return 0 if results and not any(row["violations"] for row in results) else 1


if __name__ == "__main__":
    sys.exit(main())
