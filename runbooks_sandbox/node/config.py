"""A pod's Secrets and ConfigMaps, read from the real API server as the pod's node.

The Node authorizer lets a node read only the Secrets and ConfigMaps a pod bound to it names,
which is exactly what resolving that pod's environment needs.
"""
from __future__ import annotations

from ..kube import CONFIGMAPS, SECRETS, ClusterStore
from ..kube.errors import Forbidden, NotFound
from ..runtime.containers import ConfigLookup, decoded_data

__all__ = ["cluster_lookup"]


def cluster_lookup(store: ClusterStore) -> ConfigLookup:
    """The :class:`~runbooks_sandbox.runtime.containers.ConfigLookup` of ``store``."""
    def lookup(kind: str, namespace: str, name: str) -> dict[str, str] | None:
        try:
            obj = store.get(SECRETS if kind == "Secret" else CONFIGMAPS, namespace, name)
        except (NotFound, Forbidden):
            # The Node authorizer answers Forbidden, not NotFound, for an object no pod of this
            # node may name yet (its graph learns of a pod a moment after the pod is bound).
            return None
        return decoded_data(kind, obj)

    return lookup
