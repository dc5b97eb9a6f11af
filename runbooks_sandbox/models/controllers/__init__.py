"""The sandbox's controllers: Deployment, ReplicaSet, Endpoints, HPA, ServiceAccounts, Job and
CronJob, and the garbage collector.

They behave as kube-controller-manager's do, so that ``kubectl rollout status|history|undo``
and the runbooks read the same results as from a cluster. Each controller has one worker
thread fed by a de-duplicating queue; store events enqueue keys (callbacks only enqueue), and
a periodic resync enqueues everything as a safety net::

    controllers = start_controllers(store)
    ...
    controllers.stop()

Beside them run the garbage collector (dependents of deleted owners), the ServiceAccounts
controller (a ``default`` account per namespace) and the HorizontalPodAutoscaler controller.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Hashable, Protocol

from ..api import Store, StoreEvent
from .cronjob import CronJobController
from .deployment import DeploymentController
from .endpoints import EndpointsController
from .job import JobController
from .queue import WorkQueue, Worker
from .replicaset import ReplicaSetController
from .autoscaler import HorizontalPodAutoscalerController
from .garbage import GarbageCollector
from .serviceaccounts import ServiceAccountsController

__all__ = ["SandboxControllers", "start_controllers"]

DEFAULT_RESYNC_S = 5.0


class _Controller(Protocol):
    name: str

    def keys_for(self, event: StoreEvent) -> list[Hashable]: ...

    def all_keys(self) -> list[Hashable]: ...

    def sync(self, key: Hashable) -> None: ...


class SandboxControllers:
    """Running controllers (implements models.api.Controllers)."""

    def __init__(self, store: Store, *, resync_s: float = DEFAULT_RESYNC_S) -> None:
        self.store = store
        self.resync_s = resync_s
        self._queues: dict[str, WorkQueue] = {}
        self._controllers: list[_Controller] = []
        for factory in (DeploymentController, ReplicaSetController, JobController, CronJobController):
            queue = WorkQueue()
            self._add(factory(store, queue), queue)
        self._add(EndpointsController(store), WorkQueue())
        for factory in (GarbageCollector, ServiceAccountsController, HorizontalPodAutoscalerController):
            queue = WorkQueue()
            self._add(factory(store, queue), queue)
        self._stopped = threading.Event()
        self._workers = [Worker(c.name, self._queues[c.name], c.sync) for c in self._controllers]
        self._resync = threading.Thread(target=self._resync_loop, name="controllers-resync", daemon=True)
        self._unsubscribe: Any = None

    def _add(self, controller: _Controller, queue: WorkQueue) -> None:
        self._controllers.append(controller)
        self._queues[controller.name] = queue

    def start(self) -> SandboxControllers:
        self._unsubscribe = self.store.subscribe(self._on_event)
        self.resync()
        for worker in self._workers:
            worker.start()
        self._resync.start()
        return self

    def _on_event(self, event: StoreEvent) -> None:
        # Runs in the writer's thread: only enqueue.
        for controller in self._controllers:
            for key in controller.keys_for(event):
                self._queues[controller.name].add(key)

    def resync(self) -> None:
        """Queue every object each controller manages."""
        for controller in self._controllers:
            for key in controller.all_keys():
                self._queues[controller.name].add(key)

    def _resync_loop(self) -> None:
        while not self._stopped.wait(self.resync_s):
            self.resync()

    def wait_idle(self, timeout: float = 10.0, settle_s: float = 0.05) -> bool:
        """Block until no controller has work (delayed re-checks aside) for settle_s.

        For tests and benchmarks; True if the controllers went idle within timeout.
        """
        deadline = time.monotonic() + timeout
        quiet_since: float | None = None
        while time.monotonic() < deadline:
            if all(q.idle() for q in self._queues.values()):
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= settle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.005)
        return False

    def stop(self) -> None:
        """Stop the workers and the resync loop, and unsubscribe from the store."""
        self._stopped.set()
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        for queue in self._queues.values():
            queue.shut_down()
        for worker in self._workers:
            if worker.is_alive():
                worker.join(timeout=5)
        if self._resync.is_alive():
            self._resync.join(timeout=5)


def start_controllers(store: Store, *, resync_s: float = DEFAULT_RESYNC_S) -> SandboxControllers:
    """Start the controllers (see the module doc) against store."""
    return SandboxControllers(store, resync_s=resync_s).start()
