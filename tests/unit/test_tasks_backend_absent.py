"""On Django 5.2 (no django.tasks) the backend is not offered, and nothing else depends on it."""

from importlib.util import find_spec

import pytest

pytestmark = pytest.mark.skipif(find_spec("django.tasks") is not None, reason="Django 6 has django.tasks")


def test_the_backend_module_explains_what_it_needs():
    with pytest.raises(ImportError, match="django.tasks, which Django 6.0 added"):
        import django_scheduled_actions.backends  # noqa: F401


def test_the_app_and_its_tests_run_without_it(settings):
    import django_scheduled_actions

    assert django_scheduled_actions.scheduler is not None
    assert not hasattr(settings, "TASKS")
