"""A project as ``django-admin startproject`` leaves it as far as logging goes: no ``LOGGING`` (unlike
tests/settings.py, which inherits the demo project's). For tests/process/test_worker_logging.py; DATABASE_URL picks
the database. ``FRESH_ROOT_LOGGING=1`` adds a root handler, as projects that log everything through root do.
"""

import environ

env = environ.Env()

SECRET_KEY = "fresh-project-not-secret"  # noqa: S105 - test settings
INSTALLED_APPS = ["django.contrib.auth", "django.contrib.contenttypes", "django_scheduled_actions", "tests.app"]
DATABASES = {"default": env.db("DATABASE_URL")}
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 20}
elif DATABASES["default"]["ENGINE"].endswith("mysql"):
    DATABASES["default"]["OPTIONS"] = {"charset": "utf8mb4"}
USE_TZ = True
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
SCHEDULED_ACTIONS_POLL_INTERVAL = 0.2

if env.bool("FRESH_ROOT_LOGGING", default=False):
    LOGGING = {
        "version": 1,
        "disable_existing_loggers": False,
        "formatters": {"root": {"format": "ROOT %(levelname)s %(message)s"}},
        "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "root"}},
        "root": {"handlers": ["console"], "level": "INFO"},
    }
