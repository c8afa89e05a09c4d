"""The worker's database connections, bounded: ``--db-connections`` in all (default 8). The heartbeat has
one of its own, opened first and never given up; on PostgreSQL the listener has one for LISTEN; every other
read and write of the worker (claims, outcomes, upkeep, the ledger, crons, each mutation with its body) and
every ``ctx.run_*`` of the bodies it runs, sync or async, runs on one of the rest: a few threads that each
keep one connection for good. Work that finds them all busy waits in line for one; it never fails for
want of a connection, and nothing waiting holds a lock that the work ahead of it needs (work a thread of
these submits runs inline). Where the database grants fewer connections than threads, a thread it refuses
passes its work on to the line again while another thread holds a connection, so the work runs there.

A worker whose executor threads fit beside ``BOOKKEEPING`` of these (``--concurrency 4`` of the default 8)
gives each thread that needs one a *lane*: its own connection, in place of one of these threads, so its
mutations run on the thread itself (a hand-over per mutation cost the no-op drain 10-15%).

Lanes and these threads share one budget, taken as it is needed: these threads are started one at a time
when work finds every one of them busy, and a lane is taken at an executor thread's first database work.
An executor thread that runs only async actions never takes one, and its share goes to the ``ctx`` calls
of the event loop; a thread of these that grew into a lane's share gives it back when a lane wants it.
(Reserved for lanes, the shares left the loop two connections of six: a drain of 50 ms async actions, 200
in flight, went 1.3x faster given them all, interleaved runs: 454-502/s before, 583-651/s; 1.7-1.8x in a
busier hour.)"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from contextlib import contextmanager
from typing import Any, TypeVar

from django.db import DatabaseError, InterfaceError, OperationalError, connections

from ..core import guards
from ..store import sessions
from ..store.errors import is_connection_error

T = TypeVar("T")
DEFAULT = 8
BOOKKEEPING = 2  # connections kept by these threads when executor threads have lanes: claims, ledger, upkeep
CONNECT_PATIENCE = 30.0  # seconds work waits for the database to accept a connection
logger = logging.getLogger("django_scheduled_actions")


class Connections:
    def __init__(self, size: int, using: str, executors: int = 0):
        if size < 1:
            raise ValueError("the worker needs at least one database connection for its work")
        self.size, self.using = size, using
        # lanes: connections executor threads may keep as their own, at most
        self.lanes = executors if 0 < executors <= size - BOOKKEEPING else 0
        self._lanes_taken = 0
        self._lanes_wanted = 0  # executor threads waiting for one of these threads to give its share back
        self._local = threading.local()
        self._lock = threading.Lock()
        self._holding: set[int] = set()  # these threads whose connection is open (not the lanes)
        self._work: queue.SimpleQueue[_Work | None] = queue.SimpleQueue()
        self._idle = threading.Semaphore(0)  # these threads waiting for work
        self._threads: list[threading.Thread] = []

    def _submit(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> Future[T]:
        """Queue ``work`` for these threads; start one more if none is idle and the budget allows."""
        future: Future[T] = Future()
        self._work.put((future, work, args, kwargs))
        if self._idle.acquire(blocking=False):  # one is waiting: it takes this
            return future
        with self._lock:
            grow = len(self._threads) + self._lanes_taken + self._lanes_wanted < self.size
            if grow:
                thread = threading.Thread(
                    target=self._serve, name=f"scheduled-actions-db_{len(self._threads)}", daemon=True
                )
                self._threads.append(thread)
        if grow:
            thread.start()
        return future

    def _serve(self) -> None:
        self._enter()
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:  # idle now, and counted so only while it waits: ``_submit`` starts another
                self._idle.release()  # thread when none waits
                item = self._work.get()
            if item is None:  # close(): one per thread
                connections.close_all()
                return
            future, work, args, kwargs = item
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(work(*args, **kwargs))
                except BaseException as exc:  # the caller's to handle, as ThreadPoolExecutor's would be
                    future.set_exception(exc)
            del item, future, work, args, kwargs  # no references held while waiting
            with self._lock:  # a lane wanted the share this thread was lent: give it back
                leave = len(self._threads) + self._lanes_taken + self._lanes_wanted > self.size
                if leave:
                    self._threads.remove(threading.current_thread())
                    self._holding.discard(threading.get_ident())
            if leave:
                connections.close_all()
                return

    def _open(self) -> bool:
        """Have this thread's connection open. While the database refuses one (a connection limit, other
        clients holding the rest) and another of these threads holds one, False at once: the work goes
        to that one rather than wait here (fewer connections than threads is slower, never stuck). With
        none held it waits for one (``wait_for_connection``). A lane refused passes its work to these."""
        me = None if getattr(self._local, "lane", None) else threading.get_ident()
        if connections[self.using].connection is not None:
            return True
        with self._lock:
            self._holding.discard(me)
            others = bool(self._holding)
        try:
            wait_for_connection(self.using, patience=0.0 if others else CONNECT_PATIENCE)
        except DatabaseError as exc:
            if not (others and is_connection_error(exc)):
                raise
            logger.debug("database refused a connection; the work goes to a thread holding one error=%s", exc)
            return False
        if me is not None:
            with self._lock:
                self._holding.add(me)
        return True

    def _enter(self) -> None:
        self._local.mine = True
        sessions.bound(self.using)

    def here(self) -> bool:
        """Whether the calling thread is one of these (its work then runs inline)."""
        return getattr(self._local, "mine", False)

    @contextmanager
    def lane(self) -> Iterator[None]:
        """Around an executor thread's life: its first database work takes a lane, while the budget has one,
        and runs on the thread from then on; the lane is given back, its connection closed, at the end."""
        self._local.lane, self._local.wanting = None, False  # lane None: may take one; True: holds one
        try:
            yield
        finally:
            with self._lock:
                self._lanes_taken -= bool(self._local.lane)
                self._lanes_wanted -= self._local.wanting
            if self._local.lane:
                connections[self.using].close()
            self._local.lane, self._local.wanting = False, False

    def _in_lane(self) -> bool:
        """Whether the calling executor thread has a lane, taking one if it may. Lent to these threads
        (they grew into it while no executor thread needed it), a share is asked back: one of them leaves
        after its current work, and this thread's work goes to them meanwhile."""
        held = getattr(self._local, "lane", False)
        if held is None:
            wanting = getattr(self._local, "wanting", False)
            with self._lock:
                others_wanted = self._lanes_wanted - wanting
                if self._lanes_taken >= self.lanes:
                    held = False
                elif len(self._threads) + self._lanes_taken + others_wanted < self.size:
                    held = True
                    self._lanes_taken += 1
                elif not wanting:
                    self._lanes_wanted += 1
                    self._local.wanting = True
                if held is not None and wanting:
                    self._lanes_wanted -= 1
                    self._local.wanting = False
            self._local.lane = held
        return bool(held)

    def call(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``work`` on one of the connections' threads and return its result (inline on one of them,
        and on an executor thread that holds a lane)."""
        if self.here():
            return work(*args, **kwargs)
        if self._in_lane():
            self._local.mine = True  # what it calls in turn runs inline
            try:
                return self._run(work, *args, **kwargs)
            finally:
                self._local.mine = False
        future: Future[T] = self._submit(self._run, work, *args, **kwargs)
        return future.result()

    def through(self, work: Callable[[], T]) -> T:
        """``call`` of a zero-argument work: the ``through`` of the bodies' ``ctx``."""
        return self.call(work)

    def awaited(self, work: Callable[[], T]) -> asyncio.Future[T]:
        """The same, awaited from an event loop (an async action's ``ctx``)."""
        future: Future[T] = self._submit(self._run, work)
        return asyncio.wrap_future(future)

    def _run(self, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        drop_broken_connections()
        if not self._open():  # this thread waits for the one that runs it: it could not connect anyway
            elsewhere: Future[T] = self._submit(self._run, work, *args, **kwargs)
            return elsewhere.result()
        try:
            # the worker's own work, whatever policy the thread that first needed this one held: each
            # ctx.run_* sets its own (a query stays read-only)
            with guards.policy("allow"):
                return work(*args, **kwargs)
        except (OperationalError, InterfaceError):
            # this thread's connection may be broken: the next work here opens a new one (whoever
            # called retries as it would have, on a connection of its own)
            connections.close_all()
            with self._lock:
                self._holding.discard(threading.get_ident())
            raise

    def close(self) -> None:
        """Close each thread's connection and let the threads end (lanes close with their threads)."""
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._work.put(None)
        for thread in threads:
            thread.join()


_Work = tuple[Future[Any], Callable[..., Any], tuple[Any, ...], dict[str, Any]]


class PooledStore:
    """A worker ``Store`` whose every read and write runs on the worker's ``Connections``."""

    def __init__(self, store: Any, connections: Connections):
        self._store, self._connections, self.using = store, connections, store.using

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._store, name)
        return lambda *args, **kwargs: self._connections.call(method, *args, **kwargs)

    def reconnect(self) -> None:
        """On a connections' thread (a mutation whose connection failed): close its connection. Elsewhere
        nothing: a connections' thread whose work failed on its connection has closed it already."""
        if self._connections.here():
            self._store.reconnect()


def wait_for_connection(using: str, patience: float = CONNECT_PATIENCE) -> None:
    """Open this thread's connection if it is not open, waiting while the database refuses it (too many
    connections, a connection limit, a restart): nothing has run yet, so waiting is safe, and no job fails
    for want of a connection. Raises the database's error after ``patience`` seconds, or at once if it is
    not a refusal (the caller's retries, ``persist`` or a hand-back, take it from there)."""
    conn = connections[using]
    deadline, delay = time.monotonic() + patience, 0.05
    while conn.connection is None:
        try:
            with guards.policy("allow"):  # opening runs setup statements (MySQL: SET SESSION ...)
                conn.ensure_connection()
        except DatabaseError as exc:
            if not is_connection_error(exc) or time.monotonic() + delay > deadline:
                raise
            logger.debug("database refused a connection, waiting error=%s", exc)
            time.sleep(delay)
            delay = min(delay * 2, 1.0)


def drop_broken_connections() -> None:
    """Close this thread's connections that saw an error and no longer work; the next query reconnects."""
    for conn in connections.all(initialized_only=True):
        if conn.errors_occurred and conn.connection is not None and not conn.in_atomic_block:
            conn.close_if_unusable_or_obsolete()
