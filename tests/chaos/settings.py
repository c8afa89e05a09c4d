"""Settings of the chaos suite's workers and runner: the test settings plus the chaos functions."""

from tests.settings import *  # noqa: F403

INSTALLED_APPS = [*INSTALLED_APPS, "tests.chaos"]  # noqa: F405
