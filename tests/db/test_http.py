"""Public functions over HTTP (DESIGN §9): statuses, ctx.auth, CSRF, idempotency keys, no internal function."""

from __future__ import annotations

import json
import threading

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import resolve, reverse

from django_scheduled_actions import Auth, Unauthenticated, run_query, views
from django_scheduled_actions.core.registry import registry
from django_scheduled_actions.models import IdempotencyKey, ScheduledFunction, State
from tests.app import functions as f
from tests.app import http_functions as h
from tests.app.models import Counter, Note

User = get_user_model()
JSON = "application/json"
METHODS = ("get", "post", "put", "patch", "delete", "head", "options")


def url(fn) -> str:
    return reverse("scheduled_actions:call", args=[fn if isinstance(fn, str) else fn.name])


def post(client, fn, args=None, **extra):
    return client.post(url(fn), data=json.dumps({} if args is None else args), content_type=JSON, **extra)


def get(client, fn, args=None):
    return client.get(url(fn), {"args": json.dumps(args)} if args is not None else {})


def call(client, method: str, path: str):
    if method in ("get", "head"):
        return getattr(client, method)(path)
    return getattr(client, method)(path, data="{}", content_type=JSON)


def value(response):
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["status"] == "success", body
    return body["value"]


def error(response, status: int) -> dict:
    assert response.status_code == status, response.content
    assert response["Content-Type"] == JSON
    body = response.json()
    assert body["status"] == "error", body
    return body["error"]


@pytest.fixture
def alice(db):
    return User.objects.create_user("alice", password="pw")


@pytest.fixture
def alice_client(alice):
    client = Client()
    client.force_login(alice)
    return client


# --- URLs and success ---


def test_registered_names_with_dots_and_colons_resolve():
    assert url(h.whoami) == "/functions/tests.app.http_functions:whoami"
    match = resolve("/functions/tests.app.http_functions:whoami")
    assert match.kwargs == {"name": "tests.app.http_functions:whoami"}


@pytest.mark.django_db
def test_query_by_get_and_post_anonymous(client):
    anonymous = {"authenticated": False, "username": None, "anonymous_user": True}
    assert value(client.get(url(h.whoami))) == anonymous
    assert value(post(client, h.whoami)) == anonymous
    assert value(client.post(url(h.whoami), data=b"", content_type=JSON)) == anonymous  # no arguments


@pytest.mark.django_db
def test_json_strings_arrive_as_typed_values(client):
    args = {
        "when": "2025-03-30T01:30:00+01:00",
        "day": "2025-03-30",
        "amount": "1.25",
        "id": "12345678-1234-4234-8234-123456789abc",
        "kind": "b",
        "tags": ["x"],
    }
    expected = {
        "when": "2025-03-30T01:30:00+01:00",
        "weekday": 7,
        "double": "2.50",
        "uuid_version": 4,
        "kind": "b",
        "tags": ["x"],
    }
    assert value(post(client, h.describe, args)) == expected
    assert value(get(client, h.describe, args)) == expected


@pytest.mark.django_db
def test_mutation_result_and_responses_are_not_cached(alice_client):
    response = post(alice_client, h.add_note, {"text": "hi"})
    assert value(response)["runs"] == 1
    assert "no-store" in response["Cache-Control"]
    assert list(Note.objects.values_list("text", flat=True)) == ["alice: hi"]


# --- 400 ---


@pytest.mark.django_db
@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "not valid JSON"),
        (b'{"text": NaN}', "not valid JSON"),
        (b"\xff\xfe\x00", "not valid JSON"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
        (b'["a list"]', "must be a JSON object, got list"),
        (b'"text"', "must be a JSON object, got str"),
    ],
)
def test_bad_json_is_400(alice_client, body, message):
    err = error(alice_client.post(url(h.add_note), data=body, content_type=JSON), 400)
    assert err["code"] == "invalid_json"
    assert message in err["message"]
    assert not Note.objects.exists()


@pytest.mark.django_db
def test_bad_json_in_query_string_is_400(client):
    err = error(client.get(url(h.whoami), {"args": "{oops"}), 400)
    assert err["code"] == "invalid_json"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "change, argument, message",
    [
        ({"when": "yesterday"}, "when", "expected datetime in ISO/text form"),
        ({"when": "2025-03-30T01:30:00"}, "when", "naive"),
        ({"amount": 1.25}, "amount", "expected Decimal"),
        ({"kind": "c"}, "kind", "expected one of 'a', 'b'"),
        ({"tags": ["x", 1]}, "tags", "got list"),
        ({"extra": 1}, "extra", "unexpected argument"),
        ({"day": None}, "day", "expected date"),
    ],
)
def test_bad_arguments_are_400_naming_the_argument(client, change, argument, message):
    args = {
        "when": "2025-03-30T01:30:00+00:00",
        "day": "2025-03-30",
        "amount": "1",
        "kind": "a",
        "id": "12345678-1234-4234-8234-123456789abc",
        **change,
    }
    err = error(post(client, h.describe, args), 400)
    assert (err["code"], err["argument"]) == ("invalid_arguments", argument)
    assert message in err["message"] and h.describe.name in err["message"]


@pytest.mark.django_db
def test_missing_argument_is_400(alice_client):
    err = error(post(alice_client, h.add_note, {}), 400)
    assert (err["code"], err["argument"], err["message"]) == (
        "invalid_arguments",
        "text",
        f"argument 'text' of {h.add_note.name}: missing required argument",
    )
    assert not Note.objects.exists()


# --- 401 / 403 ---


@pytest.mark.django_db
def test_anonymous_caller_of_a_login_only_mutation_is_401(client):
    err = error(post(client, h.add_note, {"text": "hi"}), 401)
    assert err == {"code": "unauthenticated", "message": "sign in to call this function"}
    assert not Note.objects.exists()


@pytest.mark.django_db
def test_permission_denied_is_403(alice, alice_client):
    assert error(post(alice_client, h.staff_only), 403) == {"code": "permission_denied", "message": "staff only"}
    alice.is_staff = True
    alice.save()
    assert value(post(alice_client, h.staff_only)) == "welcome"


# --- 404: internal functions are indistinguishable from missing ones ---


def _internal_functions():
    return [fn for fn in registry.all() if fn.visibility == "internal"]


@pytest.mark.django_db
def test_internal_function_answers_byte_for_byte_like_a_missing_one(client):
    for method in ("get", "post", "put", "delete"):
        internal = call(client, method, url(f.bump))
        missing = call(client, method, url("tests.app.functions:no_such_function"))
        assert internal.status_code == missing.status_code == 404
        assert internal.content == missing.content
        assert sorted(internal.items()) == sorted(missing.items())
    assert error(missing, 404)["code"] == "not_found"


@pytest.mark.django_db
def test_no_internal_function_is_reachable_by_any_url_or_method(db):
    staff = User.objects.create_superuser("root", password="pw")
    clients = [Client(), Client()]
    clients[1].force_login(staff)
    internal = _internal_functions()
    assert len(internal) > 20  # the whole registry of the tests, not a handful
    for fn in internal:
        quoted = url(fn).replace(":", "%3A")
        for path in (url(fn), quoted, url(fn) + "/", url(fn) + "?args={}"):
            for client in clients:
                for method in METHODS:
                    response = call(client, method, path)
                    assert response.status_code == 404, (fn.name, path, method, response.content)
    assert not ScheduledFunction.objects.exists()
    assert not Counter.objects.exists() and not Note.objects.exists()


@pytest.mark.django_db
def test_every_public_function_is_reachable(alice_client):
    public = [fn for fn in registry.all() if fn.visibility == "public"]
    assert {h.whoami, h.add_note, h.request_account_deletion} <= set(public)
    for fn in public:
        response = alice_client.options(url(fn))
        assert response.status_code == 405, (fn.name, response.content)


# --- 405 / 413 ---


@pytest.mark.django_db
def test_wrong_method_is_405_with_allow(client):
    err = error(client.get(url(h.add_note)), 405)
    assert err == {"code": "method_not_allowed", "message": "call a mutation with POST"}
    assert client.get(url(h.add_note))["Allow"] == "POST"
    assert client.get(url(h.who_is_calling_everywhere))["Allow"] == "POST"
    response = client.put(url(h.whoami), data="{}", content_type=JSON)
    assert (response.status_code, response["Allow"]) == (405, "GET, POST")
    assert client.head(url(h.whoami)).status_code == 405


@pytest.mark.django_db
def test_oversize_arguments_are_413(alice_client, settings):
    settings.SCHEDULED_ACTIONS_MAX_ARGS_BYTES = 100
    fits = json.dumps({"text": "x" * 88})
    assert len(fits) == 100
    assert value(alice_client.post(url(h.add_note), data=fits, content_type=JSON))["runs"] == 1
    err = error(post(alice_client, h.add_note, {"text": "x" * 89}), 413)
    assert err["code"] == "too_large" and "101 bytes" in err["message"]
    assert "SCHEDULED_ACTIONS_MAX_ARGS_BYTES" in err["message"]
    assert error(alice_client.get(url(h.whoami), {"args": json.dumps({"x": "y" * 100})}), 413)
    assert Note.objects.count() == 1


@pytest.mark.django_db
def test_body_over_djangos_upload_limit_is_413(alice_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 50
    assert error(post(alice_client, h.add_note, {"text": "x" * 60}), 413)["code"] == "too_large"


# --- 500 ---


@pytest.mark.django_db
def test_application_error_is_500_without_details(settings):
    settings.DEBUG = False
    response = post(Client(raise_request_exception=False), h.broken)
    assert error(response, 500) == {"code": "server_error", "message": "the function failed"}
    assert b"secret internals" not in response.content and b"Traceback" not in response.content
    assert not Note.objects.exists()


@pytest.mark.django_db
def test_application_error_shows_traceback_with_debug(settings):
    settings.DEBUG = True
    err = error(post(Client(raise_request_exception=False), h.broken), 500)
    assert err["message"] == "RuntimeError: secret internals"
    assert err["traceback"].startswith("Traceback")
    assert 'raise RuntimeError("secret internals")' in err["traceback"]


@pytest.mark.django_db
def test_application_error_reaches_got_request_exception(client):
    """Error trackers and Django's test client see the exception, as for any failing view."""
    with pytest.raises(RuntimeError, match="secret internals"):
        post(client, h.broken)


# --- ctx.auth ---


@pytest.mark.django_db(transaction=True)
def test_auth_reaches_everything_called_synchronously(alice_client):
    assert value(post(alice_client, h.who_is_calling_everywhere)) == {
        "action": "alice",
        "query": "alice",
        "mutation": {"mutation": "alice", "query": "alice"},
        "nested_action": {"action": "alice", "mutation": {"mutation": "alice", "query": "alice"}},
    }
    assert value(post(Client(), h.who_is_calling_everywhere)) == {
        "action": None,
        "query": None,
        "mutation": {"mutation": None, "query": None},
        "nested_action": {"action": None, "mutation": {"mutation": None, "query": None}},
    }


@pytest.mark.django_db
def test_runners_take_auth_directly(alice):
    assert run_query(h.whoami)["authenticated"] is False
    assert run_query(h.whoami, auth=Auth(alice))["username"] == "alice"
    with pytest.raises(Unauthenticated):
        Auth().require_user()
    assert Auth(alice).require_user() == alice


class HeaderTokenMiddleware:
    """A project's own authentication: ``Authorization: Token <username>`` (tests only)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        scheme, _, username = request.headers.get("Authorization", "").partition(" ")
        if scheme == "Token":
            request.user = User.objects.get(username=username)
        return self.get_response(request)


@pytest.mark.django_db
def test_authentication_from_project_middleware(alice, settings):
    settings.MIDDLEWARE = [*settings.MIDDLEWARE, "tests.db.test_http.HeaderTokenMiddleware"]
    client = Client()
    assert value(client.get(url(h.whoami), headers={"Authorization": "Token alice"}))["username"] == "alice"
    assert value(client.get(url(h.whoami)))["username"] is None


@pytest.mark.django_db(transaction=True)
def test_public_action_schedules_internal_one_which_runs_without_auth(alice, alice_client):
    """The guide's requestAccountDeletion: the public function checks the caller, the job gets the id."""
    assert error(post(Client(), h.request_account_deletion), 401)["code"] == "unauthenticated"
    assert not ScheduledFunction.objects.exists()
    job_id = value(post(alice_client, h.request_account_deletion))
    job = ScheduledFunction.objects.get(pk=job_id)
    assert (job.name, job.args) == (h.delete_all_user_data.name, {"user_id": alice.pk})
    call_command("runworker", burst=True)
    job.refresh_from_db()
    assert (job.state, job.result) == (State.SUCCESS, {"authenticated": False, "anonymous_user": True})
    assert not User.objects.filter(pk=alice.pk).exists()


# --- CSRF and the demo page ---


@pytest.mark.django_db
def test_session_posts_need_the_csrf_token_the_demo_page_uses(alice):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    page = client.get("/demo/")
    assert page.status_code == 200
    assert b"/functions/demo.functions:place_order" in page.content
    assert b"/functions/demo.functions:order_status" in page.content
    token = client.cookies["csrftoken"].value

    refused = post(client, h.add_note, {"text": "forged"})
    assert refused.status_code == 403 and b"CSRF" in refused.content
    assert not Note.objects.exists()
    assert value(post(client, h.add_note, {"text": "real"}, headers={"X-CSRFToken": token}))["runs"] == 1
    assert value(client.get(url(h.whoami)))["username"] == "alice"  # safe methods need no token


@pytest.mark.django_db
@pytest.mark.parametrize("token", [None, "forged" * 8], ids=["no token", "wrong token"])
def test_a_csrf_failure_answers_the_documented_json(alice, token):
    client = Client(enforce_csrf_checks=True)
    client.force_login(alice)
    client.get("/demo/")  # sets the CSRF cookie
    headers = {} if token is None else {"X-CSRFToken": token}
    err = error(post(client, h.add_note, {"text": "forged"}, headers=headers), 403)
    assert err["code"] == "csrf_failed" and "CSRF" in err["message"], err
    assert not Note.objects.exists()


@pytest.mark.django_db
def test_other_urls_keep_djangos_csrf_failure_page():
    refused = Client(enforce_csrf_checks=True).post("/admin/login/", {"username": "x", "password": "y"})
    assert refused.status_code == 403 and refused["Content-Type"].startswith("text/html")


def test_the_view_checks_csrf_itself_so_the_middleware_is_not_disabled_for_it():
    view = resolve(url(h.add_note)).func
    assert view is views.endpoint and view.csrf_exempt, "the middleware leaves it to the view"
    assert not getattr(views.call_function, "csrf_exempt", False), "mounted by hand, the middleware checks it"


# --- Idempotency-Key ---


@pytest.mark.django_db(transaction=True)
def test_idempotency_key_header_returns_the_stored_result(alice_client):
    first = value(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": "k1"}))
    again = value(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": "k1"}))
    assert first == again == {"id": first["id"], "runs": 1}
    assert Note.objects.count() == 1 and IdempotencyKey.objects.count() == 1
    assert value(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": "k2"}))["runs"] == 2
    assert value(post(alice_client, h.add_note, {"text": "a"}))["runs"] == 3


@pytest.mark.django_db(transaction=True)
def test_idempotency_keys_are_per_caller_and_function(alice_client):
    bob = Client()
    bob.force_login(User.objects.create_user("bob", password="pw"))
    assert value(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": "same"}))["runs"] == 1
    assert value(post(bob, h.add_note, {"text": "b"}, headers={"Idempotency-Key": "same"}))["runs"] == 2
    job_id = value(post(alice_client, h.request_account_deletion, headers={"Idempotency-Key": "same"}))
    assert value(post(alice_client, h.request_account_deletion, headers={"Idempotency-Key": "same"})) == job_id
    assert ScheduledFunction.objects.count() == 1
    assert sorted(Note.objects.values_list("text", flat=True)) == ["alice: a", "bob: b"]


@pytest.mark.django_db(transaction=True)
def test_an_idempotency_key_reused_with_other_arguments_is_422_and_runs_nothing(alice_client, slow_action_events):
    first = value(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": "k1"}))
    err = error(post(alice_client, h.add_note, {"text": "b"}, headers={"Idempotency-Key": "k1"}), 422)
    assert err["code"] == "idempotency_key_reused" and "other arguments" in err["message"], err
    assert list(Note.objects.values_list("text", flat=True)) == ["alice: a"]
    assert value(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": "k1"})) == first
    h.RELEASE.set()
    assert value(post(alice_client, h.slow_action, {"label": "x"}, headers={"Idempotency-Key": "k2"})) == "x"
    err = error(post(alice_client, h.slow_action, {"label": "y"}, headers={"Idempotency-Key": "k2"}), 422)
    assert err["code"] == "idempotency_key_reused"


@pytest.mark.django_db
@pytest.mark.parametrize("key", ["", "x" * 201, "naïve", "tab\there"])
def test_bad_idempotency_key_is_400(alice_client, key):
    err = error(post(alice_client, h.add_note, {"text": "a"}, headers={"Idempotency-Key": key}), 400)
    assert err["code"] == "invalid_idempotency_key"
    assert not Note.objects.exists()


@pytest.fixture
def slow_action_events():
    h.STARTED.clear()
    h.RELEASE.clear()
    yield
    h.RELEASE.set()


@pytest.mark.django_db(transaction=True)
def test_repeat_while_the_first_call_runs_is_409(alice, slow_action_events):
    responses = {}

    def first_call():
        client = Client()
        client.force_login(alice)
        try:
            responses["first"] = post(client, h.slow_action, {"label": "first"}, headers={"Idempotency-Key": "k"})
        finally:
            connection.close()

    thread = threading.Thread(target=first_call)
    thread.start()
    assert h.STARTED.wait(10)
    client = Client()
    client.force_login(alice)
    repeat = post(client, h.slow_action, {"label": "first"}, headers={"Idempotency-Key": "k"})
    assert error(repeat, 409)["code"] == "in_progress"
    assert repeat["Retry-After"] == "1"
    h.RELEASE.set()
    thread.join(10)
    assert value(responses["first"]) == "first"
    assert value(post(client, h.slow_action, {"label": "first"}, headers={"Idempotency-Key": "k"})) == "first"
