from django.apps import AppConfig
from django.utils.module_loading import autodiscover_modules


class ScheduledActionsConfig(AppConfig):
    name = "django_scheduled_actions"
    label = "django_scheduled_actions"
    verbose_name = "Scheduled actions"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401 - registers the system checks

        autodiscover_modules("functions")
        autodiscover_modules("crons")  # after functions: crons refer to them
