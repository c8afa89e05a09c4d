"""``manage.py scheduledactions``: the operators' command line (docs/cli.md). The command parses; each
module here does one group of subcommands through the same queryset methods and functions as the admin
and the worker, and returns a ``Report`` the command prints as text or JSON."""
