"""The django.tasks backend (Django 6+): Django's documented backend behaviours, run on the real worker."""

from __future__ import annotations

import pickle
from datetime import timedelta

import pytest

pytest.importorskip("django.tasks", reason="django.tasks (the Tasks framework) needs Django 6.0 or later")

from asgiref.sync import async_to_sync  # noqa: E402
from django.apps import apps  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import transaction  # noqa: E402
from django.tasks import TaskResultStatus, default_task_backend, task, task_backends  # noqa: E402
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist, TaskResultMismatch  # noqa: E402
from django.tasks.signals import task_enqueued, task_finished, task_started  # noqa: E402
from django.test import override_settings  # noqa: E402
from django.utils import timezone  # noqa: E402

from django_scheduled_actions import ArgumentValidationError, RetryPolicy, scheduler  # noqa: E402
from django_scheduled_actions.backends import ScheduledActionsBackend, ScheduledActionsTask, TaskAborted  # noqa: E402
from django_scheduled_actions.backends.results import UNKNOWN_EXCEPTION, exception_class_path  # noqa: E402
from django_scheduled_actions.core.registry import registry  # noqa: E402
from django_scheduled_actions.exceptions import FunctionNotFound  # noqa: E402
from django_scheduled_actions.models import ScheduledFunction, State  # noqa: E402
from tests.app import functions as f  # noqa: E402
from tests.app import tasks as t  # noqa: E402
from tests.app.models import Counter, Note  # noqa: E402

pytestmark = pytest.mark.django_db(transaction=True)
Jobs = ScheduledFunction.objects
BACKEND = "django_scheduled_actions.backends.ScheduledActionsBackend"


def burst(**options):
    call_command("runworker", burst=True, **options)


def job_of(result) -> ScheduledFunction:
    return Jobs.get(pk=int(result.id))


@pytest.fixture
def task_signals():
    """Every django.tasks signal sent during the test: (signal, result id, status, sender)."""
    received = []
    receivers = {}
    for name, signal in (("enqueued", task_enqueued), ("started", task_started), ("finished", task_finished)):

        def receiver(sender, task_result, _name=name, **kwargs):
            received.append((_name, task_result.id, task_result.status, sender))

        receivers[name] = (signal, receiver)
        signal.connect(receiver)
    yield received
    for signal, receiver in receivers.values():
        signal.disconnect(receiver)


# --- configuration ---


def test_backend_is_configured_and_supports_every_feature():
    assert isinstance(task_backends["default"], ScheduledActionsBackend)
    assert default_task_backend.alias == "default"
    assert default_task_backend.queues == {"default", "tasks-other"}
    assert default_task_backend.supports_defer is True
    assert default_task_backend.supports_priority is True
    assert default_task_backend.supports_get_result is True
    assert default_task_backend.supports_async_task is True
    assert isinstance(t.echo, ScheduledActionsTask)
    assert default_task_backend.check() == []


def test_system_checks_report_bad_options():
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "OPTIONS": {"DATABASE": "nope", "COLOUR": 1}}}):
        messages = [(m.id, m.msg) for m in task_backends["default"].check()]
    assert messages == [
        ("scheduled_actions.E201", "TASKS['default']: unknown OPTIONS key 'COLOUR'."),
        ("scheduled_actions.E202", "TASKS['default']: OPTIONS['DATABASE'] 'nope' is not in DATABASES."),
    ]


def test_system_check_reports_the_app_missing(monkeypatch):
    monkeypatch.setattr(apps, "is_installed", lambda name: name != "django_scheduled_actions")
    assert [m.id for m in task_backends["default"].check()] == ["scheduled_actions.E203"]


# --- enqueue ---


def test_enqueue_writes_a_pending_action_job_and_returns_a_ready_result():
    result = t.echo.enqueue(1, (2, 3), key="value")
    job = job_of(result)
    assert (job.name, job.kind, job.state, job.queue, job.priority, job.max_attempts) == (
        "django.tasks:tests.app.tasks.echo",
        "action",
        State.PENDING,
        "default",
        0,
        1,
    )
    assert job.args == {"args": [1, [2, 3]], "kwargs": {"key": "value"}, "backend": "default"}
    assert result.id == str(job.pk) and result.status == TaskResultStatus.READY
    assert result.task == t.echo and result.backend == "default"
    assert (result.args, result.kwargs) == ([1, [2, 3]], {"key": "value"})
    assert result.enqueued_at == job.created_at
    assert (result.started_at, result.finished_at, result.errors, result.attempts) == (None, None, [], 0)
    with pytest.raises(ValueError, match="Task has not finished yet"):
        _ = result.return_value


def test_arguments_must_be_json_and_nothing_is_written_otherwise():
    with pytest.raises(TypeError, match="Unsupported type"):
        t.echo.enqueue(object())
    with pytest.raises(ArgumentValidationError, match="finite float"):
        t.echo.enqueue(float("nan"))
    with pytest.raises(ArgumentValidationError, match="dict keys must be str"):
        t.echo.enqueue({1: "one"})
    assert not Jobs.exists()


def test_enqueue_inside_atomic_commits_and_rolls_back_with_the_caller(task_signals):
    with pytest.raises(RuntimeError), transaction.atomic():
        t.write_note.enqueue("rolled back")
        assert Jobs.count() == 1
        raise RuntimeError("roll back")
    assert not Jobs.exists() and task_signals == []

    with transaction.atomic():
        result = t.write_note.enqueue("committed")
        Note.objects.create(text="beside it")
        assert task_signals == []  # task_enqueued waits for the commit, as job_scheduled does
    assert Jobs.count() == 1
    assert task_signals == [("enqueued", result.id, TaskResultStatus.READY, ScheduledActionsBackend)]


# --- running ---


def test_worker_runs_a_task_and_its_result_reflects_the_job_row():
    result = t.echo.enqueue(1, (2, 3), key="value")
    burst()
    result.refresh()
    job = job_of(result)
    assert job.state == State.SUCCESS
    assert result.status == TaskResultStatus.SUCCESSFUL and result.is_finished
    assert result.return_value == {"args": [1, [2, 3]], "kwargs": {"key": "value"}} == job.result
    assert result.attempts == 1 and result.worker_ids == [job.worker_id]
    assert (result.started_at, result.last_attempted_at, result.finished_at) == (
        job.started_at,
        job.started_at,
        job.completed_time,
    )
    assert result.enqueued_at <= result.started_at <= result.finished_at
    assert result.errors == []
    fetched = t.echo.get_result(result.id)
    assert (fetched.id, fetched.status, fetched.return_value) == (result.id, result.status, result.return_value)


def test_meaning_of_life_through_the_backend_api():
    result = default_task_backend.enqueue(t.calculate_meaning_of_life, [], {})
    burst()
    assert default_task_backend.get_result(result.id).return_value == 42


def test_async_tasks_run_and_async_api_works():
    result = t.add_async.enqueue(2, b=3)
    queued = async_to_sync(t.noop_task_async.aenqueue)()
    burst()
    assert t.add_async.get_result(result.id).return_value == 5
    fetched = async_to_sync(t.noop_task_async.aget_result)(queued.id)
    assert fetched.status == TaskResultStatus.SUCCESSFUL and fetched.return_value is None


def test_a_task_body_may_use_the_orm():
    result = t.write_note.enqueue("from a task")
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    assert Note.objects.get(pk=result.return_value).text == "from a task"


def test_takes_context_gets_the_running_result():
    result = t.get_context.enqueue(label="x")
    async_result = t.get_context_async.enqueue()
    burst()
    assert t.get_context.get_result(result.id).return_value == {
        "id": result.id,
        "attempt": 1,
        "status": "RUNNING",
        "label": "x",
        "args": [],
        "kwargs": {"label": "x"},
    }
    assert t.get_context_async.get_result(async_result.id).return_value == async_result.id


# --- defer, priority, queues ---


def test_run_after_defers_the_job():
    when = timezone.now() + timedelta(hours=1)
    result = t.noop_task.using(run_after=when).enqueue()
    assert job_of(result).scheduled_time == when and result.task.run_after == when
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.READY
    Jobs.filter(pk=int(result.id)).update(scheduled_time=timezone.now())
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.task.run_after == when


def test_run_after_in_the_past_runs_now_and_naive_is_refused():
    result = t.noop_task.using(run_after=timezone.now() - timedelta(days=1)).enqueue()
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL
    with pytest.raises(InvalidTask, match="run_after must be an aware datetime"):
        t.noop_task.using(run_after=timezone.now().replace(tzinfo=None))


def test_higher_priority_runs_first():
    for priority in (-5, 50, 0, 100):
        t.write_note.using(priority=priority).enqueue(str(priority))
    burst(concurrency=1)
    assert list(Note.objects.order_by("pk").values_list("text", flat=True)) == ["100", "50", "0", "-5"]


def test_priority_must_be_in_djangos_range():
    with pytest.raises(InvalidTask, match="priority must be a whole number between -100 and 100"):
        t.noop_task.using(priority=101)


def test_queues_are_validated_and_honoured_by_the_worker():
    with pytest.raises(InvalidTask, match="Queue 'nowhere' is not valid for backend"):
        t.noop_task.using(queue_name="nowhere")
    with override_settings(TASKS={"default": {"BACKEND": BACKEND, "QUEUES": ["queue-1"]}}):
        with pytest.raises(InvalidTask, match="Queue 'default' is not valid for backend"):
            default_task_backend.enqueue(t.noop_task, [], {})
    result = t.other_queue_task.enqueue()
    assert (job_of(result).queue, job_of(result).priority) == ("tasks-other", 10)
    burst(queue=["default"])
    assert t.other_queue_task.get_result(result.id).status == TaskResultStatus.READY
    burst(queue=["tasks-other"])
    assert t.other_queue_task.get_result(result.id).return_value == "other"


# --- failures ---


def test_exceptions_are_failed_results_with_class_and_traceback():
    cases = [
        (t.failing_task_value_error, ValueError, "This Task failed due to ValueError"),
        (t.failing_task_custom, t.TaskFailure, "custom failure"),
    ]
    results = [(task_.enqueue(), exception, message) for task_, exception, message in cases]
    burst()
    for result, exception, message in results:
        result.refresh()
        assert result.status == TaskResultStatus.FAILED and result.is_finished
        with pytest.raises(ValueError, match="Task failed"):
            _ = result.return_value
        assert result.finished_at >= result.started_at >= result.enqueued_at
        (error,) = result.errors
        assert error.exception_class is exception
        assert error.traceback.startswith("Traceback (most recent call last):")
        assert error.traceback.endswith(f"{exception.__name__}: {message}\n")
        assert job_of(result).error.rstrip("\n") == error.traceback.rstrip("\n")


def test_non_json_return_value_fails_the_task():
    result = t.complex_return_value.enqueue()
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class is TypeError and "Unsupported type" in result.errors[0].traceback


def test_system_exit_fails_the_job_and_the_worker_keeps_serving():
    result = t.failing_task_system_exit.enqueue()
    later = t.calculate_meaning_of_life.enqueue()
    burst(concurrency=1)
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 1
    assert result.errors[0].exception_class is TaskAborted
    assert "SystemExit: This Task failed due to SystemExit" in result.errors[0].traceback
    assert t.calculate_meaning_of_life.get_result(later.id).return_value == 42


def test_canceled_job_reads_as_failed_and_never_runs():
    result = t.write_note.enqueue("never")
    scheduler.cancel(int(result.id))
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.errors == [] and result.attempts == 0
    assert not Note.objects.exists()


@override_settings(SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE=0)  # else left for a worker that can import it
def test_a_job_whose_task_is_gone_fails_cleanly():
    now = timezone.now()
    job = Jobs.create(
        name="django.tasks:tests.app.tasks.gone",
        kind="action",
        scheduled_time=now,
        args={"args": [], "kwargs": {}, "backend": "default"},
    )
    burst()
    job.refresh_from_db()
    assert job.state == State.FAILED and "FunctionNotFound" in job.error
    with pytest.raises(TaskResultDoesNotExist, match="cannot be imported"):
        default_task_backend.get_result(str(job.pk))


# --- options beyond Django's: retry, timeout, idempotency key ---


def test_retry_policy_retries_until_success(task_signals):
    result = t.flaky.enqueue("flaky", fail_times=1)
    assert job_of(result).max_attempts == 3
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.SUCCESSFUL and result.return_value == 2 and result.attempts == 2
    assert Counter.objects.get(name="flaky").value == 2
    assert [e.exception_class for e in result.errors] == [ConnectionError]  # the row keeps the last error
    assert [(name, status) for name, _id, status, _sender in task_signals] == [
        ("enqueued", "READY"),
        ("started", "RUNNING"),
        ("started", "RUNNING"),
        ("finished", "SUCCESSFUL"),
    ]


def test_retry_policy_gives_up_after_max_attempts():
    result = t.flaky.enqueue("hopeless", fail_times=10)
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED and result.attempts == 3
    assert Counter.objects.get(name="hopeless").value == 3


def test_timeout_fails_the_task_with_job_timeout():
    result = t.sleepy.enqueue(1.5)
    burst()
    result.refresh()
    assert result.status == TaskResultStatus.FAILED
    assert result.errors[0].exception_class_path == "django_scheduled_actions.exceptions.JobTimeout"


def test_idempotency_key_returns_the_first_result():
    first = t.noop_task.using(idempotency_key="once").enqueue(1)
    again = t.noop_task.using(idempotency_key="once").enqueue(2)
    assert again.id == first.id and again.args == [1] and Jobs.count() == 1
    assert first.task.idempotency_key == "once"
    with pytest.raises(ValueError, match="key 'once' is held by a job of django.tasks:tests.app.tasks.noop_task"):
        t.echo.using(idempotency_key="once").enqueue()
    Jobs.all().delete()  # pruned while its key is still held
    with pytest.raises(TaskResultDoesNotExist, match="held by a job that has been pruned"):
        t.noop_task.using(idempotency_key="once").enqueue()


def test_task_options_pass_through_the_decorator_and_are_validated():
    assert (t.flaky.retry, t.sleepy.timeout) == (RetryPolicy(max_attempts=3, initial_backoff=0, jitter=False), 0.3)
    keyed = t.flaky.using(priority=5, idempotency_key="k")
    assert (keyed.retry, keyed.idempotency_key, keyed.priority) == (t.flaky.retry, "k", 5)  # using() keeps them
    assert pickle.loads(pickle.dumps(keyed)) == keyed  # noqa: S301 - bytes made just above
    with pytest.raises(InvalidTask, match="retry must be a django_scheduled_actions.RetryPolicy"):
        task(retry=3)(t.echo.func)
    with pytest.raises(InvalidTask, match="timeout must be a positive, finite number"):
        task(timeout=0)(t.echo.func)
    with pytest.raises(InvalidTask, match="idempotency_key must be a non-empty string"):
        t.echo.using(idempotency_key="")
    with pytest.raises(TypeError):
        t.echo.using(retry=RetryPolicy())  # retry and timeout belong to the definition


# --- results ---


def test_get_result_of_unknown_ids_and_other_jobs():
    action_job = scheduler.run_after(0, f.failing_action, {})
    for bad_id in ("999999", "not-a-number", str(action_job)):
        with pytest.raises(TaskResultDoesNotExist):
            default_task_backend.get_result(bad_id)
    echo = t.echo.enqueue()
    with pytest.raises(TaskResultMismatch):
        t.noop_task.get_result(echo.id)


def test_exception_class_path_is_read_from_the_stored_traceback():
    def formatted(exc):
        from django_scheduled_actions.worker.outcomes import describe

        return describe(exc)

    try:
        try:
            raise KeyError("inner")
        except KeyError as inner:
            raise t.TaskFailure("line one\nline two: more") from inner
    except t.TaskFailure as exc:
        chained = formatted(exc)
    assert exception_class_path(chained) == "tests.app.tasks.TaskFailure"
    assert exception_class_path(formatted(ValueError("no traceback"))) == "builtins.ValueError"
    assert exception_class_path("worker lost: host:1 stopped renewing its lease") == UNKNOWN_EXCEPTION


# --- Django's signals and logs, sent by the worker ---


def test_django_task_signals_follow_the_job(task_signals):
    ok = t.noop_task.enqueue()
    failing = t.failing_task_value_error.enqueue()
    burst(concurrency=1)
    assert sorted(task_signals, key=lambda s: (int(s[1]), ["enqueued", "started", "finished"].index(s[0]))) == [
        ("enqueued", ok.id, "READY", ScheduledActionsBackend),
        ("started", ok.id, "RUNNING", ScheduledActionsBackend),
        ("finished", ok.id, "SUCCESSFUL", ScheduledActionsBackend),
        ("enqueued", failing.id, "READY", ScheduledActionsBackend),
        ("started", failing.id, "RUNNING", ScheduledActionsBackend),
        ("finished", failing.id, "FAILED", ScheduledActionsBackend),
    ]


def test_djangos_task_logs(caplog):
    with caplog.at_level("DEBUG", logger="django.tasks"):
        result = t.noop_task.enqueue()
        burst()
    messages = [r.getMessage() for r in caplog.records if r.name == "django.tasks"]
    assert [m.split(" path=")[0] for m in messages] == [f"Task id={result.id}"] * 3
    assert ["enqueued" in messages[0], "state=RUNNING" in messages[1], "state=SUCCESSFUL" in messages[2]] == [True] * 3


def test_task_names_resolve_for_jobs_only():
    """Clients (HTTP, forms) look names up with registry.get: a task path never imports code there."""
    with pytest.raises(FunctionNotFound):
        registry.get("django.tasks:tests.app.tasks.echo")
    fn = registry.for_job("django.tasks:tests.app.tasks.echo")
    assert (fn.name, fn.kind, fn.visibility) == ("django.tasks:tests.app.tasks.echo", "action", "internal")
    with pytest.raises(FunctionNotFound, match="not a task defined with @task"):
        registry.for_job("django.tasks:tests.app.tasks.time")


class OwnBackend(ScheduledActionsBackend):
    """A project's subclass of the backend: counts as this app's."""


@pytest.mark.parametrize(
    ("backends", "connected"),
    [
        ({"default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"}}, False),
        (
            {
                "default": {"BACKEND": "django.tasks.backends.immediate.ImmediateBackend"},
                "jobs": {"BACKEND": f"{__name__}.OwnBackend"},
            },
            True,
        ),
        ({"default": {"BACKEND": "no.such.Backend"}}, False),
    ],
)
def test_task_signals_are_only_wired_while_tasks_uses_this_backend(backends, connected):
    """Without this app's backend in TASKS nothing listens to job_scheduled: run_many builds no job objects
    for it, and run_after registers no commit hook."""
    from django_scheduled_actions.signals import job_scheduled

    assert job_scheduled.has_listeners(ScheduledFunction)  # tests.settings uses the backend
    with override_settings(TASKS=backends):
        assert job_scheduled.has_listeners(ScheduledFunction) is connected
    assert job_scheduled.has_listeners(ScheduledFunction)
