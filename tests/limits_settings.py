"""The test settings plus a queue limit, for the worker processes of tests/db/test_limits.py."""

from tests.settings import *  # noqa: F403

SCHEDULED_ACTIONS_QUEUE_CONCURRENCY = {"limited-queue": 3}  # orchestration_functions.LIMITED_QUEUE
