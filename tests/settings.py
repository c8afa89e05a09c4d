"""Test settings: the demo project plus the test app. DATABASE_URL picks the database."""

from importlib.util import find_spec

from testproject.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.app"]  # noqa: F405
# TEST_OLD_RELEASE=1: a worker of the previous release, which lacks the functions of tests/release2 (rolling deploys)
if not env.bool("TEST_OLD_RELEASE", default=False):  # noqa: F405
    INSTALLED_APPS.append("tests.release2")
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DATABASES["default"]["TEST"] = {"NAME": env("TEST_DATABASE_NAME", default=None)}  # noqa: F405
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):  # noqa: F405
    # a file, not :memory:, so worker subprocesses and threads share it
    DATABASES["default"]["TEST"]["NAME"] = env("TEST_DATABASE_NAME", default=str(BASE_DIR / "test.sqlite3"))  # noqa: F405
# LISTEN_DATABASE_URL: a direct connection to LISTEN on (worker processes behind PgBouncer, test_pgbouncer_processes.py)
if env("LISTEN_DATABASE_URL", default=None):  # noqa: F405
    DATABASES["listen"] = env.db("LISTEN_DATABASE_URL")  # noqa: F405
    SCHEDULED_ACTIONS_LISTEN_DATABASE = "listen"
# TEST_DJANGO_POOL=1: PostgreSQL connections through Django's own pool (psycopg_pool; test_django_pool.py)
if env.bool("TEST_DJANGO_POOL", default=False):  # noqa: F405
    DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {"min_size": 1, "max_size": 8, "timeout": 30}  # noqa: F405
    DATABASES["default"]["CONN_MAX_AGE"] = 0  # noqa: F405
SCHEDULED_ACTIONS_POLL_INTERVAL = 0.2
# off but in tests/db/test_telemetry.py: the SDK providers it installs are global to the test process, and
# other tests count the receivers of the signals (the metrics connect theirs while telemetry is on)
SCHEDULED_ACTIONS_TELEMETRY = False
# worker logs in process tests: WARNING keeps failure messages short; TEST_LOG_LEVEL=INFO when running one down
LOGGING["loggers"]["django_scheduled_actions"]["level"] = env("TEST_LOG_LEVEL", default="WARNING")  # noqa: F405
SCHEDULED_ACTIONS_LEASE_SECONDS = env.float("SCHEDULED_ACTIONS_LEASE_SECONDS", default=60)  # noqa: F405
SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE = env.float("SCHEDULED_ACTIONS_UNKNOWN_FUNCTION_GRACE", default=600)  # noqa: F405
if find_spec("django.tasks") is not None:  # Django 6+: @task functions run on the worker
    TASKS = {
        "default": {
            "BACKEND": "django_scheduled_actions.backends.ScheduledActionsBackend",
            "QUEUES": ["default", "tasks-other"],
        }
    }
