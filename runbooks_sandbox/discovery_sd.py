"""The http_sd endpoint Prometheus polls to find the sandbox's pods.

Debian's Prometheus 2.42 has no ``kubernetes_sd_configs``, so the sandbox lists its pods in
the ``http_sd_configs`` format (a JSON list of ``{"targets": [...], "labels": {...}}``) with
the ``__meta_kubernetes_pod_*`` labels kubernetes_sd's pod role would attach. The guide's
relabelling (pod label ``app`` -> job, pod IP -> ``$1:8080``) then works as written.

As kubernetes_sd does, there is one target per declared container port (or one per container
without ports), and pods that have no IP yet or have terminated are left out.
"""
from __future__ import annotations

import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

from .jsonhttp import send_json

__all__ = ["pod_targets", "PodDiscoveryServer"]

Obj = dict[str, Any]
_PREFIX = "__meta_kubernetes_"


def _label_name(key: str) -> str:
    """Prometheus' sanitising of a label or annotation key (``app.kubernetes.io/name`` -> ``app_kubernetes_io_name``)."""
    return re.sub(r"[^a-zA-Z0-9_]", "_", key)


def _pod_labels(pod: Obj) -> dict[str, str]:
    meta, spec, status = pod["metadata"], pod.get("spec", {}), pod.get("status", {})
    ready = next((c.get("status") for c in status.get("conditions") or [] if c.get("type") == "Ready"), "False")
    labels = {
        f"{_PREFIX}namespace": meta.get("namespace", ""),
        f"{_PREFIX}pod_name": meta["name"],
        f"{_PREFIX}pod_uid": meta.get("uid", ""),
        f"{_PREFIX}pod_ip": status.get("podIP", ""),
        f"{_PREFIX}pod_host_ip": status.get("hostIP", ""),
        f"{_PREFIX}pod_node_name": spec.get("nodeName", ""),
        f"{_PREFIX}pod_phase": status.get("phase", "Pending"),
        f"{_PREFIX}pod_ready": "true" if ready == "True" else "false",
    }
    for key, value in (meta.get("labels") or {}).items():
        labels[f"{_PREFIX}pod_label_{_label_name(key)}"] = str(value)
        labels[f"{_PREFIX}pod_labelpresent_{_label_name(key)}"] = "true"
    for key, value in (meta.get("annotations") or {}).items():
        labels[f"{_PREFIX}pod_annotation_{_label_name(key)}"] = str(value)
        labels[f"{_PREFIX}pod_annotationpresent_{_label_name(key)}"] = "true"
    owner = next((o for o in meta.get("ownerReferences") or [] if o.get("controller")), None)
    if owner:
        labels[f"{_PREFIX}pod_controller_kind"] = owner.get("kind", "")
        labels[f"{_PREFIX}pod_controller_name"] = owner.get("name", "")
    return labels


def pod_targets(pods: list[Obj]) -> list[dict[str, Any]]:
    """http_sd target groups for ``pods``, one per container port, as kubernetes_sd builds them."""
    groups: list[dict[str, Any]] = []
    for pod in sorted(pods, key=lambda p: (p["metadata"].get("namespace", ""), p["metadata"]["name"])):
        status = pod.get("status", {})
        ip = status.get("podIP")
        if not ip or status.get("phase") in ("Succeeded", "Failed"):
            continue
        base = _pod_labels(pod)
        for container in pod.get("spec", {}).get("containers") or []:
            labels = {**base, f"{_PREFIX}pod_container_name": container["name"],
                      f"{_PREFIX}pod_container_image": container.get("image", "")}
            ports = container.get("ports") or []
            if not ports:
                groups.append({"targets": [ip], "labels": labels})
            for port in ports:
                number = port["containerPort"]
                groups.append({"targets": [f"{ip}:{number}"], "labels": {
                    **labels,
                    f"{_PREFIX}pod_container_port_name": port.get("name", ""),
                    f"{_PREFIX}pod_container_port_number": str(number),
                    f"{_PREFIX}pod_container_port_protocol": port.get("protocol", "TCP"),
                }})
    return groups


class PodDiscoveryServer:
    """Serves ``GET /pods[?namespace=NS]`` (http_sd JSON) on loopback from a pod lister.

    ``list_pods(namespace)`` returns pod objects (the supervisor passes the API server's list).
    """

    def __init__(self, list_pods: Callable[[str | None], list[Obj]], host: str = "127.0.0.1", port: int = 0) -> None:
        self.list_pods = list_pods
        self.host, self.port = host, port
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The URL Prometheus' http_sd_configs polls."""
        return f"http://{self.host}:{self.port}/pods"

    def start(self) -> "PodDiscoveryServer":
        server = ThreadingHTTPServer((self.host, self.port), _Handler)
        server.daemon_threads = True
        server.discovery = self  # type: ignore[attr-defined]
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="pod-discovery", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _Handler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path not in ("/pods", "/"):
            self._reply(404, {"error": "try /pods"})
            return
        namespace = (parse_qs(url.query).get("namespace") or [None])[0]
        discovery: PodDiscoveryServer = self.server.discovery  # type: ignore[attr-defined]
        self._reply(200, pod_targets(discovery.list_pods(namespace)))

    def _reply(self, code: int, body: Any) -> None:
        send_json(self, code, body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # polled every second by Prometheus: not worth a log line
