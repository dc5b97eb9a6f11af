"""Resource types as the real API server serves them, and the URL paths that reach them.

A :class:`ResourceType` names one kind of object by group, version and plural (what the URL
needs) and kind (what the object says). The constants below are the ones the sandbox's parts
read and write. Any other type is one line:
``ResourceType("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget")``.
"""
from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import quote

__all__ = [
    "ResourceType",
    "NAMESPACES",
    "NODES",
    "PODS",
    "SERVICES",
    "ENDPOINTS",
    "ENDPOINTSLICES",
    "SECRETS",
    "CONFIGMAPS",
    "EVENTS",
    "SERVICEACCOUNTS",
    "DEPLOYMENTS",
    "REPLICASETS",
    "JOBS",
    "CRONJOBS",
    "LEASES",
    "HORIZONTALPODAUTOSCALERS",
    "INGRESSES",
    "VIRTUALSERVICES",
    "DESTINATIONRULES",
    "SUBJECTACCESSREVIEWS",
    "CUSTOMRESOURCEDEFINITIONS",
    "NODE_LEASE_NAMESPACE",
]

NODE_LEASE_NAMESPACE = "kube-node-lease"  # where each node's heartbeat Lease lives, named after the node


@dataclass(frozen=True)
class ResourceType:
    """One kind of object: e.g. ``ResourceType("apps", "v1", "deployments", "Deployment")``."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """What an object of this type carries in ``apiVersion``: ``v1``, ``apps/v1``..."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """``deployments.apps`` (``pods`` for the core group): how the API server names the type in errors."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    def path(self, namespace: str | None = None, name: str | None = None, subresource: str | None = None) -> str:
        """The URL path of the collection, of one object, or of one of its subresources.

        ``namespace`` None on a namespaced type is the all-namespaces collection (list, watch);
        on a cluster-scoped type a namespace is ignored, as clients do for Nodes and Namespaces.
        """
        prefix = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        parts = [prefix]
        if self.namespaced and namespace:
            parts.append(f"namespaces/{quote(namespace, safe='')}")
        parts.append(self.plural)
        if name is not None:
            parts.append(quote(name, safe=""))
            if subresource:
                parts.append(subresource)
        elif subresource:
            raise ValueError(f"a subresource ({subresource}) needs an object name")
        return "/".join(parts)


NAMESPACES = ResourceType("", "v1", "namespaces", "Namespace", namespaced=False)
NODES = ResourceType("", "v1", "nodes", "Node", namespaced=False)
PODS = ResourceType("", "v1", "pods", "Pod")
SERVICES = ResourceType("", "v1", "services", "Service")
ENDPOINTS = ResourceType("", "v1", "endpoints", "Endpoints")
SECRETS = ResourceType("", "v1", "secrets", "Secret")
CONFIGMAPS = ResourceType("", "v1", "configmaps", "ConfigMap")
EVENTS = ResourceType("", "v1", "events", "Event")
SERVICEACCOUNTS = ResourceType("", "v1", "serviceaccounts", "ServiceAccount")
ENDPOINTSLICES = ResourceType("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice")
DEPLOYMENTS = ResourceType("apps", "v1", "deployments", "Deployment")
REPLICASETS = ResourceType("apps", "v1", "replicasets", "ReplicaSet")
JOBS = ResourceType("batch", "v1", "jobs", "Job")
CRONJOBS = ResourceType("batch", "v1", "cronjobs", "CronJob")
LEASES = ResourceType("coordination.k8s.io", "v1", "leases", "Lease")
HORIZONTALPODAUTOSCALERS = ResourceType("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler")
INGRESSES = ResourceType("networking.k8s.io", "v1", "ingresses", "Ingress")
# Istio's, as runbooks_lib.platform.routing.istio reads and writes them: the sandbox registers the CRDs.
VIRTUALSERVICES = ResourceType("networking.istio.io", "v1beta1", "virtualservices", "VirtualService")
DESTINATIONRULES = ResourceType("networking.istio.io", "v1beta1", "destinationrules", "DestinationRule")
SUBJECTACCESSREVIEWS = ResourceType("authorization.k8s.io", "v1", "subjectaccessreviews", "SubjectAccessReview",
                                    namespaced=False)
CUSTOMRESOURCEDEFINITIONS = ResourceType("apiextensions.k8s.io", "v1", "customresourcedefinitions",
                                         "CustomResourceDefinition", namespaced=False)
