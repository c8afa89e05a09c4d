from django.core.management.base import BaseCommand, CommandError

from ...worker.logs import console_logging
from ...worker.worker import Worker


def positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise ValueError(value)
    return number


def positive_float(value: str) -> float:
    number = float(value)
    if not number > 0 or number == float("inf"):
        raise ValueError(value)
    return number


class Command(BaseCommand):
    help = "Run scheduled mutations and actions: claim due jobs and execute them."

    def add_arguments(self, parser):
        parser.add_argument("--concurrency", type=positive_int, default=4, help="executor threads (default 4)")
        parser.add_argument(
            "--queue",
            action="append",
            dest="queues",
            metavar="NAME",
            help="only run jobs of this queue (repeatable; default: all queues)",
        )
        parser.add_argument("--burst", action="store_true", help="run everything due, then exit 0")
        parser.add_argument("--max-jobs", type=positive_int, help="exit after running this many jobs")
        parser.add_argument(
            "--poll-interval",
            type=positive_float,
            help="seconds between polls (default SCHEDULED_ACTIONS_POLL_INTERVAL)",
        )
        parser.add_argument("--worker-id", help="name of this worker (default host:pid:random)")
        parser.add_argument(
            "--grace",
            type=positive_float,
            default=30.0,
            help="seconds running jobs get to finish after SIGTERM/SIGINT (default 30)",
        )
        parser.add_argument("--database", default="default", help="database alias (default 'default')")
        parser.add_argument(
            "--action-group",
            type=positive_int,
            default=8,
            help="quick actions (under 5 ms each) started together in one write, at most "
            "(default 8; 1 starts each action alone: a kill -9 then leaves at most one "
            "started action per thread that never ran)",
        )
        parser.add_argument(
            "--async-concurrency",
            type=positive_int,
            default=100,
            help="async def actions in flight at once, on one event loop (default 100)",
        )
        parser.add_argument(
            "--db-connections",
            type=positive_int,
            default=8,
            help="database connections this worker process holds at most, for its own work and "
            "every body's ctx.run_* together (default 8; a body waits for one, never fails)",
        )
        parser.add_argument(
            "--no-crons", action="store_true", help="do not sync or tick cron jobs in this worker (--burst never does)"
        )

    def handle(self, *args, **options):
        try:
            worker = Worker(
                concurrency=options["concurrency"],
                queues=options["queues"],
                burst=options["burst"],
                max_jobs=options["max_jobs"],
                poll_interval=options["poll_interval"],
                worker_id=options["worker_id"],
                using=options["database"],
                grace=options["grace"],
                crons=not options["no_crons"],
                action_group=options["action_group"],
                async_concurrency=options["async_concurrency"],
                db_connections=options["db_connections"],
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        console_logging(options["verbosity"])  # only if the project configured no logging for the app
        worker.run()
