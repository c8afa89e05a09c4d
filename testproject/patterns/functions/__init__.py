"""The guide's patterns, one module each (imported at start-up: this package is the app's ``functions``)."""

from . import (  # noqa: F401 - importing registers the functions
    durable,
    emails,
    fanout,
    maintenance,
    messages,
    orders,
    payments,
    reminders,
    retries,
    subscriptions,
)
