from __future__ import annotations


def pytest_terminal_summary(terminalreporter):
    from .driver import format_table
    from .test_chaos import RESULTS

    if RESULTS:
        terminalreporter.write_sep("=", "chaos")
        terminalreporter.write_line(format_table(RESULTS))
