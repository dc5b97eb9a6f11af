"""The process pod runtime: the sandbox's kubelet, where every pod is a real local process.

:class:`ProcessRuntime` implements the ``PodRuntime`` seam of ``models.api``. It watches pods in
the store and, for each, binds it to the sandbox node, gives it its own loopback address,
resolves its image (through the workload image catalog) and environment (Secrets, ConfigMaps),
starts ``python -m runbooks_sandbox.workload`` on podIP:containerPort, probes it, restarts it
with back-off when it crashes or fails liveness, and reports status and Events as a kubelet does.

Times from pod specs (probe delays and periods, grace periods) and the kubelet's back-offs are
multiplied by ``RuntimeSettings.time_scale`` (default 0.1: the guide's 10 s readiness delay is
1 s here), so drills run the guide's manifests unchanged and still finish quickly.

Deletion is graceful as on a cluster: the runtime puts a finalizer (``FINALIZER``) on every pod it
runs, so deleting a pod only marks it (``deletionTimestamp``, shown as Terminating). The runtime
then reports the pod not ready (the Endpoints controller and the Service proxy drop it), sends
SIGTERM, waits up to the (scaled) grace period, sends SIGKILL, and removes its finalizer, which
completes the deletion. A pod removed outright (namespace deletion) is stopped the same way.
"""
from __future__ import annotations

import logging
import os
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

from ..models.api import StoreEvent, Store
from ..models.errors import ApiError, BadRequest, NotFound
from ..models.nodes import FINALIZER, NODE_NAME, register_node
from ..models.resources import PODS
from ..models.store import now_rfc3339
from ..workload import ImageCatalog, clear_fault, inject_fault, load_image_catalog
from .events import EventRecorder
from .ipam import AddressPool
from .host import RuntimeSettings
from .podworker import PodWorker

__all__ = ["FINALIZER", "NODE_NAME", "ProcessRuntime", "RuntimeSettings"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]


class ProcessRuntime:
    """Implements ``PodRuntime``: pods as processes on loopback addresses (see the module doc)."""

    def __init__(self, settings: RuntimeSettings | None = None, **overrides: Any) -> None:
        base = settings or RuntimeSettings()
        self.settings = RuntimeSettings(**{**base.__dict__, **overrides})
        self.addresses = AddressPool(self.settings.pod_network)
        self.catalog: ImageCatalog | None = None
        self.store: Store | None = None
        self.events: EventRecorder | None = None
        self.pulled_images: set[str] = set()
        self._workers: dict[str, PodWorker] = {}  # by pod uid
        self._lock = threading.RLock()
        self._processes: set[Any] = set()  # every Popen still running, for stop()
        self._unsubscribe: Callable[[], None] | None = None
        self._stopping = False
        self._own_state_dir = self.settings.state_dir is None
        self.state_dir = Path(self.settings.state_dir or tempfile.mkdtemp(prefix="veza-sandbox-pods-"))

    # --- PodRuntime ------------------------------------------------------------------------

    def start(self, store: Store) -> None:
        """Register the node, then run every pod in the store and every pod created later.

        A stopped runtime may be started again, on the same or a new store (ApiServer.reset).
        """
        self.catalog = load_image_catalog(self.settings.catalog)
        self._stopping = False
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.store = store
        self.events = EventRecorder(store, "kubelet", NODE_NAME)
        self._register_node(store)
        self._unsubscribe = store.subscribe(self._on_event)
        for pod in store.list(PODS)[0]:
            self._on_event(StoreEvent("ADDED", PODS, pod, int(pod["metadata"]["resourceVersion"])))

    def stop(self) -> None:
        """Stop every pod process (SIGTERM, then SIGKILL) and thread; leaves no process behind."""
        self._stopping = True
        if self._unsubscribe:
            self._unsubscribe()
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            worker.request_stop()
        deadline = time.monotonic() + self.settings.stop_grace_s + 3
        for worker in workers:
            worker.thread.join(timeout=max(0.1, deadline - time.monotonic()))
        self._kill_leftovers()
        self._release_finalizers()
        if self._own_state_dir:
            shutil.rmtree(self.state_dir, ignore_errors=True)

    # --- what the API server and the orchestrator use -------------------------------------

    def logs(
        self, namespace: str, name: str, container: str | None = None, tail: int | None = None, *,
        previous: bool = False, timestamps: bool = False, since_seconds: float | None = None,
    ) -> str:
        """A container's log as ``GET /api/v1/namespaces/<ns>/pods/<name>/log`` returns it.

        Raises NotFound / BadRequest with the API server's messages (kubectl prints them).
        """
        runner = self._log_source(namespace, name, container, previous)
        return runner.log.text(tail=tail, previous=previous, timestamps=timestamps, since_seconds=since_seconds)

    def follow_logs(
        self, namespace: str, name: str, container: str | None = None, tail: int | None = None, *,
        timestamps: bool = False, since_seconds: float | None = None, stopped: Callable[[], bool] = lambda: False,
    ) -> Iterator[str]:
        """``.../log?follow=true``: the log so far, then new lines until the container's process
        ends (exit, crash, pod deletion) or ``stopped()`` (the client left). Errors are raised
        here, before anything is streamed."""
        runner = self._log_source(namespace, name, container, False)
        return runner.log.follow(tail=tail, timestamps=timestamps, since_seconds=since_seconds, stopped=stopped)

    def _log_source(self, namespace: str, name: str, container: str | None, previous: bool) -> Any:
        runner = self._worker(namespace, name).container(container)
        if previous and not runner.log.has_previous():
            raise BadRequest(f'previous terminated container "{runner.name}" in pod "{name}" not found')
        if not previous and not runner.ever_started:
            reason = runner.waiting[0] if runner.waiting else "ContainerCreating"
            raise BadRequest(f'container "{runner.name}" in pod "{name}" is waiting to start: {reason}')
        return runner

    def fault(self, namespace: str, pod: str, **fields: Any) -> dict[str, Any]:
        """Inject faults into a running pod (see ``runbooks_sandbox.workload.faults``)."""
        return inject_fault(self._worker(namespace, pod).fault_file, **fields)

    def clear_fault(self, namespace: str, pod: str, *names: str) -> dict[str, Any]:
        return clear_fault(self._worker(namespace, pod).fault_file, *names)

    def pids(self) -> dict[str, int]:
        """``namespace/pod/container`` -> PID of every running container process."""
        with self._lock:
            workers = list(self._workers.values())
        return {f"{w.namespace}/{w.name}/{c.name}": c.process.pid
                for w in workers for c in w.containers if c.process is not None and c.running}

    def pod_ip(self, namespace: str, name: str) -> str | None:
        return self._worker(namespace, name).ip

    # --- used by pod workers ---------------------------------------------------------------

    def track(self, process: Any) -> None:
        with self._lock:
            self._processes.add(process)

    def untrack(self, process: Any) -> None:
        with self._lock:
            self._processes.discard(process)

    def forget(self, worker: PodWorker) -> None:
        with self._lock:
            if self._workers.get(worker.uid) is worker:
                del self._workers[worker.uid]

    # --- internals -------------------------------------------------------------------------

    def _worker(self, namespace: str, name: str) -> PodWorker:
        with self._lock:
            found = [w for w in self._workers.values() if w.namespace == namespace and w.name == name]
        if not found:
            raise NotFound.of("pods", name)
        return max(found, key=lambda w: w.created)

    def _on_event(self, event: StoreEvent) -> None:
        """Store callback (writer's thread): hand the change to the pod's worker, never block."""
        if event.resource != PODS or self._stopping:
            return
        pod = event.object
        uid = pod["metadata"]["uid"]
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None and event.type != "DELETED" and not pod["metadata"].get("deletionTimestamp"):
                if pod.get("status", {}).get("phase") in ("Succeeded", "Failed"):
                    return  # a finished pod is not run again
                worker = PodWorker(self, pod)
                self._workers[uid] = worker
                worker.thread.start()
                return
        if worker is not None:
            worker.observe(pod, deleting=bool(pod["metadata"].get("deletionTimestamp")), gone=event.type == "DELETED")
        elif event.type != "DELETED" and FINALIZER in (pod["metadata"].get("finalizers") or []):
            # Deleted while no worker runs it (e.g. a runtime restart): nothing to stop.
            threading.Thread(target=self.remove_finalizer, args=(pod["metadata"]["namespace"], pod["metadata"]["name"]),
                             daemon=True).start()

    def remove_finalizer(self, namespace: str, name: str) -> None:
        """Drop our finalizer; on a deleted pod this completes the deletion."""
        assert self.store is not None
        try:
            pod = self.store.get(PODS, namespace, name)
            remaining = [f for f in pod["metadata"].get("finalizers") or [] if f != FINALIZER]
            if len(remaining) != len(pod["metadata"].get("finalizers") or []):
                self.store.patch(PODS, namespace, name, {"metadata": {"finalizers": remaining or None}}, "merge")
        except ApiError:
            pass  # already gone

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

    def _release_finalizers(self) -> None:
        """Without a runtime nobody would complete pod deletions: drop our finalizers."""
        if self.store is None or getattr(self.store, "closed", False):
            return
        try:
            pods = self.store.list(PODS)[0]
        except ApiError:
            return
        for pod in pods:
            if FINALIZER in (pod["metadata"].get("finalizers") or []):
                self.remove_finalizer(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _register_node(self, store: Store) -> None:
        register_node(store, "sandbox://processes", now_rfc3339())
