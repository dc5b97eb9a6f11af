"""The sandbox's own client of the real Kubernetes API server, shared by the node agent, the
Service proxy and the supervisor.

- :mod:`.resources`: :class:`ResourceType` (group, version, plural, kind; ``path()``) and the
  types the sandbox uses (``PODS``, ``SERVICES``, ``ENDPOINTSLICES``, ``NODES``, ``LEASES``...).
- :mod:`.errors`: :class:`ApiError` and its children, built from the server's Status bodies.
- :mod:`.client`: :class:`Credentials` (a kubeconfig context, or server + CA + client cert or
  token) and :class:`ApiClient` (JSON over HTTPS, urllib3).
- :mod:`.store`: :class:`ClusterStore`: get, list, create, replace, patch, delete,
  update_status, watch and subscribe (informers).
- :mod:`.informer`: :class:`StoreEvent`, :class:`Subscription`, the informer and watch stream.

Why not the official ``kubernetes`` client: the sandbox's parts need informers that deliver
plain dicts with relists done right, client-certificate
identities per node, and no model classes to convert through; ~500 lines over urllib3 do that.
The runbooks (``runbooks_lib``) keep the official client: they are what production runs.
"""
from __future__ import annotations

from .client import ApiClient, Credentials
from .errors import (
    AlreadyExists,
    ApiError,
    BadRequest,
    Conflict,
    Forbidden,
    Gone,
    InternalError,
    Invalid,
    MethodNotAllowed,
    NotFound,
    ServiceUnavailable,
    Timeout,
    TooManyRequests,
    Unauthorized,
    Unreachable,
    UnsupportedMediaType,
)
from .informer import EventType, StoreEvent, Subscription, WatchStream
from .resources import (
    CONFIGMAPS,
    CRONJOBS,
    CUSTOMRESOURCEDEFINITIONS,
    DEPLOYMENTS,
    DESTINATIONRULES,
    ENDPOINTS,
    ENDPOINTSLICES,
    EVENTS,
    HORIZONTALPODAUTOSCALERS,
    INGRESSES,
    JOBS,
    LEASES,
    NAMESPACES,
    NODE_LEASE_NAMESPACE,
    NODES,
    PODS,
    REPLICASETS,
    SECRETS,
    SERVICEACCOUNTS,
    SERVICES,
    SUBJECTACCESSREVIEWS,
    VIRTUALSERVICES,
    ResourceType,
)
from .store import ClusterStore
from .timestamps import now_rfc3339, now_rfc3339_micro

__all__ = [
    "ClusterStore", "Credentials", "ApiClient", "StoreEvent", "EventType", "Subscription", "WatchStream",
    "ResourceType", "NAMESPACES", "NODES", "PODS", "SERVICES", "ENDPOINTS", "ENDPOINTSLICES", "SECRETS",
    "CONFIGMAPS", "EVENTS", "SERVICEACCOUNTS", "DEPLOYMENTS", "REPLICASETS", "JOBS", "CRONJOBS", "LEASES",
    "HORIZONTALPODAUTOSCALERS", "INGRESSES", "VIRTUALSERVICES", "DESTINATIONRULES", "SUBJECTACCESSREVIEWS",
    "CUSTOMRESOURCEDEFINITIONS", "NODE_LEASE_NAMESPACE",
    "ApiError", "BadRequest", "Unauthorized", "Forbidden", "NotFound", "MethodNotAllowed", "AlreadyExists",
    "Conflict", "Gone", "UnsupportedMediaType", "Invalid", "TooManyRequests", "InternalError",
    "ServiceUnavailable", "Timeout", "Unreachable",
    "now_rfc3339", "now_rfc3339_micro",
]
