"""Threads for tests: callables released at the same moment (races against the database), and a worker
running in the test process."""

from __future__ import annotations

import threading
from collections.abc import Callable

from django.db import connection

from django_scheduled_actions.worker.worker import Worker


def at_once(calls: list[Callable[[], object]], timeout: float = 60) -> list[BaseException]:
    """Run each call in its own thread, all starting together; returns the errors they raised."""
    start, errors = threading.Barrier(len(calls)), []

    def run(call: Callable[[], object]) -> None:
        try:
            start.wait()
            call()
        except Exception as exc:  # reported to the caller
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout)
    return errors


class WorkerThread:
    """A worker running in a thread of the test process, stopped at the end of the test."""

    def __init__(self, **options):
        self.worker = Worker(**{"poll_interval": 0.05, **options})
        self.thread = threading.Thread(target=self.worker.run, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self.worker

    def __exit__(self, *exc):
        self.worker.stop()
        self.thread.join(15)
        assert not self.thread.is_alive(), "worker thread did not stop"
