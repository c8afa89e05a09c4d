from importlib.util import find_spec

from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules

from . import (
    checks,  # noqa: F401 - registers the system checks
    signal_handlers,
)


class ScheduledActionsConfig(AppConfig):
    name = "django_scheduled_actions"
    label = "django_scheduled_actions"
    verbose_name = "Scheduled actions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        signal_handlers.connect()
        # here: the workflows' internal functions and step resolver need the models; every process
        # (web, shell, worker) can then start, replay and run workflows
        from . import workflows  # noqa: F401

        autodiscover_modules("functions")
        autodiscover_modules("crons")  # after functions: crons refer to them
        if find_spec("django.tasks") is not None:  # Django 6+: run @task jobs, send Django's task signals
            # here: Django 5.2 has no django.tasks, and the backend's handlers need the app registry
            from .backends import signal_handlers as task_signal_handlers

            task_signal_handlers.connect()
