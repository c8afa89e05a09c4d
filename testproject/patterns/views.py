"""The fake provider: an email API, a payment API with idempotency keys, subscriptions, a processing API
and a data feed, served by the project itself. ``ProviderFailure`` rows (editable in the admin) make an
endpoint answer 503; a ``tok_declined`` payment source is declined with 402."""

from __future__ import annotations

import json
import random
import uuid
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from .models import ProviderFailure, ProviderRecord


def _body(request: HttpRequest) -> dict[str, Any]:
    try:
        body = json.loads(request.body or b"{}")
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _unavailable(endpoint: str) -> JsonResponse | None:
    """A 503 when the endpoint is set to fail (the next N calls, or at random)."""
    failures = ProviderFailure.objects.filter(endpoint=endpoint)
    if failures.filter(fail_next__gt=0).update(fail_next=F("fail_next") - 1):
        return JsonResponse({"error": "service unavailable (fail_next)"}, status=503)
    rate = failures.values_list("failure_rate", flat=True).first() or 0.0
    if random.random() < rate:
        return JsonResponse({"error": "service unavailable (failure_rate)"}, status=503)
    return None


def _store(kind: str, data: dict[str, Any], key: str | None = None) -> ProviderRecord:
    """Store a record; a repeated idempotency key returns the first record (as Stripe does)."""
    if key:
        existing = ProviderRecord.objects.filter(kind=kind, idempotency_key=key).first()
        if existing:
            return existing
    try:
        with transaction.atomic():
            return ProviderRecord.objects.create(
                kind=kind, external_id=f"{kind[:3]}_{uuid.uuid4().hex[:14]}", idempotency_key=key or None, data=data
            )
    except IntegrityError:  # a concurrent request with the same key won
        return ProviderRecord.objects.get(kind=kind, idempotency_key=key)


@csrf_exempt
@require_POST
def email(request: HttpRequest) -> JsonResponse:
    body = _body(request)
    if not body.get("to") or not body.get("subject"):
        return JsonResponse({"error": "to and subject are required"}, status=400)
    if failure := _unavailable("email"):
        return failure
    record = _store("email", body, request.headers.get("Idempotency-Key"))
    return JsonResponse({"id": record.external_id})


@csrf_exempt
@require_POST
def charges(request: HttpRequest) -> JsonResponse:
    body, key = _body(request), request.headers.get("Idempotency-Key")
    if not isinstance(body.get("amount"), int) or body["amount"] <= 0:
        return JsonResponse({"error": "amount must be a positive integer (cents)"}, status=400)
    if key and (done := ProviderRecord.objects.filter(kind="charge", idempotency_key=key).first()):
        return JsonResponse({"id": done.external_id, "amount": done.data["amount"], "replayed": True})
    if body.get("source") == "tok_declined":
        return JsonResponse({"error": "card_declined"}, status=402)
    if failure := _unavailable("charges"):
        return failure
    record = _store("charge", body, key)
    return JsonResponse({"id": record.external_id, "amount": body["amount"]})


@csrf_exempt
@require_POST
def subscriptions(request: HttpRequest) -> JsonResponse:
    body = _body(request)
    if not body.get("customer") or not body.get("plan"):
        return JsonResponse({"error": "customer and plan are required"}, status=400)
    if failure := _unavailable("subscriptions"):
        return failure
    record = _store("subscription", body, request.headers.get("Idempotency-Key"))
    return JsonResponse({"id": record.external_id, "status": record.status})


@csrf_exempt
@require_http_methods(["DELETE"])
def subscription(request: HttpRequest, external_id: str) -> JsonResponse:
    if not ProviderRecord.objects.filter(kind="subscription", external_id=external_id).update(status="canceled"):
        return JsonResponse({"error": "no such subscription"}, status=404)
    return JsonResponse({"id": external_id, "status": "canceled"})


@csrf_exempt
@require_POST
def process(request: HttpRequest) -> JsonResponse:
    body = _body(request)
    if failure := _unavailable("process"):
        return failure
    record = _store("process", body, request.headers.get("Idempotency-Key"))
    return JsonResponse({"id": record.external_id, "result": {"processed": body, "size": len(json.dumps(body))}})


@require_GET
def data(request: HttpRequest) -> JsonResponse:
    if failure := _unavailable("data"):
        return failure
    return JsonResponse({"items": [{"id": f"ext-{n}", "value": {"n": n, "square": n * n}} for n in range(1, 6)]})
