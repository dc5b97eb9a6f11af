"""The node agent's kubelet endpoint (runbooks_sandbox.node.server) without a cluster.

On 127.0.0.1 with a PKI made for the test: the endpoint serves a container's log only to a
client cert of the cluster CA whose user a SubjectAccessReview allows (a stub answers it here),
and reads tail/previous/follow as the API server sends them.
"""
from __future__ import annotations

import ssl
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from runbooks_sandbox.controlplane.pki import KUBELET_CLIENT_USER, Pki
from runbooks_sandbox.kube.client import Credentials
from runbooks_sandbox.kube.errors import NotFound
from runbooks_sandbox.node.identity import NodeIdentity
from runbooks_sandbox.node.server import KubeletServer
from runbooks_sandbox.runtime.logs import ContainerLog
from runbooks_sandbox.servers.ports import free_port

ADDRESS = "127.0.0.1"


class _Reviews:
    """A SubjectAccessReview stub: allows the API server's kubelet client only."""

    def __init__(self) -> None:
        self.asked: list[dict[str, Any]] = []

    def create(self, rt: Any, namespace: Any, review: dict[str, Any]) -> dict[str, Any]:
        self.asked.append(review["spec"])
        return {"status": {"allowed": review["spec"]["user"] == KUBELET_CLIENT_USER}}


class _Runner:
    def __init__(self) -> None:
        self.log = ContainerLog()


class _Pods:
    def __init__(self) -> None:
        self.runner = _Runner()

    def container(self, namespace: str, pod: str, container: str) -> _Runner:
        if (namespace, pod, container) != ("ns", "web-1", "web"):
            raise NotFound(f'pod "{pod}" not found on node n1')
        return self.runner


@pytest.fixture
def endpoint(tmp_path: Path) -> Any:
    pki = Pki.create(tmp_path / "pki")
    serving = pki.issue_kubelet_serving_cert("n1", [ADDRESS])
    identity = NodeIdentity("n1", ADDRESS, Credentials(server="https://unused"), serving, pki.ca.cert)
    pods, reviews = _Pods(), _Reviews()
    server = KubeletServer(identity, pods, reviews, free_port())  # type: ignore[arg-type]
    server.start()
    yield server, pki, pods, reviews
    server.stop()


def _get(server: KubeletServer, pki: Pki, path: str, client: Any = None, timeout: float = 5) -> tuple[int, str]:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if client is not None:
        context.load_cert_chain(str(client.cert), str(client.key))
    try:
        with urllib.request.urlopen(f"https://{ADDRESS}:{server.port}{path}", context=context, timeout=timeout) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


def test_logs_need_a_cluster_client_cert_and_an_allowed_user(endpoint: Any) -> None:
    server, pki, pods, reviews = endpoint
    pods.runner.log.append("hello\n")
    assert _get(server, pki, "/containerLogs/ns/web-1/web")[0] == 401
    person = pki.issue_client_cert("alice", "alice", ("veza:viewers",))
    assert _get(server, pki, "/containerLogs/ns/web-1/web", person)[0] == 403
    assert _get(server, pki, "/containerLogs/ns/web-1/web", pki.apiserver_kubelet_client) == (200, "hello\n")
    assert reviews.asked[-1]["resourceAttributes"] == {"verb": "get", "resource": "nodes", "subresource": "proxy",
                                                       "name": "n1"}
    assert _get(server, pki, "/containerLogs/ns/nope/web", pki.apiserver_kubelet_client)[0] == 404


def test_tail_previous_and_follow(endpoint: Any) -> None:
    server, pki, pods, _ = endpoint
    client = pki.apiserver_kubelet_client
    log = pods.runner.log
    log.append("first instance\n")
    log.new_instance()
    for line in ("a\n", "b\n", "c\n"):
        log.append(line)
    assert _get(server, pki, "/containerLogs/ns/web-1/web?tailLines=2", client) == (200, "b\nc\n")
    assert _get(server, pki, "/containerLogs/ns/web-1/web?previous=true", client) == (200, "first instance\n")
    threading.Timer(0.5, lambda: (log.append("d\n"), log.end())).start()
    began = time.monotonic()
    assert _get(server, pki, "/containerLogs/ns/web-1/web?follow=true&tailLines=1", client) == (200, "c\nd\n")
    assert time.monotonic() - began >= 0.4  # it waited for the new line, then ended with the process
