"""``manage.py scheduledactions SUBCOMMAND``: list, inspect, cancel, retry and run jobs now, list crons and
workers, prune (docs/cli.md). Exit codes: 0 done, 1 some job could not be acted on (or was not found),
2 a usage error."""

from __future__ import annotations

import argparse

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from ..cli import changes, jobs, overview, parsing
from ..cli.output import Report, to_json

USAGE_ERROR = 2
NOT_DONE = 1


class UsageParser(CommandParser):
    """Usage errors exit 2, from the shell (argparse's own exit) and from ``call_command`` (a
    ``CommandError`` whose ``returncode`` is 2) alike."""

    def error(self, message):
        if self.called_from_command_line:
            super().error(message)
        raise CommandError(f"Error: {message}", returncode=USAGE_ERROR)


class Command(BaseCommand):
    help = "Inspect and operate on scheduled jobs, crons and workers (subcommands: see --help)."

    def create_parser(self, prog_name, subcommand, **kwargs):
        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.__class__ = UsageParser  # BaseCommand builds a CommandParser; errors in it exit 2 as well
        return parser

    def add_arguments(self, parser):
        common = argparse.ArgumentParser(add_help=False)
        common.add_argument("--json", action="store_true", help="print one JSON document (for scripts)")
        common.add_argument("--database", default="default", help="database alias (default 'default')")
        sub = parser.add_subparsers(dest="action", metavar="SUBCOMMAND", required=True, parser_class=UsageParser)
        listing = sub.add_parser("jobs", parents=[common], help="list jobs, newest first")
        listing.add_argument(
            "--state",
            action="append",
            type=parsing.states,
            default=[],
            help="pending, in_progress, success, failed or canceled; repeat it or separate with commas",
        )
        listing.add_argument("--function", action="append", default=[], help="the function's registered name")
        listing.add_argument("--queue", action="append", default=[], help="the queue's name")
        listing.add_argument("--since", type=parsing.since, help="created since: 10m, 2h, 3d or an ISO datetime")
        listing.add_argument("--limit", type=parsing.count, default=50, help="most jobs shown (default 50; 0: all)")
        show = sub.add_parser("show", parents=[common], help="every field of one job")
        show.add_argument("id", type=parsing.job_id, metavar="ID")
        for name, what in (
            ("cancel", "cancel pending and running jobs"),
            ("retry", "retry failed and canceled jobs as new jobs"),
            ("run-now", "make pending jobs due now"),
        ):
            acting = sub.add_parser(name, parents=[common], help=what)
            acting.add_argument("ids", type=parsing.job_id, nargs="+", metavar="ID")
        sub.add_parser("crons", parents=[common], help="cron definitions, their last and next tick")
        sub.add_parser("workers", parents=[common], help="worker processes, their status and heartbeat")
        prune = sub.add_parser("prune", parents=[common], help="delete finished rows older than the retention")
        prune.add_argument("--older-than", type=parsing.duration, help="instead of SCHEDULED_ACTIONS_RETENTION")
        prune.add_argument("--dry-run", action="store_true", help="count what would be deleted, delete nothing")

    def handle(self, *args, **options):
        if options["database"] not in connections:
            known = ", ".join(connections)
            raise CommandError(
                f"unknown database alias {options['database']!r}: the aliases are {known}", returncode=USAGE_ERROR
            )
        report = self.report(options["action"], options["database"], options)
        self.stdout.write(to_json(report.document) if options["json"] else "\n".join(report.lines))
        if report.failure:
            raise CommandError(report.failure, returncode=NOT_DONE)

    def report(self, action: str, using: str, options) -> Report:
        if action == "jobs":
            states = [state for chosen in options["state"] for state in chosen]
            return jobs.list_jobs(
                using, states, options["function"], options["queue"], options["since"], options["limit"]
            )
        if action == "show":
            return jobs.show_job(using, options["id"])
        if action in changes.VERBS:
            return changes.act(action, using, options["ids"])
        if action == "crons":
            return overview.crons(using)
        if action == "workers":
            return overview.workers(using)
        return overview.prune(using, options["older_than"], options["dry_run"])
