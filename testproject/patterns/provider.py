"""The HTTP client the actions use to call the provider (``settings.PATTERNS_PROVIDER_URL``)."""

from __future__ import annotations

from typing import Any

import requests
from django.conf import settings

DEFAULT_URL = "http://127.0.0.1:8000"
TIMEOUT = 10.0
PERMANENT = {400, 402, 404, 409, 422}  # retrying cannot help


class ProviderError(Exception):
    """The provider could not be reached or said no; ``retryable`` tells the two apart."""

    def __init__(self, message: str, status: int | None = None):
        super().__init__(message)
        self.status = status
        self.retryable = status not in PERMANENT


def base_url() -> str:
    return getattr(settings, "PATTERNS_PROVIDER_URL", DEFAULT_URL).rstrip("/")


def call(
    method: str, path: str, payload: dict[str, Any] | None = None, *, idempotency_key: str | None = None
) -> dict[str, Any]:
    headers = {"Authorization": "Bearer demo-not-a-secret"}
    if idempotency_key:
        headers["Idempotency-Key"] = idempotency_key
    url = f"{base_url()}/fake-provider/{path}"
    try:
        response = requests.request(method, url, json=payload, headers=headers, timeout=TIMEOUT)
    except requests.RequestException as exc:
        raise ProviderError(f"{method} {url}: {exc}") from exc
    if not response.ok:
        raise ProviderError(f"{method} {url}: HTTP {response.status_code} {response.text[:200]}", response.status_code)
    return response.json()


def post(path: str, payload: dict[str, Any], *, idempotency_key: str | None = None) -> dict[str, Any]:
    return call("POST", path, payload, idempotency_key=idempotency_key)


def get(path: str) -> dict[str, Any]:
    return call("GET", path)


def delete(path: str) -> dict[str, Any]:
    return call("DELETE", path)
