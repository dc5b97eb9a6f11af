"""What the supervisor's parts see of the real cluster: Services for the proxy, pods' fault files.

- :class:`StoreView`: the admin :class:`~.kube.ClusterStore` narrowed to what the Service proxy
  follows (Services, Endpoints, pods, Istio VirtualServices and DestinationRules). Each
  Service's ClusterIP is handed to ``on_service`` before anyone hears of the Service, because
  the proxy binds ``clusterIP:port`` as soon as it learns of it and the address must be on the
  namespace's ``lo`` by then.
- :class:`PodFaults`: faults into pods the node agent runs, through the fault file each
  workload polls in its pod folder.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Callable

from . import kube

__all__ = ["StoreView", "PodFaults", "PROXY_TYPES"]

# What the Service proxy routes by: the types it watches, by plural.
PROXY_TYPES = {rt.plural: rt for rt in (kube.SERVICES, kube.ENDPOINTS, kube.PODS, kube.VIRTUALSERVICES,
                                        kube.DESTINATIONRULES)}


class StoreView:
    """``list``, ``get`` and ``subscribe(callback)`` of the proxy's types (module doc)."""

    def __init__(self, store: kube.ClusterStore, on_service: Callable[[str], None]) -> None:
        self.store = store
        self.on_service = on_service
        self._known_ips: set[str] = set()
        self._lock = threading.Lock()

    def _service_ip(self, obj: dict[str, Any]) -> None:
        ip = (obj.get("spec") or {}).get("clusterIP")
        if not ip or ip == "None":
            return
        with self._lock:
            if ip in self._known_ips:
                return
            self._known_ips.add(ip)
        self.on_service(ip)

    def list(self, rt: kube.ResourceType, namespace: str | None = None,
             **options: Any) -> tuple[list[dict[str, Any]], Any]:
        items, rv = self.store.list(rt, namespace, **options)
        if rt == kube.SERVICES:
            for svc in items:
                self._service_ip(svc)
        return items, rv

    def get(self, rt: kube.ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        return self.store.get(rt, namespace, name)

    def subscribe(self, callback: Callable[[kube.StoreEvent], None]) -> Callable[[], None]:
        """Every change of the proxy's types; returns what ends the subscription."""
        def deliver(event: kube.StoreEvent) -> None:
            if event.resource == kube.SERVICES and event.type != "DELETED":
                self._service_ip(event.object)
            callback(event)

        return self.store.subscribe(deliver, list(PROXY_TYPES.values()))

    def stop(self) -> None:
        """Close the API client (its informers and connections)."""
        self.store.close()


class PodFaults:
    """Faults into pods the node agent runs: each workload polls ``fault.json`` in its pod folder,
    ``<state>/node/pods/<node>/<namespace>/<pod>-<uid[:8]>`` (:mod:`.node.podworker`)."""

    def __init__(self, state_dir: Path, store: kube.ClusterStore) -> None:
        self.pods_dir = state_dir / "node" / "pods"
        self.store = store

    def fault_file(self, namespace: str, pod: str) -> Path:
        try:
            obj = self.store.get(kube.PODS, namespace, pod)
        except kube.NotFound:
            raise kube.NotFound(f"pod {namespace}/{pod} not found") from None
        node = (obj.get("spec") or {}).get("nodeName")
        folder = self.pods_dir / str(node) / namespace / f"{pod}-{obj['metadata']['uid'][:8]}"
        if not node or not folder.is_dir():
            raise kube.Conflict(f"pod {namespace}/{pod} is not running on a node yet")
        return folder / "fault.json"

    def fault(self, namespace: str, pod: str, **fields: Any) -> dict[str, Any]:
        from .workload.faults import inject_fault

        return inject_fault(self.fault_file(namespace, pod), **fields)

    def clear_fault(self, namespace: str, pod: str, *names: str) -> dict[str, Any]:
        from .workload.faults import clear_fault

        return clear_fault(self.fault_file(namespace, pod), *names)

    def pids(self) -> dict[str, int]:
        """``namespace/pod/container`` -> PID, from the command lines naming a pod folder's fault file."""
        from .servers.ports import process_cmdline

        found: dict[str, int] = {}
        prefix = str(self.pods_dir) + os.sep
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            for arg in process_cmdline(int(entry.name)) or []:
                if arg.startswith(prefix) and arg.endswith("fault.json"):
                    _, namespace, folder = Path(arg).parent.relative_to(self.pods_dir).parts[:3]
                    found[f"{namespace}/{folder.rsplit('-', 1)[0]}/workload"] = int(entry.name)
                    break
        return found
