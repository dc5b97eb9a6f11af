"""The kubelet endpoint of one node: container logs over HTTPS, for the API server to proxy.

``kubectl logs [-f] [--previous]`` asks the API server, which connects to the node's InternalIP
at ``status.daemonEndpoints.kubeletEndpoint.Port`` and requests
``/containerLogs/<namespace>/<pod>/<container>?follow=&previous=&tailLines=&timestamps=&sinceSeconds=&limitBytes=``,
as the kubelet serves it. Both sides prove who they are, as on a real cluster:

- the node serves a cert of the cluster CA naming its address (:mod:`.identity`), which the
  API server verifies (``--kubelet-certificate-authority``);
- the node demands a client cert of the cluster CA (the API server presents
  ``kube-apiserver-kubelet-client``) and asks the API server whether that user may ``get``
  ``nodes/proxy`` of this node (a SubjectAccessReview, what the kubelet's webhook authorizer
  does; answers cached 5 min when allowed, 30 s when denied). Anything else gets 401 or 403.

Only ``/containerLogs`` and ``/healthz`` are served (no exec, attach or port-forward).
"""
from __future__ import annotations

import logging
import select
import ssl
import threading
import time
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from ..kube import SUBJECTACCESSREVIEWS, ClusterStore
from ..kube.errors import ApiError, BadRequest, NotFound, Unreachable
from .identity import NodeIdentity
from .pods import NodePods

__all__ = ["KubeletServer"]

log = logging.getLogger(__name__)
_ALLOWED_TTL_S, _DENIED_TTL_S = 300.0, 30.0  # the kubelet's webhook authorizer cache


class _Authorizer:
    """May this client cert's user ``get nodes/proxy`` of this node? (SubjectAccessReview, cached)."""

    def __init__(self, store: ClusterStore, node: str) -> None:
        self.store, self.node = store, node
        self._cache: dict[tuple[str, tuple[str, ...]], tuple[bool, float]] = {}
        self._lock = threading.Lock()

    def allowed(self, user: str, groups: tuple[str, ...]) -> bool:
        key = (user, groups)
        with self._lock:
            cached = self._cache.get(key)
            if cached and cached[1] > time.monotonic():
                return cached[0]
        review = {"spec": {"user": user, "groups": list(groups), "resourceAttributes": {
            "verb": "get", "resource": "nodes", "subresource": "proxy", "name": self.node}}}
        try:
            answer = self.store.create(SUBJECTACCESSREVIEWS, None, review)
        except (ApiError, Unreachable) as e:
            log.warning("node %s: SubjectAccessReview failed: %s", self.node, e)
            return False  # not cached: the API server may be back at the next request
        allowed = bool((answer.get("status") or {}).get("allowed"))
        with self._lock:
            self._cache[key] = (allowed, time.monotonic() + (_ALLOWED_TTL_S if allowed else _DENIED_TTL_S))
        return allowed


def _subject(cert: dict[str, Any] | None) -> tuple[str, tuple[str, ...]] | None:
    """(CN, O values) of a verified peer cert, as Kubernetes reads a client cert's user and groups."""
    if not cert:
        return None
    names = [item for rdn in cert.get("subject", ()) for item in rdn]
    user = next((value for key, value in names if key == "commonName"), None)
    groups = tuple(value for key, value in names if key == "organizationName")
    return (user, groups) if user else None


class _HTTPServer(ThreadingHTTPServer):
    kubelet: "KubeletServer"


class KubeletServer:
    """HTTPS on ``identity.address:port`` for one node (module doc); ``start``/``stop``."""

    def __init__(self, identity: NodeIdentity, pods: NodePods, store: ClusterStore, port: int) -> None:
        self.identity, self.pods, self.port = identity, pods, port
        self.authorizer = _Authorizer(store, identity.name)
        self.stopping = threading.Event()
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(str(identity.serving.cert), str(identity.serving.key))
        context.load_verify_locations(cafile=str(identity.ca_file))
        # Optional, not required, at the handshake: a caller without a cert gets a 401 it can read.
        context.verify_mode = ssl.CERT_OPTIONAL
        self._httpd = _HTTPServer((identity.address, port), _Handler)
        self._httpd.kubelet = self
        self._httpd.daemon_threads = True
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(target=self._httpd.serve_forever, name=f"kubelet-{identity.name}",
                                        daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.stopping.set()  # followers end at their next tick
        self._httpd.shutdown()
        self._httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    """One request to a node's kubelet endpoint (``self.server.kubelet`` is its :class:`KubeletServer`)."""

    server: _HTTPServer
    server_version = "sandbox-kubelet"
    # HTTP/1.0: a followed log streams until the connection closes, with no chunking to do.
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # the agent's log, not stderr
        log.debug("kubelet %s: " + format, self.server.kubelet.identity.name, *args)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        kubelet = self.server.kubelet
        url = urlsplit(self.path)
        if url.path == "/healthz":
            self._reply(HTTPStatus.OK, "ok")
            return
        subject = _subject(self.connection.getpeercert())  # type: ignore[attr-defined]
        if subject is None:
            self._reply(HTTPStatus.UNAUTHORIZED, "Unauthorized")
            return
        if not kubelet.authorizer.allowed(*subject):
            self._reply(HTTPStatus.FORBIDDEN,
                        f"Forbidden (user={subject[0]}, verb=get, resource=nodes, subresource=proxy)")
            return
        parts = [unquote(p) for p in url.path.split("/") if p]
        if len(parts) != 4 or parts[0] != "containerLogs":
            self._reply(HTTPStatus.NOT_FOUND, "404 page not found")
            return
        self._logs(*parts[1:], parse_qs(url.query))

    def _logs(self, namespace: str, pod: str, container: str, query: dict[str, list[str]]) -> None:
        def flag(name: str) -> bool:
            return (query.get(name) or ["false"])[0].lower() in ("true", "1")

        def number(name: str) -> int | None:
            value = (query.get(name) or [""])[0]
            return int(value) if value else None

        try:
            runner = self.server.kubelet.pods.container(namespace, pod, container)
            tail, since, limit = number("tailLines"), number("sinceSeconds"), number("limitBytes")
            previous, timestamps = flag("previous"), flag("timestamps")
            if previous and not runner.log.has_previous():
                raise BadRequest(f'previous terminated container "{container}" in pod "{pod}" not found')
        except (NotFound, BadRequest, ValueError) as e:
            self._reply(HTTPStatus.NOT_FOUND if isinstance(e, NotFound) else HTTPStatus.BAD_REQUEST, str(e))
            return
        if not flag("follow") or previous:
            text = runner.log.text(tail=tail, previous=previous, timestamps=timestamps, since_seconds=since)
            self._reply(HTTPStatus.OK, text[:limit] if limit is not None else text)
            return
        self.send_response(HTTPStatus.OK)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.end_headers()
        sent = 0
        try:
            for chunk in runner.log.follow(tail=tail, timestamps=timestamps, since_seconds=since, stopped=self._left):
                data = chunk.encode()[:None if limit is None else max(0, limit - sent)]
                self.wfile.write(data)
                self.wfile.flush()
                sent += len(data)
                if limit is not None and sent >= limit:
                    return
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            return  # the API server (the person's kubectl) left

    def _left(self) -> bool:
        """The agent stops, or the caller left: it sends nothing after its request, so a
        readable socket means its close (EOF or TLS close_notify)."""
        if self.server.kubelet.stopping.is_set():
            return True
        readable, _, _ = select.select([self.connection], [], [], 0)
        return bool(readable)

    def _reply(self, status: HTTPStatus, text: str) -> None:
        body = text.encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
