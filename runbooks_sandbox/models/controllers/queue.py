"""A de-duplicating work queue with delayed adds, and the worker thread that drains it.

Like client-go's workqueue: a key added many times before it is processed is processed once;
store callbacks only enqueue (they run in the writer's thread), and one worker per controller
does the syncing, so one key is never synced by two threads at once.
"""
from __future__ import annotations

import heapq
import logging
import threading
import time
from collections import deque
from typing import Callable, Hashable

from ..errors import ApiError, Conflict, NotFound

log = logging.getLogger(__name__)


class WorkQueue:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._ready: deque[Hashable] = deque()
        self._queued: set[Hashable] = set()
        self._delayed: list[tuple[float, int, Hashable]] = []
        self._counter = 0
        self._busy = False
        self._closed = False

    def add(self, key: Hashable) -> None:
        with self._cond:
            if key not in self._queued and not self._closed:
                self._queued.add(key)
                self._ready.append(key)
                self._cond.notify_all()

    def add_after(self, key: Hashable, delay: float) -> None:
        if delay <= 0:
            self.add(key)
            return
        with self._cond:
            self._counter += 1
            heapq.heappush(self._delayed, (time.monotonic() + delay, self._counter, key))
            self._cond.notify_all()

    def get(self) -> Hashable | None:
        """The next key (marking the queue busy until done()), or None once shut down."""
        with self._cond:
            while not self._closed:
                self._promote_due()
                if self._ready:
                    key = self._ready.popleft()
                    self._queued.discard(key)
                    self._busy = True
                    return key
                timeout = self._delayed[0][0] - time.monotonic() if self._delayed else None
                self._cond.wait(timeout)
            return None

    def done(self) -> None:
        with self._cond:
            self._busy = False
            self._cond.notify_all()

    def idle(self) -> bool:
        """Nothing ready and nothing being processed (delayed keys do not count)."""
        with self._cond:
            self._promote_due()
            return not self._ready and not self._busy

    def shut_down(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    def _promote_due(self) -> None:
        now = time.monotonic()
        while self._delayed and self._delayed[0][0] <= now:
            _, _, key = heapq.heappop(self._delayed)
            if key not in self._queued:
                self._queued.add(key)
                self._ready.append(key)


class Worker(threading.Thread):
    """Runs sync(key) for each queued key; failed keys are retried with backoff.

    A Conflict (someone wrote first) or NotFound (something vanished meanwhile) is the normal
    price of optimistic concurrency: the key is simply synced again from fresh state.
    """

    def __init__(self, name: str, queue: WorkQueue, sync: Callable[[Hashable], None]) -> None:
        super().__init__(name=name, daemon=True)
        self.queue = queue
        self.sync = sync
        self._failures: dict[Hashable, int] = {}

    def run(self) -> None:
        while (key := self.queue.get()) is not None:
            try:
                self.sync(key)
                self._failures.pop(key, None)
            except (Conflict, NotFound):
                self._retry(key, quiet=True)
            except ApiError as error:
                log.warning("%s: sync %s failed: %s", self.name, key, error.message)
                self._retry(key)
            except Exception:  # a controller bug must not kill the loop for every other key
                log.exception("%s: sync %s crashed", self.name, key)
                self._retry(key)
            finally:
                self.queue.done()

    def _retry(self, key: Hashable, quiet: bool = False) -> None:
        failures = self._failures.get(key, 0) + 1
        self._failures[key] = failures
        delay = 0.0 if quiet and failures < 3 else min(0.005 * 2 ** failures, 5.0)
        self.queue.add_after(key, delay)
