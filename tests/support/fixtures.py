"""Fixtures shared by the db and process tiers (registered by tests/conftest.py)."""

from __future__ import annotations

import pytest
from patterns.models import ProviderFailure, ProviderRecord

from tests.app import orchestration_functions as of
from tests.app import rate_functions as rf


@pytest.fixture
def limited():
    functions = of.enable_limits()
    yield functions
    of.disable_limits(functions)


@pytest.fixture
def rated():
    functions = rf.enable_rates()
    yield functions
    rf.disable_rates(functions)


@pytest.fixture
def provider(live_server, settings):
    """The fake provider, served by the live server; ``provider.fail(endpoint, n)`` fails its next n calls."""
    settings.PATTERNS_PROVIDER_URL = live_server.url

    class Provider:
        url = live_server.url

        @staticmethod
        def fail(endpoint: str, times: int = 1) -> None:
            ProviderFailure.objects.update_or_create(endpoint=endpoint, defaults={"fail_next": times})

        @staticmethod
        def records(kind: str) -> list[ProviderRecord]:
            return list(ProviderRecord.objects.filter(kind=kind).order_by("id"))

    return Provider
