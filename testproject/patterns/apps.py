from django.apps import AppConfig


class PatternsConfig(AppConfig):
    name = "patterns"
    verbose_name = "Patterns from the Convex guide"
    default_auto_field = "django.db.models.BigAutoField"
