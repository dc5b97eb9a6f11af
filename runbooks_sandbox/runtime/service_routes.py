"""Where a request to a Service's cluster address goes: the proxy's routing table, without I/O.

Built from the objects a cluster's data plane reads: Services, their Endpoints (kept by the
Endpoints controller; the pods themselves while there is none), pods (readiness, labels, named
ports) and Istio ``VirtualService`` / ``DestinationRule`` objects. Without a VirtualService a
Service port has one route to all its ready endpoints. With one whose ``hosts`` name the
Service, its ``http`` routes apply in order: the first whose ``match`` fits the request, split
between its destinations by weight (proportional; 0 means none), each destination being a
Service port narrowed to a DestinationRule subset's labels.

Weighted choice is deterministic (a golden-ratio sequence per route), so 90/10 means 900 of
every 1 000 requests within one or two, not 900 +- 19; counters live in the proxy and survive
table rebuilds, which happen at every pod status change.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable, Mapping

from .probes import resolve_port

__all__ = ["Backend", "Destination", "ObjectCache", "PortRoutes", "Route", "build_table", "service_of_host"]

Obj = dict[str, Any]
_GOLDEN = 0.6180339887498949
WATCHED = ("services", "endpoints", "pods", "virtualservices", "destinationrules")


class ObjectCache:
    """The latest copy of every watched object, by plural and (namespace, name)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[tuple[str, str], Obj]] = {plural: {} for plural in WATCHED}

    def put(self, plural: str, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[plural][(meta.get("namespace") or "", meta["name"])] = obj

    def remove(self, plural: str, obj: Obj) -> None:
        meta = obj["metadata"]
        self.objects[plural].pop((meta.get("namespace") or "", meta["name"]), None)

    def get(self, plural: str, namespace: str, name: str) -> Obj | None:
        return self.objects[plural].get((namespace, name))

    def in_namespace(self, plural: str, namespace: str) -> Iterable[Obj]:
        return (o for (ns, _), o in self.objects[plural].items() if ns == namespace)


@dataclass(frozen=True)
class Backend:
    ip: str
    port: int
    pod: str | None  # for the X-Veza-Upstream header and tests


@dataclass(frozen=True)
class Destination:
    key: str  # stable across rebuilds: round-robin counters are kept by it
    backends: tuple[Backend, ...]
    weight: int


@dataclass(frozen=True)
class _Match:
    headers: tuple[tuple[str, str, str], ...]  # (lower-case name, exact|prefix|regex, value)
    uri: tuple[str, str] | None
    method: str | None

    def fits(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        if self.method and method != self.method:
            return False
        if self.uri and not _string_match(self.uri[0], self.uri[1], path):
            return False
        return all(name in headers and _string_match(op, value, headers[name]) for name, op, value in self.headers)


def _string_match(op: str, expected: str, actual: str) -> bool:
    if op == "exact":
        return actual == expected
    if op == "prefix":
        return actual.startswith(expected)
    return re.fullmatch(expected, actual) is not None  # Istio's regex is RE2, anchored


def _string_op(spec: Obj) -> tuple[str, str] | None:
    for op in ("exact", "prefix", "regex"):
        if op in spec:
            return op, str(spec[op])
    return None


@dataclass(frozen=True)
class Route:
    key: str
    matches: tuple[_Match, ...]  # empty: every request
    destinations: tuple[Destination, ...]

    def fits(self, method: str, path: str, headers: Mapping[str, str]) -> bool:
        return not self.matches or any(m.fits(method, path, headers) for m in self.matches)

    def pick(self, counters: dict[str, int]) -> Destination | None:
        """The destination for the next request (weights proportional, deterministic)."""
        total = sum(d.weight for d in self.destinations)
        if total <= 0:
            return None
        n = counters.get(self.key, 0)
        counters[self.key] = n + 1
        point = ((n * _GOLDEN) % 1.0) * total
        for destination in self.destinations:
            if point < destination.weight:
                return destination
            point -= destination.weight
        return self.destinations[-1]


@dataclass(frozen=True)
class PortRoutes:
    """Everything about one Service port the proxy serves."""

    namespace: str
    service: str
    port: int
    routes: tuple[Route, ...]
    virtual_service: str | None

    def route_for(self, method: str, path: str, headers: Mapping[str, str]) -> Route | None:
        return next((r for r in self.routes if r.fits(method, path, headers)), None)

    def backends(self) -> list[Backend]:
        """Every backend any route may use (tests, status, pool pruning)."""
        seen = {b: None for r in self.routes for d in r.destinations for b in d.backends}
        return list(seen)


def service_of_host(host: str, namespace: str) -> tuple[str, str] | None:
    """Istio host → (namespace, service): short names are relative to the rule's namespace."""
    if not host or "*" in host:
        return None
    parts = host.split(".")
    if len(parts) == 1:
        return namespace, parts[0]
    if len(parts) == 2 or parts[2] == "svc":
        return parts[1], parts[0]
    return None  # an external host: not a Service of this cluster


def _pod_serving(pod: Obj) -> bool:
    """Ready, not terminating: what the Endpoints controller would list as a ready address."""
    if pod["metadata"].get("deletionTimestamp") or not (pod.get("status") or {}).get("podIP"):
        return False
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Ready" and c.get("status") == "True" for c in conditions)


def _labels_match(selector: Mapping[str, str], labels: Mapping[str, str] | None) -> bool:
    labels = labels or {}
    return all(labels.get(k) == v for k, v in selector.items())


def _pod_target_port(pod: Obj, target: int | str) -> int | None:
    for container in pod.get("spec", {}).get("containers") or []:
        port = resolve_port(target, container)
        if port is not None:
            return port
    return None


def _backends(cache: ObjectCache, service: Obj, port: Obj, subset: Mapping[str, str] | None) -> tuple[Backend, ...]:
    """Ready endpoints of a Service port, optionally narrowed to pods with the subset's labels."""
    namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
    pods = {p["metadata"]["name"]: p for p in cache.in_namespace("pods", namespace)}
    by_ip = {(p.get("status") or {}).get("podIP"): p for p in pods.values()}
    found: list[Backend] = []
    endpoints = cache.get("endpoints", namespace, name)
    if endpoints is not None:
        for ep_subset in endpoints.get("subsets") or []:
            ep_ports = ep_subset.get("ports") or []
            number = next((p["port"] for p in ep_ports if p.get("name", "") == port.get("name", "")), None)
            if number is None and len(ep_ports) == 1:
                number = ep_ports[0]["port"]
            if number is None:
                continue
            for address in ep_subset.get("addresses") or []:
                ref = (address.get("targetRef") or {}).get("name")
                pod = pods.get(ref) if ref else by_ip.get(address.get("ip"))
                # The pod's own state is newer than the Endpoints object: a pod that turned
                # unready or terminating is dropped at once, as kube-proxy drops it once told.
                if (pod is not None and not _pod_serving(pod)) or (ref and pod is None):
                    continue
                if subset is not None and (pod is None or not _labels_match(subset, pod["metadata"].get("labels"))):
                    continue
                found.append(Backend(address["ip"], int(number), ref or (pod or {}).get("metadata", {}).get("name")))
    elif service.get("spec", {}).get("selector"):
        selector = service["spec"]["selector"]
        for pod in pods.values():
            labels = pod["metadata"].get("labels")
            if not _pod_serving(pod) or not _labels_match(selector, labels):
                continue
            if subset is not None and not _labels_match(subset, labels):
                continue
            number = _pod_target_port(pod, port.get("targetPort", port["port"]))
            if number is not None:
                found.append(Backend(pod["status"]["podIP"], number, pod["metadata"]["name"]))
    return tuple(sorted(found, key=lambda b: (b.ip, b.port)))


def _virtual_service_for(cache: ObjectCache, namespace: str, name: str) -> Obj | None:
    """The oldest mesh VirtualService whose hosts name this Service (Istio's precedence)."""
    candidates = []
    for vs in cache.objects["virtualservices"].values():
        spec = vs.get("spec") or {}
        gateways = spec.get("gateways")
        if gateways and "mesh" not in gateways:
            continue
        vs_ns = vs["metadata"].get("namespace") or "default"
        if any(service_of_host(h, vs_ns) == (namespace, name) for h in spec.get("hosts") or []):
            candidates.append(vs)
    candidates.sort(key=lambda v: (v["metadata"].get("creationTimestamp", ""), v["metadata"]["name"]))
    return candidates[0] if candidates else None


def _subset_labels(cache: ObjectCache, namespace: str, service: str, subset: str, rule_ns: str) -> dict[str, str] | None:
    for rule in list(cache.in_namespace("destinationrules", namespace)) + list(cache.in_namespace("destinationrules", rule_ns)):
        spec = rule.get("spec") or {}
        rule_host_ns = rule["metadata"].get("namespace") or "default"
        if service_of_host(spec.get("host", ""), rule_host_ns) != (namespace, service):
            continue
        for entry in spec.get("subsets") or []:
            if entry.get("name") == subset:
                return dict(entry.get("labels") or {})
    return None


def _destination(cache: ObjectCache, vs_ns: str, route_key: str, spec: Obj, weight: int, service: Obj, port: Obj) -> Destination:
    target = service_of_host(spec.get("host", ""), vs_ns)
    key = f"{route_key}>{spec.get('host')}/{spec.get('subset', '')}"
    if target is None:
        return Destination(key, (), weight)
    dest_service = cache.get("services", *target)
    if dest_service is None:
        return Destination(key, (), weight)  # Istio answers 503 for a route to a missing host
    dest_ports = dest_service.get("spec", {}).get("ports") or []
    number = (spec.get("port") or {}).get("number")
    if number is not None:
        dest_port = next((p for p in dest_ports if p.get("port") == number), None)
    elif dest_service is service:
        dest_port = port
    else:
        dest_port = dest_ports[0] if len(dest_ports) == 1 else next((p for p in dest_ports if p.get("port") == port["port"]), None)
    labels: dict[str, str] | None = None
    if spec.get("subset"):
        labels = _subset_labels(cache, target[0], target[1], spec["subset"], vs_ns)
        if labels is None:
            return Destination(key, (), weight)  # an undefined subset has no endpoints
    backends = _backends(cache, dest_service, dest_port, labels) if dest_port else ()
    return Destination(key, backends, weight)


def _matches(specs: list[Obj]) -> tuple[_Match, ...]:
    result = []
    for spec in specs:
        headers = tuple((name.lower(), *op) for name, value in (spec.get("headers") or {}).items()
                        if (op := _string_op(value or {})) is not None)
        method = _string_op(spec.get("method") or {})
        result.append(_Match(headers, _string_op(spec.get("uri") or {}), method[1] if method else None))
    return tuple(result)


def _vs_routes(cache: ObjectCache, vs: Obj, service: Obj, port: Obj) -> tuple[Route, ...]:
    vs_ns, vs_name = vs["metadata"].get("namespace") or "default", vs["metadata"]["name"]
    routes = []
    for index, http in enumerate((vs.get("spec") or {}).get("http") or []):
        key = f"{vs_ns}/{vs_name}/{service['metadata']['name']}:{port['port']}#{index}"
        entries = http.get("route") or []
        weights = [e.get("weight") for e in entries]
        if all(w is None for w in weights):  # one destination takes all; several share equally
            weights = [1] * len(entries)
        destinations = tuple(
            _destination(cache, vs_ns, key, entry.get("destination") or {}, int(w or 0), service, port)
            for entry, w in zip(entries, weights)
        )
        routes.append(Route(key, _matches(http.get("match") or []), destinations))
    return tuple(routes)


def build_table(cache: ObjectCache) -> dict[tuple[str, int], PortRoutes]:
    """(cluster IP, port) -> routes, for every Service with a cluster IP."""
    table: dict[tuple[str, int], PortRoutes] = {}
    for service in cache.objects["services"].values():
        spec = service.get("spec") or {}
        cluster_ip = spec.get("clusterIP")
        if not cluster_ip or cluster_ip == "None" or spec.get("type") == "ExternalName":
            continue
        namespace, name = service["metadata"]["namespace"], service["metadata"]["name"]
        vs = _virtual_service_for(cache, namespace, name)
        for port in spec.get("ports") or []:
            if port.get("protocol", "TCP") != "TCP":
                continue
            if vs is not None:
                routes = _vs_routes(cache, vs, service, port)
            else:
                key = f"{namespace}/{name}:{port['port']}"
                routes = (Route(key, (), (Destination(key, _backends(cache, service, port, None), 1),)),)
            table[(cluster_ip, int(port["port"]))] = PortRoutes(
                namespace, name, int(port["port"]), routes, f"{vs['metadata'].get('namespace')}/{vs['metadata']['name']}" if vs else None)
    return table
