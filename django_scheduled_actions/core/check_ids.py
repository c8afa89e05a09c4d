"""The ids of the app's system checks, all of them, in one place.

An id, once given, stays: projects name them in ``SILENCED_SYSTEM_CHECKS``, so a new setting or a new
check takes the next free number and no id ever follows a position in a list. docs/reference/checks.md lists them too.
"""

from __future__ import annotations

UNKNOWN_SETTING = "scheduled_actions.E001"  # a SCHEDULED_ACTIONS_* setting that does not exist (checks.py)

# A bad value of a setting (checks.py), by the setting's name without SCHEDULED_ACTIONS_.
SETTINGS: dict[str, str] = {
    "POLL_INTERVAL": "scheduled_actions.E002",
    "LEASE_SECONDS": "scheduled_actions.E003",
    "ACTION_TIMEOUT": "scheduled_actions.E004",
    "RETENTION": "scheduled_actions.E005",
    "IDEMPOTENCY_TTL": "scheduled_actions.E006",
    "STRICT_ACTIONS": "scheduled_actions.E007",
    "MAX_ARGS_BYTES": "scheduled_actions.E008",
    "MUTATION_ISOLATION": "scheduled_actions.E009",
    "QUEUE_CONCURRENCY": "scheduled_actions.E010",
    "UNKNOWN_FUNCTION_GRACE": "scheduled_actions.E011",
    "LISTEN_DATABASE": "scheduled_actions.E012",
    "TELEMETRY": "scheduled_actions.E013",
}

# A bad code-defined cron (cron/definitions.py), naming the cron.
CRON_DUPLICATE = "scheduled_actions.E101"
CRON_BAD_EXPRESSION = "scheduled_actions.E102"
CRON_UNKNOWN_TIMEZONE = "scheduled_actions.E103"
CRON_BAD_INTERVAL = "scheduled_actions.E104"
CRON_NOT_SCHEDULABLE = "scheduled_actions.E105"
CRON_BAD_ARGUMENTS = "scheduled_actions.E106"
CRON_BAD_NAME = "scheduled_actions.E107"

# A bad TASKS entry for the django.tasks backend (backends/backend.py).
TASKS_UNKNOWN_OPTION = "scheduled_actions.E201"
TASKS_UNKNOWN_DATABASE = "scheduled_actions.E202"
TASKS_APP_NOT_INSTALLED = "scheduled_actions.E203"

# A bad rate_limit= on a function (checks.py), naming the function.
RATE_LIMIT_BAD = "scheduled_actions.E301"

# Warnings: a SQLite database lacking what a worker beside a web process needs (checks.py), naming the alias.
SQLITE_NO_WAL = "scheduled_actions.W401"
SQLITE_NO_BUSY_TIMEOUT = "scheduled_actions.W402"
