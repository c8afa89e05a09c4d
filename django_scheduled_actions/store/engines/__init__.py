"""One engine per database, chosen once per alias: every batched or vendor-specific read and write of the
job tables, the session bounds and the clock query. ``Engine`` (base.py) is the portable one (the ORM,
SQLite); ``PostgreSQL`` and ``MySQL`` (MariaDB too) override what their server does better or differently,
PostgreSQL's statements named in postgresql.sql with their planner notes.

Callers ask ``engine(using)`` and never test a vendor themselves."""

from __future__ import annotations

from django.db import connections

from .base import Engine, MutationRow
from .mysql import MySQL
from .postgresql import PostgreSQL

__all__ = ["Engine", "MutationRow", "engine"]

ENGINES: dict[str, type[Engine]] = {"postgresql": PostgreSQL, "mysql": MySQL}
_chosen: dict[str, Engine] = {}


def engine(using: str) -> Engine:
    """The engine of the database alias ``using`` (chosen the first time, by the alias's vendor)."""
    try:
        return _chosen[using]
    except KeyError:
        return _chosen.setdefault(using, ENGINES.get(connections[using].vendor, Engine)(using))
