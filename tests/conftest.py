"""Shared fixtures. One test body runs on every database: DATABASE_URL picks it (SQLite by default).
Helpers are in tests/support; the tiers are folders: unit (no database), db, process, browser, chaos."""

from __future__ import annotations

import pytest
from django.db import connection

pytest_plugins = ["tests.support.fixtures"]


@pytest.fixture
def vendor() -> str:
    return connection.vendor
