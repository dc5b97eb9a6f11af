"""Our own requests to the control plane while it starts: health probes and bootstrap objects.

Plain ``requests`` with the admin's client cert, not the ``kubernetes`` client: these run in a
thread inside the network namespace when there is one (see :class:`.process.Network`), before
any kubeconfig is worth loading, and need four endpoints and a POST.
"""
from __future__ import annotations

import http.client
import ssl
from pathlib import Path
from typing import Any

import requests

from ..servers.ports import ServerStartFailed
from .pki import CertPair

__all__ = ["AdminApi", "etcd_healthy", "healthz_ok"]


def etcd_healthy(port: int) -> bool:
    """etcd's /health on its loopback client URL says ``"health": "true"``."""
    reply = requests.get(f"http://127.0.0.1:{port}/health", timeout=2)
    return reply.status_code == 200 and reply.json().get("health") == "true"


def healthz_ok(port: int) -> bool:
    """The scheduler's (or controller manager's) /healthz: anonymous (an always-allowed path),
    on the self-signed serving cert it makes in memory at start, hence not verified."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=2, context=context)
    try:
        conn.request("GET", "/healthz")
        response = conn.getresponse()
        return response.status == 200 and response.read().strip() == b"ok"
    finally:
        conn.close()


_PLURALS = {"Namespace": "namespaces", "ClusterRole": "clusterroles", "ClusterRoleBinding": "clusterrolebindings",
            "Role": "roles", "RoleBinding": "rolebindings"}


def collection_path(obj: dict[str, Any]) -> str:
    """The API path of the collection ``obj`` belongs to (the kinds the bootstrap applies)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    namespace = obj["metadata"].get("namespace")
    plural = _PLURALS[kind]
    return f"{prefix}/namespaces/{namespace}/{plural}" if namespace else f"{prefix}/{plural}"


class AdminApi:
    """The apiserver as the sandbox admin (client cert, the cluster CA verified)."""

    def __init__(self, url: str, ca: Path, admin: CertPair) -> None:
        self.url = url
        self.session = requests.Session()
        self.session.verify = str(ca)
        self.session.cert = (str(admin.cert), str(admin.key))
        self.session.trust_env = False  # an HTTPS_PROXY of the caller's shell must not catch our address

    def close(self) -> None:
        self.session.close()

    def ok(self, path: str) -> bool:
        return self.session.get(self.url + path, timeout=5).status_code == 200

    def create_or_replace(self, obj: dict[str, Any]) -> None:
        """POST; when it exists, PUT (RBAC objects) or leave it (a Namespace is not ours to rewrite)."""
        collection = collection_path(obj)
        name = obj["metadata"]["name"]
        reply = self.session.post(self.url + collection, json=obj, timeout=10)
        if reply.status_code == 409:
            if obj["kind"] == "Namespace":
                return
            reply = self.session.put(f"{self.url}{collection}/{name}", json=obj, timeout=10)
        if reply.status_code >= 300:
            raise ServerStartFailed(f"control plane: cannot apply {obj['kind']} {name}: "
                                    f"{reply.status_code} {reply.text[:300]}")
