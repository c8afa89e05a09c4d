"""Rate limits (DESIGN section 13): ``rate_limit=`` on functions, taken in the claim; ``rate_limiter``."""

from __future__ import annotations

import json
from datetime import timedelta
from importlib.util import find_spec

import pytest
from django.core.management import call_command
from django.core.management.base import SystemCheckError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from django_scheduled_actions import (
    RateLimited,
    RateLimitStatus,
    internal_action,
    internal_query,
    rate_limiter,
    run_mutation,
    scheduler,
    workflows,
)
from django_scheduled_actions.checks import check_rate_limits
from django_scheduled_actions.core.registry import registry
from django_scheduled_actions.models import RateLimitBucket, ScheduledFunction, State, WorkflowRun, WorkflowStep
from django_scheduled_actions.store import limits
from django_scheduled_actions.store.engines import engine
from django_scheduled_actions.store.leases import claim, next_due_time
from django_scheduled_actions.testing import run_due_jobs
from tests.app import functions as f
from tests.app import rate_functions as rf
from tests.app.models import Counter
from tests.support.threads import at_once

pytestmark = pytest.mark.django_db
LEASE = timedelta(minutes=1)


def claim_at(now, limit: int = 50) -> list[ScheduledFunction]:
    return claim("w", limit, now, LEASE)[1]


def names(jobs: list[ScheduledFunction]) -> list[str]:
    return sorted(job.name.rsplit(":", 1)[1] for job in jobs)


def finish(jobs: list[ScheduledFunction]) -> None:
    ScheduledFunction.objects.filter(pk__in=[j.pk for j in jobs]).update(state=State.SUCCESS)


# --- rate_limit= on functions: the claim starts at most the bucket's tokens ---


def test_a_rate_limited_function_starts_its_burst_then_its_rate_and_others_are_not_held(rated):
    for i in range(12):
        scheduler.run_after(0, rated.rated_mutation, {"i": i})  # 5/s: a burst of 5
    for i in range(3):
        scheduler.run_after(0, f.noop_mutation, {"i": i})
    start = timezone.now()
    first = claim_at(start)
    assert names(first) == ["noop_mutation"] * 3 + ["rated_mutation"] * 5
    assert claim_at(start) == []  # the bucket is empty: the rest stay pending, none fails
    assert names(claim_at(start + timedelta(seconds=0.5))) == ["rated_mutation"] * 2  # 2.5 tokens: 2 whole
    assert names(claim_at(start + timedelta(seconds=0.7))) == ["rated_mutation"]  # the half left, and 0.2 s
    assert names(claim_at(start + timedelta(seconds=60))) == ["rated_mutation"] * 4  # never more than the burst
    pending = ScheduledFunction.objects.filter(name=rated.rated_mutation.name, state=State.PENDING)
    assert pending.count() == 0


def test_run_due_jobs_keeps_to_the_rate_on_the_clock_it_is_given(rated):
    for i in range(7):
        scheduler.run_after(0, rated.rated_mutation, {"i": i})  # 5/s
    start = timezone.now() + timedelta(seconds=1)
    assert run_due_jobs(now=start) == 5  # the burst; the others stay pending
    assert run_due_jobs(now=start + timedelta(seconds=0.2)) == 1
    assert run_due_jobs(now=start + timedelta(seconds=10)) == 1
    assert ScheduledFunction.objects.filter(state=State.SUCCESS).count() == 7


def test_a_workflows_steps_of_a_rate_limited_mutation_keep_to_its_rate(rated):
    """Steps are jobs of their function (``workflow-step:<name>``): they take its tokens, and wait for them."""
    run_id = workflows.start(rf.rated_steps, {"n": 7})
    start = timezone.now() + timedelta(seconds=30)
    run_due_jobs(now=start)
    steps = WorkflowStep.objects.filter(run_id=run_id)
    assert steps.filter(state=WorkflowStep.State.SUCCESS).count() == 5  # the burst; the sixth step waits
    assert workflows.status(run_id).state == WorkflowRun.State.RUNNING
    run_due_jobs(now=start + timedelta(seconds=10))
    assert (workflows.status(run_id).state, steps.count()) == (WorkflowRun.State.SUCCESS, 7)


def test_a_rate_and_a_concurrency_limit_together_each_hold(rated):
    fn = rated.rated_and_limited_run  # 10/s and max_concurrency=2
    for _ in range(8):
        scheduler.run_after(0, fn, {"path": "-"})
    start = timezone.now()
    first = claim_at(start)
    assert len(first) == 2  # the concurrency limit
    assert claim_at(start) == []
    finish(first)
    finish(claim_at(start))  # two more: the bucket still holds 8 tokens
    finish(claim_at(start))
    bucket = RateLimitBucket.objects.get(name=f"function:{fn.name}")
    assert bucket.tokens == pytest.approx(4.0, abs=0.1)  # one token per job started, none for waiting
    finish(claim_at(start))
    assert claim_at(start) == []  # all eight started: the bucket is empty, nothing is left anyway
    assert ScheduledFunction.objects.filter(name=fn.name, state=State.SUCCESS).count() == 8


def test_tokens_are_taken_only_for_jobs_claimed(rated):
    scheduler.run_after(0, rated.slow_rate, {"i": 1})  # 2/m
    start = timezone.now() + timedelta(seconds=1)  # the jobs scheduled below are due by then
    assert len(claim_at(start)) == 1
    assert claim_at(start) == []  # no job: no token taken
    scheduler.run_after(0, rated.slow_rate, {"i": 2})
    scheduler.run_after(0, rated.slow_rate, {"i": 3})
    assert len(claim_at(start)) == 1  # one token was left
    assert claim_at(start + timedelta(seconds=29)) == []
    assert len(claim_at(start + timedelta(seconds=31))) == 1  # one token in 30 s


def test_a_worker_waits_for_the_next_token_not_for_a_poll_nor_in_a_spin(rated):
    for i in range(6):
        scheduler.run_after(0, rated.rated_mutation, {"i": i})  # 5/s
    later = scheduler.run_after(30, f.noop_mutation, {"i": 1})
    now = timezone.now() + timedelta(seconds=1)
    assert len(claim_at(now)) == 5
    assert next_due_time(None, now) == now + timedelta(seconds=0.2)  # one token in a fifth of a second
    assert len(claim_at(now + timedelta(seconds=0.2))) == 1
    assert next_due_time(None, now) == ScheduledFunction.objects.get(pk=later).scheduled_time  # none waits


def test_a_due_job_with_a_token_but_no_slot_waits_for_the_slot_not_in_a_spin(rated):
    for _ in range(3):
        scheduler.run_after(0, rated.rated_and_limited_run, {"path": "-"})  # 10/s, max_concurrency=2
    now = timezone.now() + timedelta(seconds=1)
    assert len(claim_at(now)) == 2
    assert next_due_time(None, now) is None  # 8 tokens: the job waits for a slot, which a finishing job frees


def test_a_function_without_a_limit_is_claimed_by_the_same_statements_as_before(rated):
    """With no limit registered, a claim issues the very statements of the unlimited claim alone (what
    every claim issued before rate limits): no bucket is read, no transaction added."""
    registry_fns = vars(rated).values()
    rf.disable_rates(rated)
    try:
        for i in range(3):
            scheduler.run_after(0, f.noop_mutation, {"i": i})
        now = timezone.now()
        with CaptureQueriesContext(connection) as plain:
            assert len(engine("default").claim_unlimited(limits.Limits({}, {}), "w", "t", 2, now, LEASE, None, 0)) == 2
        with CaptureQueriesContext(connection) as claimed:
            assert len(claim_at(now, 2)) == 1
    finally:
        for fn in registry_fns:
            registry.register(fn)
    assert [_shape(q["sql"]) for q in claimed] == [_shape(q["sql"]) for q in plain]
    assert not any("rate_limit_bucket" in q["sql"] for q in claimed)


def test_jobs_waiting_for_their_rate_cost_the_others_claims_no_transaction(rated):
    for i in range(4):
        scheduler.run_after(0, rated.slow_rate, {"i": i})  # 2/m
    scheduler.run_after(0, f.noop_mutation, {"i": 1})
    now = timezone.now() + timedelta(seconds=1)
    assert names(claim_at(now, 2)) == ["slow_rate"] * 2  # the burst; two wait for the rate now
    with CaptureQueriesContext(connection) as queries:
        assert names(claim_at(now)) == ["noop_mutation"]
    locked = [q["sql"] for q in queries if "rate_limit_bucket" in q["sql"] and "FOR UPDATE" in q["sql"].upper()]
    assert locked == []  # read without a lock: the bucket is empty, the limited claim is not opened
    assert sum("rate_limit_bucket" in q["sql"] for q in queries) == 1


def _shape(sql: str) -> str:
    """A statement without its values (ids, tokens, times differ between two claims)."""
    import re

    values = re.sub(r'["`]s\w+_x\d+["`]|\'[^\']*\'|\b\d+\b', "?", sql)
    return re.sub(r"IN \([?, ]+\)", "IN (?)", values)


# --- bad rates ---


def test_bad_rates_are_system_check_errors_naming_the_function():
    bad = [internal_action(rate_limit=rate, name=f"bad-rate-{i}")(rf.rated_run) for i, rate in enumerate(BAD_RATES)]
    try:
        errors = check_rate_limits()
        with pytest.raises(SystemCheckError, match="bad-rate-1: rate_limit="):
            call_command("runworker", burst=True, skip_checks=False)  # the worker does not start
    finally:
        for fn in bad:
            registry.unregister(fn.name)
    assert [(e.id, e.msg) for e in errors] == [
        (
            "scheduled_actions.E301",
            "bad-rate-0: rate_limit= must be 'N/s', 'N/m' or 'N/h' with N a whole number, got 'ten/s'.",
        ),
        ("scheduled_actions.E301", "bad-rate-1: rate_limit= must allow at least one a period, got '0/s'."),
        (
            "scheduled_actions.E301",
            "bad-rate-2: rate_limit= must be 'N/s', 'N/m' or 'N/h' with N a whole number, got '5/fortnight'.",
        ),
    ]
    assert check_rate_limits() == []


BAD_RATES = ["ten/s", "0/s", "5/fortnight"]


@pytest.mark.parametrize("rate", BAD_RATES)
def test_bad_rates_are_refused_by_the_limiter(rate):
    with pytest.raises(ValueError, match="rate="):
        rate_limiter.limit("x", rate=rate)
    assert not RateLimitBucket.objects.exists()


def test_a_query_takes_no_rate_limit():
    with pytest.raises(TypeError, match="rate_limit= applies to scheduled mutations and actions"):
        internal_query(rate_limit="1/s")(lambda ctx: None)


def test_bad_bursts_counts_and_names_are_refused():
    for call in (
        lambda: rate_limiter.limit("x", rate="1/s", burst=0),
        lambda: rate_limiter.limit("x", rate="1/s", count=0),
        lambda: rate_limiter.limit("x", rate="1/s", count=2),  # more than the bucket can ever hold
        lambda: rate_limiter.limit("", rate="1/s"),
        lambda: rate_limiter.limit("function:x", rate="1/s"),  # the buckets of rate_limit=
    ):
        with pytest.raises(ValueError):
            call()


# --- rate_limiter ---


def test_the_limiter_takes_its_burst_then_refills_at_its_rate():
    t0 = timezone.now()
    assert [rate_limiter.limit("api", rate="3/m", now=t0).ok for _ in range(4)] == [True, True, True, False]
    status = rate_limiter.limit("api", rate="3/m", now=t0)
    assert isinstance(status, RateLimitStatus)
    assert status == (False, pytest.approx(20.0))
    assert rate_limiter.limit("api", rate="3/m", now=t0 + timedelta(seconds=10)) == (False, pytest.approx(10.0))
    assert rate_limiter.limit("api", rate="3/m", now=t0 + timedelta(seconds=20)) == (True, 0.0)
    assert rate_limiter.limit("api", rate="3/m", now=t0 + timedelta(seconds=20)).ok is False


def test_burst_and_count():
    t0 = timezone.now()
    assert rate_limiter.limit("b", rate="1/s", burst=5, count=4, now=t0).ok
    status = rate_limiter.limit("b", rate="1/s", burst=5, count=3, now=t0)
    assert status == (False, pytest.approx(2.0))
    assert rate_limiter.limit("b", rate="1/s", burst=5, count=3, now=t0 + timedelta(seconds=2)).ok
    assert rate_limiter.limit("b", rate="1/s", burst=5, now=t0 + timedelta(hours=1), count=5).ok  # capped at 5


def test_keys_are_independent_and_reset_forgets_a_bucket():
    t0 = timezone.now()
    assert rate_limiter.limit("k", key="alice", rate="1/h", now=t0).ok
    assert not rate_limiter.limit("k", key="alice", rate="1/h", now=t0).ok
    assert rate_limiter.limit("k", key="bob", rate="1/h", now=t0).ok
    assert rate_limiter.limit("k", rate="1/h", now=t0).ok  # key "" is a key too
    rate_limiter.reset("k", key="alice")
    assert rate_limiter.limit("k", key="alice", rate="1/h", now=t0).ok
    assert not rate_limiter.limit("k", key="bob", rate="1/h", now=t0).ok


def test_inside_a_mutation_a_rollback_gives_the_token_back():
    with pytest.raises(rf.Boom):
        run_mutation(rf.send_message, {"user": "u", "fail": True})
    assert [run_mutation(rf.send_message, {"user": "u"}) for _ in range(4)] == [True, True, True, False]
    assert Counter.objects.get(name="sent:u").value == 3


@pytest.mark.django_db(transaction=True)
def test_concurrent_callers_never_take_more_than_the_bucket_holds():
    answers: list[bool] = []
    errors = at_once([lambda: answers.append(rate_limiter.limit("race", rate="5/h").ok) for _ in range(8)])
    assert errors == []
    assert sorted(answers) == [False] * 3 + [True] * 5


@pytest.mark.django_db(transaction=True)
def test_concurrent_mutations_take_one_token_each_however_often_they_are_retried():
    """Eight mutations on one bucket and one counter conflict (PostgreSQL, MariaDB: serialization failures
    and deadlocks, retried): each attempt that commits took one token, none that rolled back kept one."""
    errors = at_once([lambda: run_mutation(rf.send_message, {"user": "many"}) for _ in range(8)])
    assert errors == []
    assert Counter.objects.get(name="sent:many").value == 3
    bucket = RateLimitBucket.objects.get(name="send_message", key="many")
    assert bucket.tokens == pytest.approx(0.0, abs=0.01)


def test_rate_limited_over_http_is_429_with_retry_after(client):
    url = reverse("scheduled_actions:call", args=[rf.limited_over_http.name])
    assert client.post(url, data="{}", content_type="application/json").status_code == 200
    response = client.post(url, data="{}", content_type="application/json")
    assert response.status_code == 429
    assert 59 <= int(response["Retry-After"]) <= 60
    body = json.loads(response.content)
    assert body["error"]["code"] == "rate_limited"
    assert 59 <= body["error"]["retry_after"] <= 60


@pytest.mark.django_db(transaction=True)
def test_an_action_retried_after_rate_limited_waits_its_retry_after():
    job = scheduler.run_after(0, rf.provider_says_wait, {})
    before = timezone.now()
    call_command("runworker", burst=True)
    row = ScheduledFunction.objects.get(pk=job)
    assert (row.state, row.attempts) == (State.PENDING, 1)  # its RetryPolicy retries it, but not before 30 s
    assert before + timedelta(seconds=29) < row.scheduled_time < timezone.now() + timedelta(seconds=31)
    assert "RateLimited" in row.error


def test_rate_limited_carries_its_retry_after():
    assert RateLimited(retry_after=2.5).retry_after == 2.5
    assert RateLimited(retry_after=-1).retry_after == 0.0


# --- the admin ---


def test_the_job_list_says_which_due_jobs_wait_for_their_rate(rated, admin_client):
    for i in range(4):
        scheduler.run_after(0, rated.slow_rate, {"i": i})  # 2/m: a token every 30 s
    scheduler.run_after(0, f.noop_mutation, {"i": 1})
    changelist = reverse("admin:django_scheduled_actions_scheduledfunction_changelist")
    assert ">rate limited</span>" not in admin_client.get(changelist).content.decode()  # no bucket yet: full
    claim_at(timezone.now() + timedelta(milliseconds=10), limit=2)  # takes the burst; 2 rated, 1 other pending
    page = admin_client.get(changelist).content.decode()
    assert page.count(">rate limited</span>") == 2


def test_the_buckets_admin_shows_rate_tokens_now_and_jobs_waiting(rated, admin_client):
    for i in range(4):
        scheduler.run_after(0, rated.slow_rate, {"i": i})
    claim_at(timezone.now() + timedelta(milliseconds=10))
    rate_limiter.limit("api", key="alice", rate="3/h", burst=6)
    page = admin_client.get(reverse("admin:django_scheduled_actions_ratelimitbucket_changelist")).content.decode()
    assert f"function:{rated.slow_rate.name}" in page and "2/m" in page
    assert 'slow_rate&amp;state=pending">2</a>' in page  # its two jobs waiting
    assert "3/h (burst 6)" in page and "5.00 of 6" in page


# --- django.tasks ---


@pytest.mark.skipif(find_spec("django.tasks") is None, reason="Django 6+: django.tasks")
def test_a_django_task_with_a_rate_limit_starts_at_its_rate():
    from django.tasks import task  # here: Django 5.2 has no django.tasks
    from django.tasks.exceptions import InvalidTask

    from tests.app.rated_tasks import rated_task  # noqa: I001 - here: it registers a rate-limited function

    name = f"django.tasks:{rated_task.module_path}"
    try:
        ids = [int(rated_task.enqueue(i).id) for i in range(3)]
        now = timezone.now() + timedelta(seconds=1)
        assert sorted(job.pk for job in claim_at(now)) == ids[:2]  # 2/m: its burst
        assert claim_at(now) == []
        assert [job.pk for job in claim_at(now + timedelta(seconds=30))] == ids[2:]
        with pytest.raises(InvalidTask, match="rate_limit must be 'N/s'"):
            task(rate_limit="5/fortnight")(rf.rated_run)
    finally:
        registry.unregister(name)
