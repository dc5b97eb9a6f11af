"""One node's pods: the pods bound to it, each run by a :class:`~.podworker.PodWorker`.

:class:`NodePods` watches pods with ``spec.nodeName=<node>`` (the only pod list the Node
authorizer grants a node) as the node itself, starts a worker for each pod it has not seen,
hands later versions of the pod to that worker, and answers the kubelet endpoint's log
requests from the workers' container logs.
"""
from __future__ import annotations

import logging
import os
import signal
import subprocess
import threading
from pathlib import Path
from typing import Any

from ..kube import PODS, ClusterStore, StoreEvent, Subscription
from ..kube.errors import NotFound
from ..network import ClusterNetwork
from ..runtime.containers import ContainerRunner
from ..runtime.events import EventRecorder
from ..workload import ImageCatalog
from .identity import NodeIdentity
from .podworker import PodWorker
from .settings import AgentSettings

__all__ = ["NodePods"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class NodePods:
    """The pods of node ``identity.name`` (module doc). ``start`` after the Node is registered."""

    def __init__(self, store: ClusterStore, identity: NodeIdentity, network: ClusterNetwork,
                 catalog: ImageCatalog, settings: AgentSettings, state_dir: Path) -> None:
        self.store, self.identity, self.network = store, identity, network
        self.catalog, self.settings = catalog, settings
        self.state_dir = state_dir / identity.name
        self.events = EventRecorder(store, "kubelet", identity.name)
        self.pulled_images: set[str] = set()
        self._workers: dict[str, PodWorker] = {}  # by pod uid
        self._processes: set[subprocess.Popen[bytes]] = set()
        self._lock = threading.RLock()
        self._subscription: Subscription | None = None
        self._stopping = False

    @property
    def name(self) -> str:
        return self.identity.name

    def start(self, sync_timeout_s: float = 30.0) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._subscription = self.store.subscribe(self._on_event, [PODS],
                                                  field_selector=f"spec.nodeName={self.name}")
        if not self._subscription.wait_synced(sync_timeout_s):
            log.warning("node %s: first pod list not in after %.0f s; carrying on", self.name, sync_timeout_s)

    def stop(self) -> None:
        """Stop watching, stop every pod's containers (SIGTERM, then SIGKILL), leave no process."""
        self._stopping = True
        if self._subscription is not None:
            self._subscription.close()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_stop()
        for worker in workers:
            worker.thread.join(timeout=self.settings.stop_grace_s + 3)
        self._kill_leftovers()

    # -- what the kubelet endpoint asks -----------------------------------------------------
    def container(self, namespace: str, pod: str, container: str) -> ContainerRunner:
        """The container of the newest worker of ``namespace/pod`` (NotFound/BadRequest otherwise)."""
        with self._lock:
            found = [w for w in self._workers.values() if w.namespace == namespace and w.name == pod]
        if not found:
            raise NotFound(f'pod "{pod}" not found on node {self.name}')
        return max(found, key=lambda w: w.created).container(container)

    def pids(self) -> dict[str, int]:
        """``namespace/pod/container`` -> PID of every running container process."""
        with self._lock:
            workers = list(self._workers.values())
        return {f"{w.namespace}/{w.name}/{c.name}": c.process.pid
                for w in workers for c in w.containers if c.process is not None and c.running}

    # -- used by pod workers ----------------------------------------------------------------
    def track(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.add(process)

    def untrack(self, process: subprocess.Popen[bytes]) -> None:
        with self._lock:
            self._processes.discard(process)

    def forget(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    # -- internals --------------------------------------------------------------------------
    def _on_event(self, event: StoreEvent) -> None:
        """Informer callback (its thread): hand the change to the pod's worker, never block."""
        if event.resource != PODS or event.type == "BOOKMARK" or self._stopping:
            return
        pod = event.object
        uid = pod["metadata"]["uid"]
        deleting = bool(pod["metadata"].get("deletionTimestamp"))
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None:
                if event.type == "DELETED" or (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed"):
                    return  # gone, or finished: a finished pod is not run again
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
                worker.thread.start()
                if not deleting:
                    return
        worker.observe(pod, deleting=deleting, gone=event.type == "DELETED")

    def _kill_leftovers(self) -> None:
        with self._lock:
            leftovers = list(self._processes)
        for process in leftovers:
            if process.poll() is None:
                try:
                    os.killpg(process.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            process.wait()
            self.untrack(process)
