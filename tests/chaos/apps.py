from django.apps import AppConfig


class ChaosConfig(AppConfig):
    name = "tests.chaos"
    label = "chaos"

    def ready(self) -> None:
        from django_scheduled_actions.cron.definitions import cron_registry

        cron_registry.discard("demo.crons")  # the load's only cron is tests/app/crons.py's one-second interval
