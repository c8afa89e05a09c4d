"""Async actions: one event loop per worker, at most ``--async-concurrency`` bodies on it at once.

An executor thread hands an ``async def`` action here (``submit`` waits only for a free slot) and goes on
with the next job. The start, the body and the outcome are those of a sync action (actions.py): the start
and the success go through the worker's ledger (group commit) from a helper thread, never from the loop;
the body's ``ctx`` calls are awaited on the worker's connections; the timeout cancels the coroutine. A
body that blocks the loop (CPU work, a sync call) delays the other coroutines but not the worker: the
heartbeat, claims and sync bodies run on threads of their own, and a watchdog logs which job holds the loop.

A slot is held from the start's write to the end of the body; the outcome's write, which waits for the
ledger's next commit, holds none (50 ms actions, 200 slots: every slot was taken, a third of each job's
time in a slot spent waiting for that commit).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable, Coroutine
from concurrent.futures import Future
from typing import Any

from .. import signals, telemetry
from ..calls.run import call_async_action_body
from ..conf import app_settings
from ..core import guards
from ..core.jobs import JobInfo
from ..core.registry import Function
from ..exceptions import JobTimeout
from ..models import ScheduledFunction
from .connections import Connections
from .outcomes import Claimed, Outcome, Outcomes, Written, send

logger = logging.getLogger("django_scheduled_actions")
BLOCKED_SECONDS = 1.0  # a loop that has not come round for this long is reported, with the job holding it
Submit = Callable[[list[Outcome], list[Claimed]], Future[Written]]  # the ledger's: the write as a future


class AsyncRunner(threading.Thread):
    def __init__(
        self,
        slots: int,
        outcomes: Outcomes,
        submit: Submit,
        connections: Connections,
        done: Callable[[ScheduledFunction], None],
    ):
        super().__init__(name="scheduled-actions-async", daemon=True)
        self.outcomes, self.submit_write, self.connections, self.done = outcomes, submit, connections, done
        self.slots, self.size = threading.BoundedSemaphore(slots), slots
        self.holding = 0  # slots held: bodies starting or running (their outcomes' writes hold none)
        self._holding_lock = threading.Lock()  # taken on executor threads, given back on the loop
        self.submitted = 0  # async actions handed in so far (read by the claims: none yet, no room claimed)
        self.loop = asyncio.new_event_loop()
        self.running: dict[asyncio.Task[None], ScheduledFunction] = {}
        self.beat = time.monotonic()
        self._ready = threading.Event()
        self.spans = telemetry.active()  # None: the bodies run as they are (no span, nothing imported)
        # the bodies' ctx calls, carrying the body's trace to the connections' threads when telemetry is on
        self.awaited = telemetry.carrying_awaited(connections.awaited)
        self.through = telemetry.carrying(connections.through)
        self._watchdog = threading.Thread(target=self._watch, name="scheduled-actions-async-watchdog", daemon=True)

    def run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._tick)
        self.loop.call_soon(self._ready.set)
        self._watchdog.start()
        # the loop thread runs nothing but action bodies: no ORM here (their ctx calls run elsewhere)
        try:
            with guards.policy("action" if app_settings.STRICT_ACTIONS else "allow"):
                self.loop.run_forever()
        finally:
            self.loop.close()

    def submit(self, fn: Function, job: ScheduledFunction, token: str) -> None:
        """Run the action on the loop once a slot is free (waits for one)."""
        self.slots.acquire()
        with self._holding_lock:
            self.holding += 1
        self.submitted += 1
        self._ready.wait()
        asyncio.run_coroutine_threadsafe(self._run(fn, job, token), self.loop)

    def capacity(self) -> tuple[int, int]:
        """(async actions on the loop, slots free): what the claims add room for, once one has come."""
        if not self.submitted:
            return 0, 0
        return len(self.running), max(self.size - self.holding, 0)

    def stop(self, deadline: float) -> None:
        """Let the bodies running finish until ``deadline`` (a monotonic time), then stop the loop."""
        while self.running and time.monotonic() < deadline:
            time.sleep(0.05)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.join(5)

    async def _run(self, fn: Function, job: ScheduledFunction, token: str) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.running[task] = job
        released: list[bool] = []

        def release() -> None:  # once the body ended: the outcome's write waits for the ledger without a slot
            if not released:
                released.append(True)
                with self._holding_lock:
                    self.holding -= 1
                self.slots.release()

        try:
            await self._start_and_run(fn, job, token, release)
        except Exception:  # the bookkeeping's own failure: the worker's recovery takes the job back
            logger.exception("async action bookkeeping failed job=%s", job.pk)
        finally:
            del self.running[task]
            release()

    async def _start_and_run(
        self, fn: Function, job: ScheduledFunction, token: str, release: Callable[[], None]
    ) -> None:
        if job.started_at is None:  # not started by its claim: start it, grouped with the other starts
            started, error = await asyncio.wrap_future(self.submit_write([], [(token, job)]))
            if error is not None or job.pk not in started:
                logger.info("action not started: job no longer claimed job=%s name=%s", job.pk, job.name)
                self.done(job)
                return
        job.attempts += 1
        info = JobInfo(job.pk, job.name, job.attempts, job.scheduled_time, "action")

        def announce() -> None:
            send(signals.job_started, job, worker_id=self.outcomes.worker_id)

        if signals.only_logged(signals.job_started):
            announce()
        else:  # its receivers may use the ORM: not on the loop
            await self.connections.awaited(announce)
        timeout = fn.timeout if fn.timeout is not None else float(app_settings.ACTION_TIMEOUT)
        budget = asyncio.timeout(timeout)
        try:
            async with budget:
                if self.spans is None:
                    result = await self._body(fn, job, info)
                else:
                    result = await self.spans.run_async_job(job, info, lambda: self._body(fn, job, info))
        except BaseException as exc:  # CancelledError, SystemExit from a body too: recorded, the loop goes on
            release()
            failure: BaseException = exc
            if budget.expired():
                logger.error("action timed out job=%s name=%s", job.pk, job.name)
                failure = JobTimeout(f"action {job.name} ran longer than its timeout and was cancelled")
            await self.connections.awaited(lambda: self.outcomes.action_failed(fn.retry, job, token, failure))
        else:
            release()
            _started, error = await asyncio.wrap_future(self.submit_write([(job, token, result)], []))
            if error is not None:
                logger.error("could not record the outcome of job=%s; its lease will expire", job.pk)
        self.done(job)

    def _body(self, fn: Function, job: ScheduledFunction, info: JobInfo) -> Coroutine[Any, Any, Any]:
        return call_async_action_body(
            fn, fn.validator.to_python(job.args), self.outcomes.store.using, info, None, self.awaited, self.through
        )

    def _tick(self) -> None:
        self.beat = time.monotonic()
        self.loop.call_later(0.1, self._tick)

    def _watch(self) -> None:
        reported = 0.0
        while self.is_alive():
            time.sleep(0.25)
            held = time.monotonic() - self.beat
            if held < BLOCKED_SECONDS or self.beat == reported:
                continue
            reported = self.beat
            task = asyncio.current_task(self.loop)
            job = self.running.get(task) if task is not None else None
            logger.warning(
                "an async action blocks the event loop job=%s name=%s blocked_for=%.1fs",
                job.pk if job else "?",
                job.name if job else "?",
                held,
            )
