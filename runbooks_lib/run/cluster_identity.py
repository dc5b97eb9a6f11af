"""The cluster identity guard: refuse to run against a cluster the profile does not name.

Each profile states the identity of the cluster it means (by default the UID of namespace
kube-system, which is created once per cluster and never changes). A kubeconfig whose context
points anywhere else, say staging while the profile says production, is refused before any
change, with exit code 4.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import BackendUnavailable, GuardRefused, NotFound
from ..platform.kube import api_client, call, resource_path, server_url, translate

if TYPE_CHECKING:
    from ..config.profiles import Profile

__all__ = ["ClusterIdentityCheck", "check_cluster_identity"]


@dataclass(frozen=True)
class ClusterIdentityCheck:
    """What the guard saw: shown in the record so a reader knows which cluster was touched."""

    server: str
    context: str | None
    expected: str
    found: str

    @property
    def matches(self) -> bool:
        return self.expected == self.found


def _found_identity(profile: "Profile") -> tuple[str, str]:
    identity = profile.cluster.identity
    api = api_client(profile.cluster)
    if identity.kind == "namespace-uid":
        with translate(f"read namespace {identity.namespace}"):
            found = call(api, "GET", resource_path("/api/v1", "namespaces", identity.namespace), timeout=10)["metadata"]["uid"]
    else:
        with translate(f"read configmap {identity.namespace}/{identity.name}"):
            cm = call(api, "GET", resource_path("/api/v1", "namespaces", identity.namespace, "configmaps",
                                                identity.name or ""), timeout=10)
        found = (cm.get("data") or {}).get(identity.key or "", "")
    return server_url(api), str(found)


def check_cluster_identity(profile: "Profile") -> ClusterIdentityCheck:
    """Return the check when the cluster is the one the profile names; raise GuardRefused if not.

    A cluster that cannot be reached or read is refused too: the guard fails closed.
    """
    identity = profile.cluster.identity
    try:
        server, found = _found_identity(profile)
    except (BackendUnavailable, NotFound) as e:
        raise GuardRefused(
            f"cannot confirm the cluster for env {profile.name!r} ({e}); refusing before any change"
        ) from e
    check = ClusterIdentityCheck(server, profile.cluster.context, identity.expected, found)
    if not check.matches:
        raise GuardRefused(
            f"wrong cluster for env {profile.name!r}: kubeconfig context "
            f"{profile.cluster.context or '(current)'} points at {server}, whose {identity.kind} is "
            f"{found or '(none)'}, but the profile expects {identity.expected}; refusing before any change"
        )
    return check
