"""The chaos suite: real workers under faults (kills, database restarts, killed connections, connection
limits, long transactions, clock edge cases) on the suite's own PostgreSQL and MariaDB servers.

``python -m tests.chaos`` (``make chaos``) runs every scenario at full length and prints the table;
``pytest -m chaos`` runs a short version of each (tests/chaos/test_chaos.py). See
docs/explanation/failure-model.md.
"""
