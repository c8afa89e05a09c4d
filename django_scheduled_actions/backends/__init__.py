"""A ``django.tasks`` backend (Django 6+): Django's ``@task`` functions run on this app's worker.

    TASKS = {"default": {"BACKEND": "django_scheduled_actions.backends.ScheduledActionsBackend"}}

An enqueued task is a ``ScheduledFunction`` job of kind ``action`` named ``"django.tasks:<module path>"``,
written on the caller's connection (atomic with ``transaction.atomic()``), claimed and run by
``manage.py runworker``. See docs/how-to/django-tasks.md.
"""

from importlib.util import find_spec

if find_spec("django.tasks") is None:  # Django 5.2
    raise ImportError(
        "django_scheduled_actions.backends is a backend for django.tasks, which Django 6.0 added; "
        "upgrade Django to use @task, or schedule functions with django_scheduled_actions.scheduler"
    )

from .backend import ScheduledActionsBackend  # noqa: E402
from .jobs import TaskAborted  # noqa: E402
from .task import ScheduledActionsTask  # noqa: E402

__all__ = ["ScheduledActionsBackend", "ScheduledActionsTask", "TaskAborted"]
