from django.apps import AppConfig


class PatternsConfig(AppConfig):
    name = "patterns"
    verbose_name = "Patterns from the Convex guide"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import log_filters

        log_filters.install()  # the fake provider's planned failures are not logged as alarms
