"""Public functions over HTTP: ``POST <prefix>/<registered name>`` with a JSON object of arguments.

Queries may also be called with ``GET ?args=<JSON object>``. Every response is JSON:
``{"status": "success", "value": ...}`` or ``{"status": "error", "error": {"code": ..., "message": ...}}``.
Internal functions answer exactly as a name that is not registered at all: 404.

``call_function`` is a plain Django view: CSRF middleware protects it, authentication middleware
supplies ``request.user`` (passed to the function as ``ctx.auth``), and it runs outside
``ATOMIC_REQUESTS`` because each function owns its transaction. ``endpoint``, what the app's URLs
mount, is the same view checking CSRF itself, with Django's middleware, so that a failure answers in
JSON like every other error (403 ``csrf_failed``) while other URLs keep the project's
``CSRF_FAILURE_VIEW``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import traceback
from typing import Any

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.core.signals import got_request_exception
from django.db import transaction
from django.http import HttpRequest, JsonResponse
from django.middleware.csrf import CsrfViewMiddleware
from django.utils.cache import add_never_cache_headers
from django.utils.decorators import decorator_from_middleware
from django.utils.log import log_response
from django.views.decorators.csrf import csrf_exempt

from .calls.run import run_action, run_mutation, run_query
from .conf import app_settings
from .core.auth import Auth
from .core.registry import Function, registry
from .exceptions import (
    ArgumentValidationError,
    FunctionNotFound,
    IdempotencyKeyInProgress,
    IdempotencyKeyReused,
    RateLimited,
    Unauthenticated,
)

logger = logging.getLogger("django_scheduled_actions")
csrf_logger = logging.getLogger("django.security.csrf")

RUNNERS = {"query": run_query, "mutation": run_mutation, "action": run_action}
ALLOWED_METHODS = {"query": ("GET", "POST"), "mutation": ("POST",), "action": ("POST",)}
MAX_KEY_LENGTH = 200


class HttpError(Exception):
    """A request the view answers with an error status instead of running the function."""

    def __init__(self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **details: Any):
        super().__init__(message)
        self.status = status
        self.code = code
        self.headers = headers or {}
        self.details = details

    def response(self) -> JsonResponse:
        response = respond(
            self.status, {"status": "error", "error": {"code": self.code, "message": str(self), **self.details}}
        )
        for header, value in self.headers.items():
            response[header] = value
        return response


def respond(status: int, body: dict[str, Any]) -> JsonResponse:
    response = JsonResponse(body, status=status)
    add_never_cache_headers(response)
    return response


@transaction.non_atomic_requests
def call_function(request: HttpRequest, name: str) -> JsonResponse:
    """Run the public function registered as ``name`` with the request's arguments and user."""
    try:
        fn = public_function(name)
        check_method(request, fn)
        args = read_args(request, fn)
        auth = request_auth(request)
        key = idempotency_key(request, fn, auth)
    except HttpError as exc:
        return exc.response()
    return run(request, fn, args, auth, key)


class JsonCsrfCheck(CsrfViewMiddleware):
    """Django's CSRF check, answering a failure as the view answers errors, logged as Django logs one."""

    def _reject(self, request: HttpRequest, reason: str) -> JsonResponse:
        response = HttpError(403, "csrf_failed", f"CSRF verification failed: {reason}").response()
        log_response("Forbidden (%s): %s", reason, request.path, response=response, request=request, logger=csrf_logger)
        return response


endpoint = csrf_exempt(decorator_from_middleware(JsonCsrfCheck)(call_function))
endpoint.__doc__ = """``call_function`` checking CSRF itself (the middleware leaves it alone): failures in JSON."""


def public_function(name: str) -> Function:
    """The public function called ``name``; internal and unknown names raise the same 404."""
    try:
        fn = registry.get(name)
    except FunctionNotFound:
        fn = None
    if fn is None or fn.visibility != "public":
        raise HttpError(404, "not_found", "no public function is registered under this name")
    return fn


def check_method(request: HttpRequest, fn: Function) -> None:
    allowed = ALLOWED_METHODS[fn.kind]
    if request.method not in allowed:
        raise HttpError(
            405,
            "method_not_allowed",
            f"call a {fn.kind} with {' or '.join(allowed)}",
            headers={"Allow": ", ".join(allowed)},
        )


def read_args(request: HttpRequest, fn: Function) -> dict[str, Any]:
    """Parse and validate the JSON arguments; return the Python values the function receives."""
    raw = request.GET.get("args", "").encode() if request.method == "GET" else read_body(request)
    check_size(len(raw))
    data = parse_json(raw) if raw.strip() else {}
    if not isinstance(data, dict):
        raise HttpError(400, "invalid_json", f"the arguments must be a JSON object, got {type(data).__name__}")
    try:
        return fn.validator.to_python(fn.validator.to_json(data, from_json=True))
    except ArgumentValidationError as exc:
        raise HttpError(400, "invalid_arguments", str(exc), argument=exc.argument) from None


def read_body(request: HttpRequest) -> bytes:
    try:
        check_size(int(request.META.get("CONTENT_LENGTH") or 0))
    except ValueError:
        raise HttpError(400, "invalid_request", "Content-Length is not a number") from None
    try:
        return request.body
    except RequestDataTooBig:
        raise HttpError(
            413, "too_large", "the request body is larger than Django's DATA_UPLOAD_MAX_MEMORY_SIZE"
        ) from None


def check_size(size: int) -> None:
    limit = app_settings.MAX_ARGS_BYTES
    if size > limit:
        raise HttpError(
            413,
            "too_large",
            f"the arguments are {size} bytes, over the limit of {limit} (SCHEDULED_ACTIONS_MAX_ARGS_BYTES)",
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def parse_json(raw: bytes) -> Any:
    try:
        return json.loads(raw, parse_constant=_reject_constant)
    except (ValueError, RecursionError) as exc:
        raise HttpError(400, "invalid_json", f"the arguments are not valid JSON: {exc}") from None


def request_auth(request: HttpRequest) -> Auth:
    """The request's user as ``ctx.auth``, loaded now: an action body may not touch the database."""
    user = getattr(request, "user", None)
    return Auth(user if user is not None and user.is_authenticated else None)


def idempotency_key(request: HttpRequest, fn: Function, auth: Auth) -> str | None:
    """The ``Idempotency-Key`` header, scoped to the caller and the function (ignored for queries)."""
    key = request.headers.get("Idempotency-Key")
    if key is None or fn.kind == "query":
        return None
    if not key or len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise HttpError(
            400, "invalid_idempotency_key", f"Idempotency-Key must be 1 to {MAX_KEY_LENGTH} printable ASCII characters"
        )
    caller = f"user:{auth.user.pk}" if auth.is_authenticated else "anonymous"
    digest = hashlib.sha256("\n".join((caller, fn.name, key)).encode()).hexdigest()
    return f"http:{digest}"


def run(request: HttpRequest, fn: Function, args: dict[str, Any], auth: Auth, key: str | None) -> JsonResponse:
    options: dict[str, Any] = {"auth": auth}
    if key is not None:
        options["idempotency_key"] = key
    try:
        value = RUNNERS[fn.kind](fn, args, **options)
    except Unauthenticated as exc:
        return HttpError(401, "unauthenticated", str(exc) or "sign in to call this function").response()
    except PermissionDenied as exc:
        return HttpError(403, "permission_denied", str(exc) or "permission denied").response()
    except IdempotencyKeyInProgress:
        return HttpError(
            409,
            "in_progress",
            "a call with this Idempotency-Key is still running; retry later",
            headers={"Retry-After": "1"},
        ).response()
    except RateLimited as exc:
        return HttpError(
            429,
            "rate_limited",
            str(exc),
            headers={"Retry-After": str(math.ceil(exc.retry_after))},
            retry_after=exc.retry_after,
        ).response()
    except IdempotencyKeyReused:
        return HttpError(
            422,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a call with other arguments; send a new key for a new call",
        ).response()
    except Exception as exc:
        return server_error(request, fn, exc)
    return respond(200, {"status": "success", "value": value})


def server_error(request: HttpRequest, fn: Function, exc: Exception) -> JsonResponse:
    """A 500 that hides the error unless DEBUG; logged and signalled like any failing Django view."""
    logger.error("function failed over HTTP name=%s error=%r", fn.name, exc, exc_info=exc)
    got_request_exception.send(sender=None, request=request)
    error: dict[str, Any] = {"code": "server_error", "message": "the function failed"}
    if settings.DEBUG:
        error["message"] = f"{type(exc).__name__}: {exc}"
        error["traceback"] = "".join(traceback.format_exception(exc))
    return respond(500, {"status": "error", "error": error})
