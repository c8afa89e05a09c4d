"""What wakes the worker's main loop."""

from __future__ import annotations

import queue


class Wakeup:
    """Set by other threads (a job done, a NOTIFY) and by signal handlers.

    Not a ``threading.Event``: its ``set()`` takes the lock that the main thread holds inside ``wait()``
    and ``clear()``, so a handler running at that moment (handlers run in the main thread) deadlocked
    the worker. ``queue.SimpleQueue.put`` is reentrant (C, no Python-level lock)."""

    def __init__(self) -> None:
        self._signals: queue.SimpleQueue[None] = queue.SimpleQueue()

    def set(self) -> None:
        self._signals.put(None)

    def wait(self, timeout: float) -> bool:
        """True if set before ``timeout`` seconds passed (or since the last ``clear``)."""
        try:
            self._signals.get(timeout=timeout)
        except queue.Empty:
            return False
        return True

    def clear(self) -> None:
        while True:
            try:
                self._signals.get_nowait()
            except queue.Empty:
                return
