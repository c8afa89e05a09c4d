"""Group commit of action successes and starts: what the executor threads hand in while one write is in
flight goes together in the next (one statement, one commit)."""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future

from django.db import connections

from ..store import sessions
from .outcomes import Claimed, Outcome, Written

Settle = Callable[[list[Outcome], list[Claimed]], tuple[set[int], BaseException | None]]


class Ledger(threading.Thread):
    """Writes with ``write`` (``Outcomes.settle``) what the threads hand in. A thread waits until its write
    has committed before it runs another body, so a killed worker leaves at most one action per thread
    started and unrecorded, as without batching; an idle worker adds no delay."""

    MAX_BATCH = 500

    def __init__(self, write: Settle, using: str):
        super().__init__(name="scheduled-actions-ledger", daemon=True)
        self.write, self.using = write, using
        self.requests: queue.Queue[_Request | None] = queue.Queue()
        self.writing = threading.Lock()  # held by whoever is writing: this thread or a caller of settle

    def settle(self, outcomes: list[Outcome], starts: list[Claimed]) -> tuple[set[int], BaseException | None]:
        """Write now on the caller's connection if nothing else is being written (no hand-off to this
        thread: ~0.3 ms of an idle worker's action start); else hand the write in and wait until it is
        committed (or failed), grouped with what others hand in meanwhile. Once stopped: written here."""
        if not self.is_alive():
            return self.write(outcomes, starts)
        if self.requests.empty() and self.writing.acquire(blocking=False):
            try:
                return self.write(outcomes, starts)
            finally:
                self.writing.release()
        request = _Request(outcomes, starts)
        self.requests.put(request)
        while not request.written.wait(1.0):
            if not self.is_alive():  # stopped meanwhile: write it here
                return self.write(outcomes, starts)
        return request.started, request.error

    def submit(self, outcomes: list[Outcome], starts: list[Claimed]) -> Future[tuple[set[int], BaseException | None]]:
        """Hand the write in without waiting: an event loop awaits the future (async actions)."""
        request = _Request(outcomes, starts, Future())
        if self.is_alive():
            self.requests.put(request)
        else:  # stopped: written on a thread of its own, as settle would
            threading.Thread(target=lambda: request.finish(*self.write(outcomes, starts)), daemon=True).start()
        return request.future  # type: ignore[return-value]

    def stop(self) -> None:
        self.requests.put(None)

    def run(self) -> None:
        sessions.bound(self.using)
        running = True
        while running:
            batch = [self.requests.get()]
            with self.writing:  # what is handed in while a caller writes joins this batch
                while len(batch) < self.MAX_BATCH and not self.requests.empty():
                    batch.append(self.requests.get_nowait())
                running = None not in batch
                requests = [request for request in batch if request is not None]
                if requests:
                    started, error = self.write(
                        [o for r in requests for o in r.outcomes], [s for r in requests for s in r.starts]
                    )
            for request in requests:
                request.finish(started, error)
        connections.close_all()


class _Request:
    def __init__(self, outcomes: list[Outcome], starts: list[Claimed], future: Future[Written] | None = None):
        self.outcomes, self.starts, self.future = outcomes, starts, future
        self.started: set[int] = set()
        self.error: BaseException | None = None
        self.written = threading.Event()

    def finish(self, started: set[int], error: BaseException | None) -> None:
        self.started, self.error = started, error
        self.written.set()
        if self.future is not None:
            self.future.set_result((started, error))
