"""The Endpoints controller: for each Service with a selector, the IPs of its pods.

As pkg/controller/endpoint: ready pods go to ``addresses``, the others to
``notReadyAddresses`` (all to addresses with publishNotReadyAddresses); pods without an IP,
terminating or finished are left out; each Service port is resolved against the pod (a
numeric targetPort as is, a named one through the containers' ports), and pods resolving to
the same port numbers share a subset. Services without a selector keep hand-made Endpoints.
"""
from __future__ import annotations

from typing import Hashable

from ..api import Store, StoreEvent
from ..errors import NotFound
from ..resources import ENDPOINTS, PODS, SERVICES
from ..selectors import labels_match, parse_label_selector
from .meta import Obj, is_pod_active, is_pod_ready, name_of

# Pod events fan out to every Service of the namespace (the worker resolves this key).
ALL_IN_NAMESPACE = ""
HEADLESS_LABEL = "service.kubernetes.io/headless"


def resolve_port(pod: Obj, service_port: Obj) -> int | None:
    """podutil.FindPort: the container port a Service port sends traffic to on this pod."""
    target = service_port.get("targetPort", service_port.get("port"))
    if isinstance(target, int):
        return target
    if isinstance(target, str) and target.isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == target and port.get("protocol", "TCP") == protocol:
                return int(port["containerPort"])
    return None


def _address(pod: Obj) -> Obj:
    meta = pod["metadata"]
    address: Obj = {"ip": pod["status"]["podIP"]}
    if (pod.get("spec") or {}).get("nodeName"):
        address["nodeName"] = pod["spec"]["nodeName"]
    address["targetRef"] = {"kind": "Pod", "namespace": meta.get("namespace"), "name": meta["name"],
                            "uid": meta.get("uid")}
    return address


def endpoint_subsets(service: Obj, pods: list[Obj]) -> list[Obj]:
    """The subsets for service over pods (already selected by its selector), packed by ports."""
    spec = service.get("spec") or {}
    publish_not_ready = bool(spec.get("publishNotReadyAddresses"))
    groups: dict[tuple, Obj] = {}
    for pod in pods:
        if not is_pod_active(pod) or not (pod.get("status") or {}).get("podIP"):
            continue
        ports = []
        for service_port in spec.get("ports") or []:
            number = resolve_port(pod, service_port)
            if number is None:
                continue  # upstream skips a port it cannot resolve on this pod
            port: Obj = {"port": number, "protocol": service_port.get("protocol", "TCP")}
            if service_port.get("name"):
                port = {"name": service_port["name"], **port}
            if service_port.get("appProtocol"):
                port["appProtocol"] = service_port["appProtocol"]
            ports.append(port)
        key = tuple((p.get("name", ""), p["port"], p["protocol"]) for p in ports)
        subset = groups.setdefault(key, {"addresses": [], "notReadyAddresses": [], "ports": ports})
        ready = publish_not_ready or is_pod_ready(pod)
        subset["addresses" if ready else "notReadyAddresses"].append(_address(pod))
    subsets = []
    for subset in groups.values():
        packed: Obj = {}
        for field in ("addresses", "notReadyAddresses"):
            if subset[field]:
                packed[field] = sorted(subset[field], key=lambda a: (a["ip"], a["targetRef"]["uid"] or ""))
        if subset["ports"]:
            packed["ports"] = subset["ports"]
        subsets.append(packed)
    return sorted(subsets, key=lambda s: str(s.get("ports")))


class EndpointsController:
    name = "endpoint-controller"

    def __init__(self, store: Store) -> None:
        self.store = store

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        rt, obj = event.resource, event.object
        namespace = obj["metadata"].get("namespace")
        if rt in (SERVICES, ENDPOINTS):
            return [(namespace, name_of(obj))]
        if rt == PODS:
            return [(namespace, ALL_IN_NAMESPACE)]
        return []

    def all_keys(self) -> list[Hashable]:
        items, _ = self.store.list(SERVICES)
        return [(s["metadata"].get("namespace"), name_of(s)) for s in items]

    def sync(self, key: Hashable) -> None:
        namespace, name = key  # type: ignore[misc]
        if name == ALL_IN_NAMESPACE:
            for service in self.store.list(SERVICES, namespace)[0]:
                self.sync_service(service)
            return
        try:
            service = self.store.get(SERVICES, namespace, name)
        except NotFound:
            self._delete_endpoints(namespace, name)
            return
        self.sync_service(service)

    def _delete_endpoints(self, namespace: str | None, name: str) -> None:
        try:
            self.store.delete(ENDPOINTS, namespace, name)
        except NotFound:
            pass

    def sync_service(self, service: Obj) -> None:
        selector = (service.get("spec") or {}).get("selector")
        if not selector:
            return
        namespace = service["metadata"].get("namespace")
        requirements = parse_label_selector(",".join(f"{k}={v}" for k, v in selector.items()))
        pods = [p for p in self.store.list(PODS, namespace)[0]
                if labels_match(requirements, p["metadata"].get("labels"))]
        subsets = endpoint_subsets(service, pods)
        labels = dict(service["metadata"].get("labels") or {})
        if (service.get("spec") or {}).get("clusterIP") == "None":
            labels[HEADLESS_LABEL] = ""
        try:
            current = self.store.get(ENDPOINTS, namespace, name_of(service))
        except NotFound:
            current = None
        desired: Obj = {"apiVersion": "v1", "kind": "Endpoints",
                        "metadata": {"name": name_of(service), "namespace": namespace}}
        if labels:
            desired["metadata"]["labels"] = labels
        if subsets:
            desired["subsets"] = subsets
        if current is None:
            self.store.create(ENDPOINTS, namespace, desired)
            return
        if current.get("subsets", []) == subsets and (current["metadata"].get("labels") or {}) == labels:
            return
        desired["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        for kept in ("annotations",):
            if current["metadata"].get(kept):
                desired["metadata"][kept] = current["metadata"][kept]
        self.store.replace(ENDPOINTS, namespace, name_of(service), desired)
