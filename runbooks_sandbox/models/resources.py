"""The registry of resource types the sandbox serves, and how to add more.

Each ``ResourceInfo`` says what discovery advertises (short names, verbs, subresources) and which
defaulting/validation hooks the store runs on writes. The built-in set covers what the runbooks
and kubectl use; a test or part 2 adds a type with ``registry.register(ResourceInfo(...))``
before the server starts (or at any time: discovery is computed per request).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

from . import batch, defaults
from .api import ResourceType

Obj = dict[str, Any]
# A hook gets the new object (mutable), the stored object for updates (None on create) and
# the store's allocator for cluster-wide unique values such as Service cluster IPs.
Hook = Callable[[Obj, "Obj | None", "defaults.Allocator"], None]

ALL_VERBS = ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")

NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False)
PODS = ResourceType("", "v1", "pods", "Pod")
SERVICES = ResourceType("", "v1", "services", "Service")
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints")
SECRETS = ResourceType("", "v1", "secrets", "Secret")
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
EVENTS = ResourceType("", "v1", "events", "Event")
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
REPLICASETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
VIRTUALSERVICES = ResourceType("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
DESTINATIONRULES = ResourceType("networking.istio.io", "v1beta1", "destinationrules", "DestinationRule")
SERVICEACCOUNTS = ResourceType("", "v1", "serviceaccounts", "ServiceAccount")
HORIZONTALPODAUTOSCALERS = ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
INGRESSES = ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress")


@dataclass(frozen=True)
class ResourceInfo:
    """A served resource type with what discovery and the store need to know about it."""

    type: ResourceType
    short_names: tuple[str, ...] = ()
    # "status" and "scale" change store semantics; "log" is served by the HTTP layer.
    subresources: frozenset[str] = frozenset()
    categories: tuple[str, ...] = ()
    verbs: tuple[str, ...] = ALL_VERBS
    on_write: Hook | None = None  # defaulting, run on create and update
    validate: Hook | None = None  # raises errors.Invalid
    has_spec: bool = True  # generation is tracked (and bumped on spec change) only with a spec
    # DELETE's propagationPolicy when the request names none (the REST strategy's
    # DefaultGarbageCollectionPolicy): Background for most kinds; batch/v1 Jobs keep Orphan.
    default_propagation: str = "Background"
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    @property
    def singular(self) -> str:
        return self.type.kind.lower()


class ResourceRegistry:
    """Resource types by (group, plural) and by kind; the source for discovery and OpenAPI."""

    def __init__(self, infos: list[ResourceInfo] | None = None) -> None:
        self._by_key: dict[tuple[str, str], ResourceInfo] = {}
        for info in infos or []:
            self.register(info)

    def register(self, info: ResourceInfo) -> None:
        self._by_key[(info.type.group, info.type.plural)] = info

    def __iter__(self) -> Iterator[ResourceInfo]:
        return iter(list(self._by_key.values()))

    def info(self, rt: ResourceType) -> ResourceInfo:
        """The registered info for rt, or a plain one (unknown types are stored generically)."""
        return self._by_key.get((rt.group, rt.plural)) or ResourceInfo(rt)

    def lookup(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        info = self._by_key.get((group, plural))
        return info if info and info.type.version == version else None

    def by_kind(self, kind: str, group: str | None = None) -> ResourceInfo | None:
        for info in self._by_key.values():
            if info.type.kind == kind and (group is None or info.type.group == group):
                return info
        return None

    def group_versions(self) -> dict[str, list[str]]:
        """Served groups (the core group is "") and their versions, in registration order."""
        result: dict[str, list[str]] = {}
        for info in self._by_key.values():
            versions = result.setdefault(info.type.group, [])
            if info.type.version not in versions:
                versions.append(info.type.version)
        return result


def builtin_registry() -> ResourceRegistry:
    """A fresh registry with every type the sandbox serves out of the box."""
    status = frozenset({"status"})
    scalable = frozenset({"status", "scale"})
    return ResourceRegistry([
        ResourceInfo(NAMESPACES, ("ns",), status, on_write=defaults.namespace,
                     verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
        ResourceInfo(NODES, ("no",), status),
        ResourceInfo(PODS, ("po",), frozenset({"status", "log"}), ("all",), on_write=defaults.pod),
        ResourceInfo(SERVICES, ("svc",), status, ("all",), on_write=defaults.service),
        ResourceInfo(ENDPOINTS, ("ep",), has_spec=False),
        ResourceInfo(SECRETS, (), on_write=defaults.secret, has_spec=False),
        ResourceInfo(CONFIGMAPS, ("cm",), has_spec=False),
        ResourceInfo(EVENTS, ("ev",), has_spec=False),
        ResourceInfo(DEPLOYMENTS, ("deploy",), scalable, ("all",), on_write=defaults.deployment,
                     validate=defaults.validate_selector),
        ResourceInfo(REPLICASETS, ("rs",), scalable, ("all",), on_write=defaults.replicaset,
                     validate=defaults.validate_selector),
        ResourceInfo(SERVICEACCOUNTS, ("sa",), has_spec=False),
        ResourceInfo(HORIZONTALPODAUTOSCALERS, ("hpa",), status, ("all",), on_write=defaults.horizontal_pod_autoscaler,
                     validate=defaults.validate_horizontal_pod_autoscaler),
        ResourceInfo(INGRESSES, ("ing",), status, on_write=defaults.ingress),
        ResourceInfo(LEASES, ()),
        ResourceInfo(VIRTUALSERVICES, ("vs",), categories=("istio-io", "networking-istio-io")),
        ResourceInfo(DESTINATIONRULES, ("dr",), categories=("istio-io", "networking-istio-io")),
        ResourceInfo(batch.JOBS, (), status, ("all",), on_write=batch.job, validate=batch.validate_job),
        ResourceInfo(batch.CRONJOBS, ("cj",), status, ("all",), on_write=batch.cronjob,
                     validate=batch.validate_cronjob),
    ])
