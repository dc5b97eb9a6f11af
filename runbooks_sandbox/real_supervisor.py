"""The supervisor of the sandbox on the real control plane (``runbook sandbox up --kubernetes real``).

The same jobs as :class:`~.supervisor.Supervisor` but the API server, its controllers and the
pods are not ours any more: the real apiserver holds the objects, the node agent
(:mod:`.node`, its own process) runs the pods. What stays here, reading the real API through an
admin :class:`~.kube.ClusterStore`:

- the Service proxy (:mod:`.runtime.proxy`, kube-proxy's role with the Istio weights), each
  Service's ClusterIP put on the namespace's ``lo`` before the proxy binds it;
- the http_sd endpoint Prometheus reads its pod list from (:mod:`.discovery_sd`);
- the load generator, its report, the control endpoint (pod faults through the fault files the
  node agent's workloads poll, load rates, the entry point, the Redis exporter) and the webhook sink.

It runs inside the cluster's network namespace (``ip netns exec``: pod and Service addresses
live there), every endpoint on :attr:`SandboxCluster.services_address`; ``runbook sandbox up``
exposes them on the host's 127.0.0.1 through the forwarder. The API server's faults are the fault
proxy's (:mod:`.controlplane.faultproxy`), set from the host: ``/apiserver-fault`` answers 501 here.
"""
from __future__ import annotations

import logging
import os
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from . import kube
from .discovery_sd import PodDiscoveryServer
from .manifests import NAMESPACE
from .models import errors as home_errors
from .models.api import StoreEvent as HomeEvent
from .models.resources import DESTINATIONRULES, ENDPOINTS, PODS, SERVICES, VIRTUALSERVICES
from .notify_sink import WebhookSink
from .runtime.load import LoadGenerator
from .supervisor import _LOAD_MAX_DURATION_S, Supervisor, _ControlServer, _required
from .tokens import CONTROL_TOKEN, NOTIFY_TOKEN, read_token

__all__ = ["RealSupervisor", "PodFaults", "StoreView"]

log = logging.getLogger("runbooks_sandbox.real_supervisor")

# The home-made resource types the Service proxy and the supervisor are written against, by plural.
_HOME_TYPES = {rt.plural: rt for rt in (SERVICES, ENDPOINTS, PODS, VIRTUALSERVICES, DESTINATIONRULES)}
_KUBE_TYPES = {rt.plural: rt for rt in (kube.SERVICES, kube.ENDPOINTS, kube.PODS, kube.VIRTUALSERVICES,
                                        kube.DESTINATIONRULES, kube.DEPLOYMENTS, kube.NAMESPACES)}


def _kube_type(rt: Any) -> Any:
    try:
        return _KUBE_TYPES[rt.plural]
    except KeyError:
        raise ValueError(f"the real-cluster view does not serve {rt.plural}") from None


class StoreView:
    """The real API server seen through the retired in-process Store's shape (``list``, ``get``,
    ``subscribe(callback)``), so the Service proxy and the load-target follower run unchanged.

    ``on_service(ip)`` is called for every Service's ClusterIP before anyone hears of the Service:
    the proxy binds ``clusterIP:port`` as soon as it learns of it."""

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

    def list(self, rt: Any, namespace: str | None = None, **options: Any) -> tuple[list[dict[str, Any]], Any]:
        items, rv = self.store.list(_kube_type(rt), namespace, **options)
        if rt.plural == "services":
            for svc in items:
                self._service_ip(svc)
        return items, rv

    def get(self, rt: Any, namespace: str | None, name: str) -> dict[str, Any]:
        try:
            return self.store.get(_kube_type(rt), namespace, name)
        except kube.ApiError as e:  # the callers catch the home-made errors
            error = home_errors.ApiError(str(e))
            error.code = getattr(e, "code", 500)
            raise error from e

    def subscribe(self, callback: Callable[[HomeEvent], None]) -> Callable[[], None]:
        def deliver(event: kube.StoreEvent) -> None:
            if event.resource.plural == "services" and event.type != "DELETED":
                self._service_ip(event.object)
            callback(HomeEvent(event.type, _HOME_TYPES[event.resource.plural], event.object, 0))

        return self.store.subscribe(deliver, [_KUBE_TYPES[p] for p in _HOME_TYPES])


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
            raise home_errors.NotFound(f"pod {namespace}/{pod} not found") from None
        node = (obj.get("spec") or {}).get("nodeName")
        folder = self.pods_dir / str(node) / namespace / f"{pod}-{obj['metadata']['uid'][:8]}"
        if not node or not folder.is_dir():
            raise home_errors.Conflict(f"pod {namespace}/{pod} is not running on a node yet")
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


class _RealApi:
    """What the supervisor's code reaches as ``self.api``: the store, and ``stop``."""

    def __init__(self, view: StoreView) -> None:
        self.store = view

    def stop(self) -> None:
        self.store.store.close()


class RealSupervisor(Supervisor):
    """The supervisor's jobs against the real API server (module doc)."""

    def __init__(self, state_dir: Path, kubeconfig: Path, namespace: str = NAMESPACE, load_rate: float = 10.0,
                 serving_users: bool = True) -> None:
        super().__init__(state_dir, namespace, load_rate, serving_users)
        self.kubeconfig = Path(kubeconfig)

    def start(self) -> dict[str, Any]:
        from .cluster import SandboxCluster
        from .controlplane import ADMIN_CONTEXT

        self.control_token = read_token(self.state_dir, CONTROL_TOKEN)
        notify_token = read_token(self.state_dir, NOTIFY_TOKEN)
        cluster = SandboxCluster(self.state_dir)
        host = cluster.services_address
        store = kube.ClusterStore.from_kubeconfig(self.kubeconfig, context=ADMIN_CONTEXT,
                                                  user_agent="sandbox-supervisor")
        self.api = _RealApi(StoreView(store, cluster.network.add_address))  # type: ignore[assignment]
        self.runtime = PodFaults(self.state_dir, store)
        proxy_class = _required("runbooks_sandbox.runtime.proxy", "ServiceProxy", "give Services a cluster address")
        self.proxy = proxy_class()
        self.proxy.start(self.api.store)
        self.discovery = PodDiscoveryServer(lambda ns: store.list(kube.PODS, ns)[0], host=host).start()
        self.load = LoadGenerator({}, rate_per_s=self.load_rate, max_duration_s=_LOAD_MAX_DURATION_S).start()
        traffic_host, traffic_port = self.load.serve_report(host)
        threading.Thread(target=self._follow_services, name="load-targets", daemon=True).start()
        self.control = _ControlServer(self, host=host).start()
        self.sink = WebhookSink(notify_token, self.control_token, host=host).start()
        kube_system = store.get(kube.NAMESPACES, None, "kube-system")
        return {
            "pid": os.getpid(),
            "kubernetes": "real",
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "api_url": store.credentials.server,
            "kubeconfig": str(self.kubeconfig),
            "cluster_uid": kube_system["metadata"]["uid"],
            "sd_url": self.discovery.url,
            "sd_port": self.discovery.port,
            "traffic_url": f"http://{traffic_host}:{traffic_port}/traffic",
            "traffic_port": traffic_port,
            "control_url": self.control.url,
            "control_port": self.control.port,
            "notify_base_url": self.sink.base_url,
            "notify_port": self.sink.port,
            "services_address": host,
            "runtime": "node agent",
            "proxy": type(self.proxy).__name__,
        }
