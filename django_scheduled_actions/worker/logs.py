"""The worker's console output in projects that configure no logging for the app.

``django-admin startproject`` writes no ``LOGGING``: the app's logger then has no handler, and Python
prints only warnings and errors, bare. ``runworker`` then gives the ``django_scheduled_actions`` logger
a stderr handler of its own, at the level ``-v`` asks for (``LEVELS``). A project that configures a
handler for that logger, or for the root logger, stays in charge: nothing is added and no level changed,
so no line is printed twice.
"""

from __future__ import annotations

import logging
import sys

LOGGER = "django_scheduled_actions"
# -v 0: errors only (final failures, with their traceback); 1 (the default): the start and stop lines,
# each job's outcome, warnings (as django-tasks' db_worker and `celery worker -l info`); 2: also each job's
# start; 3: as 2, with the thread of each line.
LEVELS = {0: logging.ERROR, 1: logging.INFO, 2: logging.DEBUG, 3: logging.DEBUG}
FORMAT = "%(asctime)s %(levelname)s %(message)s"
THREADED_FORMAT = "%(asctime)s %(levelname)s [%(threadName)s] %(message)s"


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]  # generic only in the stubs
    """The handler ``console_logging`` adds: recognised when ``runworker`` runs again in one process."""


def console_logging(verbosity: int) -> bool:
    """Give the app's logger a stderr handler at the level of ``verbosity`` (0-3), unless the project
    configured logging for it (a handler on it or on an ancestor it propagates to). True if it did."""
    logger = logging.getLogger(LOGGER)
    handler = next((h for h in logger.handlers if isinstance(h, ConsoleHandler)), None)
    if handler is None:
        if logger.hasHandlers():
            return False
        handler = ConsoleHandler(sys.stderr)
        logger.addHandler(handler)
    verbosity = min(max(verbosity, 0), 3)
    handler.setFormatter(logging.Formatter(THREADED_FORMAT if verbosity >= 3 else FORMAT))
    logger.setLevel(LEVELS[verbosity])
    return True
