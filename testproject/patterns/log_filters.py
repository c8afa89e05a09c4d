"""The fake provider's planned failures are the demo working, not a fault: they are said as such in the log.

Django logs each 4xx/5xx answer twice: a ``django.request`` warning ("Service Unavailable: /fake-provider/...")
and runserver's coloured access line (``django.server``). For the fake provider's paths the first is dropped
and the second says that the failure was simulated; every other request is logged as Django logs it.
"""

from __future__ import annotations

import logging

PREFIX = "/fake-provider/"


class SimulatedProviderFailures(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if not isinstance(status, int) or status < 400 or PREFIX not in _path(record):
            return True
        if record.name == "django.request":
            return False  # the access line below says it
        record.msg = f"{record.getMessage()} (a simulated failure of the fake provider)"
        record.args = ()
        record.status_code = None  # runserver's formatter colours by status: plain, it is no alarm
        record.levelno, record.levelname = logging.INFO, "INFO"
        return True


def _path(record: logging.LogRecord) -> str:
    request = getattr(record, "request", None)
    path = getattr(request, "path", None)
    if isinstance(path, str):
        return path
    return (
        str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
    )  # runserver: "POST /x HTTP/1.1"


def install() -> None:
    for name in ("django.request", "django.server"):
        logging.getLogger(name).addFilter(SimulatedProviderFailures())
