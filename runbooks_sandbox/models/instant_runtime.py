"""A built-in PodRuntime with no processes: pods become Running and Ready after a delay.

It plays kubelet and scheduler for part 1: registers a Node, binds pods to it, gives each a
loopback pod IP and reports status through ``Store.update_status``. The process runtime of
part 2 replaces it through the same ``PodRuntime`` seam. Tests that want to drive readiness
themselves pass ``ready_after=None``: pods then run (with an IP) but stay unready.
"""
from __future__ import annotations

import heapq
import ipaddress
import threading
import time
from typing import Any, Callable

from .api import StoreEvent
from .errors import ApiError, BadRequest
from .nodes import NODE_NAME, register_node
from .resources import PODS
from .store import MemoryStore, now_rfc3339



def pod_status(pod: dict[str, Any], ip: str, ready: bool) -> dict[str, Any]:
    """The status a kubelet reports for a pod whose containers all run."""
    started = now_rfc3339()
    flag = "True" if ready else "False"
    conditions = [
        {"type": "PodReadyToStartContainers", "status": "True"},
        {"type": "Initialized", "status": "True"},
        {"type": "Ready", "status": flag},
        {"type": "ContainersReady", "status": flag},
        {"type": "PodScheduled", "status": "True"},
    ]
    for condition in conditions:
        condition.update(lastProbeTime=None, lastTransitionTime=started)
    containers = [
        {"name": c["name"], "image": c.get("image", ""), "imageID": "", "ready": ready, "started": True,
         "restartCount": 0, "containerID": f"sandbox://{pod['metadata']['uid']}/{c['name']}",
         "state": {"running": {"startedAt": started}}}
        for c in pod.get("spec", {}).get("containers", [])
    ]
    return {
        "phase": "Running", "conditions": conditions, "hostIP": "127.0.0.1", "hostIPs": [{"ip": "127.0.0.1"}],
        "podIP": ip, "podIPs": [{"ip": ip}], "startTime": started, "containerStatuses": containers,
        "qosClass": "BestEffort",
    }


class InstantRuntime:
    """Implements ``PodRuntime``: marks pods Running (+ Ready after ``ready_after`` seconds)."""

    def __init__(self, ready_after: float | None = 0.0, pod_network: str = "127.244.0.0/16") -> None:
        self.ready_after = ready_after
        self._ips = ipaddress.ip_network(pod_network).hosts()
        self._store: MemoryStore | None = None
        self._due: list[tuple[float, str, str, bool]] = []  # (when, namespace, name, ready)
        self._wake = threading.Condition()
        self._stopped = False
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None

    def start(self, store: MemoryStore) -> None:
        self._store = store
        self._stopped, self._due = False, []  # a runtime may be restarted (ApiServer.reset)
        self._register_node(store)
        self._unsubscribe = store.subscribe(self._on_event)
        for pod in store.list(PODS)[0]:
            if pod.get("status", {}).get("phase") in (None, "Pending"):
                self._schedule(pod)
        self._thread = threading.Thread(target=self._run, name="instant-runtime", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._unsubscribe:
            self._unsubscribe()
        with self._wake:
            self._stopped = True
            self._wake.notify_all()
        if self._thread:
            self._thread.join(timeout=5)

    def logs(
        self, namespace: str, name: str, container: str | None = None, tail: int | None = None, *,
        previous: bool = False, timestamps: bool = False, since_seconds: float | None = None,
    ) -> str:
        """What ``GET .../pods/<name>/log`` returns (the API server calls this optional method
        of a runtime). There are no processes here, so only a start line."""
        if previous:
            raise BadRequest(f'previous terminated container in pod "{name}" not found')
        return "" if tail == 0 else f"instant runtime: pod {namespace}/{name} started\n"

    def _register_node(self, store: MemoryStore) -> None:
        register_node(store, "sandbox://instant", now_rfc3339())

    def _on_event(self, event: StoreEvent) -> None:
        if event.resource == PODS and event.type == "ADDED":
            self._schedule(event.object)

    def _schedule(self, pod: dict[str, Any]) -> None:
        meta = pod["metadata"]
        with self._wake:
            heapq.heappush(self._due, (time.monotonic(), meta["namespace"], meta["name"], False))
            if self.ready_after is not None:
                heapq.heappush(self._due, (time.monotonic() + self.ready_after, meta["namespace"], meta["name"], True))
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._stopped and (not self._due or self._due[0][0] > time.monotonic()):
                    self._wake.wait(None if not self._due else self._due[0][0] - time.monotonic())
                if self._stopped:
                    return
                _, namespace, name, ready = heapq.heappop(self._due)
            try:
                self._start_pod(namespace, name, ready)
            except ApiError:
                pass  # the pod was deleted meanwhile

    def _start_pod(self, namespace: str, name: str, ready: bool) -> None:
        assert self._store is not None
        pod = self._store.get(PODS, namespace, name)
        if pod["metadata"].get("deletionTimestamp"):
            return
        ip = pod.get("status", {}).get("podIP") or str(next(self._ips))
        if not pod["spec"].get("nodeName"):
            pod = self._store.patch(PODS, namespace, name, {"spec": {"nodeName": NODE_NAME}}, "merge")
        self._store.update_status(PODS, namespace, name, pod_status(pod, ip, ready))
