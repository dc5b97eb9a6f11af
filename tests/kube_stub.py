"""Small HTTP stand-ins for the backends the library talks to, for fast tests without a sandbox.

``HTTPStub`` is a ThreadingHTTPServer with a route table, a log of every request, and faults
injected per route (an HTTP status, a delay, a dropped connection, a body that is not JSON), so
the real clients (kubernetes, hvac, requests, prometheus-api-client) can be pointed at it and the
library's error translation tested as it runs. ``KubeStub`` answers the Kubernetes API calls the
runbooks make (deployments, replica sets, pods, services, secrets, leases, events) from an
in-memory store, honours ``dryRun=All`` and records every write. ``KubeSystemStub`` answers only
the identity guard's one call. These stubs are for the library's unit tests; anything that needs
a cluster's behaviour (controllers, pods that run) belongs to the sandbox tests.
"""
from __future__ import annotations

import copy
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

Obj = dict[str, Any]


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    body: Any
    headers: dict[str, str]


@dataclass
class Reply:
    status: int = 200
    body: Any = None  # JSON-serialisable, or bytes sent as they are
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    """What a failing route does instead of answering."""

    status: int | None = None  # answer this status (with ``body``, or the stub's error body)
    body: Any = None
    delay_s: float = 0.0  # wait before answering (or before the fault), e.g. past a client's timeout
    drop: bool = False  # close the connection without answering
    garbage: bool = False  # 200 with a body that is not JSON
    content_type: str = "application/json"  # of the garbage body: "text/html" is a proxy's page
    times: int | None = None  # how many requests fail; None = all of them
    headers: dict[str, str] = field(default_factory=dict)  # sent with ``status`` (e.g. Retry-After)


GARBAGE = b"<html><body>502 Bad Gateway (from a proxy that answers 200)</body></html>"

Handler = Callable[[Request, re.Match[str]], Reply]


class HTTPStub:
    """A local HTTP server with routes, a request log and fault injection; use as a context manager."""

    def __init__(self) -> None:
        self.routes: list[tuple[str, re.Pattern[str], Handler]] = []
        self.faults: list[tuple[str, re.Pattern[str], Fault]] = []
        self.requests: list[Request] = []
        self.hooks: list[Callable[[Request], None]] = []
        self._stop = threading.Event()
        self._lock = threading.Lock()
        stub = self

        class RequestHandler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _handle(self) -> None:
                stub._serve(self)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _handle  # noqa: N815 (http.server's names)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), RequestHandler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True)

    # -- configuration ---------------------------------------------------------------------

    def route(self, method: str, pattern: str, handler: Handler) -> None:
        self.routes.append((method, re.compile(pattern), handler))

    def fail(self, pattern: str = ".*", method: str = "*", **fault: Any) -> Fault:
        """Make matching requests fail (``re.search`` on the path); the newest fault wins."""
        made = Fault(**fault)
        with self._lock:
            self.faults.insert(0, (method, re.compile(pattern), made))
        return made

    def heal(self) -> None:
        with self._lock:
            self.faults.clear()

    def error_body(self, status: int, message: str) -> Any:
        return {"error": message, "code": status}

    # -- serving ---------------------------------------------------------------------------

    def _fault_for(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for wanted, pattern, fault in self.faults:
                if wanted in ("*", method) and pattern.search(path) and (fault.times is None or fault.times > 0):
                    if fault.times is not None:
                        fault.times -= 1
                    return fault
        return None

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        parts = urlsplit(h.path)
        length = int(h.headers.get("Content-Length") or 0)
        raw = h.rfile.read(length) if length else b""
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode(errors="replace")
        request = Request(h.command, parts.path, {k: v[-1] for k, v in parse_qs(parts.query).items()}, body,
                          {k.lower(): v for k, v in h.headers.items()})
        with self._lock:
            self.requests.append(request)
        fault = self._fault_for(request.method, request.path)
        if fault is not None:
            if fault.delay_s:
                self._stop.wait(fault.delay_s)
            if fault.drop or self._stop.is_set():
                h.close_connection = True
                return
            if fault.garbage:
                return self._send(h, Reply(200, GARBAGE, {"Content-Type": fault.content_type}))
            if fault.status is not None:
                body = fault.body if fault.body is not None else self.error_body(fault.status, "injected fault")
                return self._send(h, Reply(fault.status, body, dict(fault.headers)))
        for hook in list(self.hooks):
            hook(request)
        for method, pattern, handler in self.routes:
            match = pattern.fullmatch(request.path)
            if match and method in ("*", request.method):
                try:
                    reply = handler(request, match)
                except Exception as e:  # a bug in a stub route must show, not hang the client
                    reply = Reply(599, self.error_body(599, f"stub error: {type(e).__name__}: {e}"))
                return self._send(h, reply)
        self._send(h, Reply(404, self.error_body(404, f"no route for {request.method} {request.path}")))

    @staticmethod
    def _send(h: BaseHTTPRequestHandler, reply: Reply) -> None:
        data = reply.body if isinstance(reply.body, bytes) else json.dumps(reply.body).encode()
        h.send_response(reply.status)
        headers = {"Content-Type": "application/json", **reply.headers}
        for name, value in headers.items():
            h.send_header(name, value)
        h.send_header("Content-Length", str(len(data)))
        h.end_headers()
        h.wfile.write(data)

    # -- lifetime --------------------------------------------------------------------------

    def __enter__(self) -> "HTTPStub":
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # delayed answers give up at once
        self.server.shutdown()
        self.server.server_close()


# -- Kubernetes ------------------------------------------------------------------------------

_KINDS = {
    "deployments": ("Deployment", "apps/v1"), "replicasets": ("ReplicaSet", "apps/v1"),
    "pods": ("Pod", "v1"), "services": ("Service", "v1"), "secrets": ("Secret", "v1"),
    "events": ("Event", "v1"), "leases": ("Lease", "coordination.k8s.io/v1"),
}
_RESOURCE = r"/(?:api/v1|apis/[a-z0-9.]+/v1)/namespaces/(?P<ns>[^/]+)/(?P<plural>[a-z]+)(?:/(?P<name>[^/]+))?(?:/(?P<sub>log|scale))?"
_REASONS = {400: "BadRequest", 403: "Forbidden", 404: "NotFound", 409: "Conflict", 422: "Invalid",
            500: "InternalError", 503: "ServiceUnavailable"}


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _merge(live: Any, patch: Any, *, strategic: bool) -> Any:
    """A merge patch; ``strategic`` merges lists of named objects by name (containers), as kubectl's do."""
    if isinstance(live, dict) and isinstance(patch, dict):
        merged = dict(live)
        for key, value in patch.items():
            if value is None:
                merged.pop(key, None)
            else:
                merged[key] = _merge(live.get(key), value, strategic=strategic)
        return merged
    if (strategic and isinstance(live, list) and isinstance(patch, list)
            and all(isinstance(x, dict) and "name" in x for x in live + patch)):
        merged_list = [dict(x) for x in live]
        for item in patch:
            found = next((i for i, x in enumerate(merged_list) if x["name"] == item["name"]), None)
            if found is None:
                merged_list.append(item)
            else:
                merged_list[found] = _merge(merged_list[found], item, strategic=True)
        return merged_list
    return copy.deepcopy(patch)


def _json_patch(obj: Obj, ops: list[Obj]) -> Obj:
    obj = copy.deepcopy(obj)
    for op in ops:
        keys = [k.replace("~1", "/").replace("~0", "~") for k in op["path"].lstrip("/").split("/")]
        parent = obj
        for key in keys[:-1]:
            parent = parent.setdefault(key, {})
        if op["op"] in ("replace", "add"):
            parent[keys[-1]] = copy.deepcopy(op["value"])
        elif op["op"] == "remove":
            parent.pop(keys[-1], None)
        else:
            raise ValueError(f"unsupported JSON patch op {op['op']}")
    return obj


def selects(selector: str | None, labels: dict[str, str] | None) -> bool:
    """Equality-based label selectors (``a=b,c=d``), as the runbooks use them."""
    if not selector:
        return True
    labels = labels or {}
    for term in selector.split(","):
        key, _, value = term.partition("=")
        if labels.get(key.strip()) != value.strip():
            return False
    return True


class KubeStub(HTTPStub):
    """The Kubernetes API calls the runbooks make, answered from an in-memory store.

    ``objects[(plural, namespace, name)]`` holds each object in the API's JSON shape. Writes bump
    ``resourceVersion``; ``dryRun=All`` writes are checked and answered but not stored. ``writes``
    lists every write request (dry runs included), for tests that assert what was (not) changed.
    """

    def __init__(self, namespace: str = "veza", kube_system_uid: str = "uid-stub") -> None:
        super().__init__()
        self.namespace = namespace
        self.kube_system_uid = kube_system_uid
        self.objects: dict[tuple[str, str, str], Obj] = {}
        self.logs: dict[str, str] = {}
        self._version = 100
        self.route("GET", r"/api/v1/namespaces/(?P<name>[^/]+)", self._namespace)
        self.route("*", _RESOURCE, self._resource)

    # -- the store -------------------------------------------------------------------------

    def _next_version(self) -> str:
        self._version += 1
        return str(self._version)

    def add(self, plural: str, obj: Obj, namespace: str | None = None) -> Obj:
        obj = copy.deepcopy(obj)
        kind, api_version = _KINDS[plural]
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", api_version)
        meta = obj.setdefault("metadata", {})
        meta.setdefault("namespace", namespace or self.namespace)
        meta.setdefault("uid", str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", _now())
        meta.setdefault("generation", 1)
        meta["resourceVersion"] = self._next_version()
        with self._lock:
            self.objects[(plural, meta["namespace"], meta["name"])] = obj
        return obj

    def get(self, plural: str, name: str, namespace: str | None = None) -> Obj | None:
        return self.objects.get((plural, namespace or self.namespace, name))

    def update(self, plural: str, name: str, change: Callable[[Obj], None]) -> Obj:
        """Change a stored object in place (what a controller would do), bumping its resourceVersion."""
        with self._lock:
            obj = self.objects[(plural, self.namespace, name)]
            change(obj)
            obj["metadata"]["resourceVersion"] = self._next_version()
            return obj

    @property
    def writes(self) -> list[Request]:
        return [r for r in self.requests if r.method != "GET"]

    def error_body(self, status: int, message: str) -> Any:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
                "reason": _REASONS.get(status, "InternalError"), "code": status}

    def _error(self, status: int, message: str) -> Reply:
        return Reply(status, self.error_body(status, message))

    # -- routes ----------------------------------------------------------------------------

    def _namespace(self, request: Request, match: re.Match[str]) -> Reply:
        name = match["name"]
        uid = self.kube_system_uid if name == "kube-system" else f"uid-{name}"
        return Reply(200, {"kind": "Namespace", "apiVersion": "v1", "metadata": {"name": name, "uid": uid}})

    def _resource(self, request: Request, match: re.Match[str]) -> Reply:
        ns, plural, name, sub = match["ns"], match["plural"], match["name"], match["sub"]
        if plural not in _KINDS:
            return self._error(404, f"the server could not find the requested resource ({plural})")
        key = (plural, ns, name or "")
        live = self.objects.get(key)
        dry = request.query.get("dryRun") == "All"
        if sub == "log":
            if live is None:
                return self._error(404, f'pods "{name}" not found')
            return Reply(200, self.logs.get(name or "", "").encode(), {"Content-Type": "text/plain"})
        if sub == "scale":
            return self._scale(request, plural, key, live, dry)
        if request.method == "GET" and name is None:
            kind, api_version = _KINDS[plural]
            items = [copy.deepcopy(o) for (p, n, _), o in sorted(self.objects.items())
                     if p == plural and n == ns and selects(request.query.get("labelSelector"),
                                                            o["metadata"].get("labels"))]
            return Reply(200, {"kind": f"{kind}List", "apiVersion": api_version,
                               "metadata": {"resourceVersion": str(self._version)}, "items": items})
        if request.method == "POST" and name is None:
            body = request.body or {}
            new_name = (body.get("metadata") or {}).get("name", "")
            if (plural, ns, new_name) in self.objects:
                return self._error(409, f'{plural} "{new_name}" already exists')
            if dry:
                return Reply(201, body)
            return Reply(201, self.add(plural, body, ns))
        if live is None:
            return self._error(404, f'{plural} "{name}" not found')
        if request.method == "GET":
            return Reply(200, copy.deepcopy(live))
        if request.method == "DELETE":
            wanted = ((request.body or {}).get("preconditions") or {}).get("resourceVersion")
            if wanted and wanted != live["metadata"]["resourceVersion"]:
                return self._error(409, f"precondition failed: resourceVersion {wanted} is not the live one")
            if not dry:
                with self._lock:
                    del self.objects[key]
            return Reply(200, {"kind": "Status", "apiVersion": "v1", "status": "Success", "metadata": {}})
        if request.method == "PUT":
            body = request.body or {}
            if (body.get("metadata") or {}).get("resourceVersion") != live["metadata"]["resourceVersion"]:
                return self._error(409, f'Operation cannot be fulfilled on {plural} "{name}": the object has been modified')
            return Reply(200, body if dry else self._store(key, live, body))
        if request.method == "PATCH":
            kind = request.headers.get("content-type", "")
            if isinstance(request.body, list):
                after = _json_patch(live, request.body)
            else:
                after = _merge(live, request.body or {}, strategic="strategic" in kind)
            if after.get("spec") != live.get("spec"):
                after["metadata"]["generation"] = int(live["metadata"].get("generation") or 1) + 1
            return Reply(200, after if dry else self._store(key, live, after))
        return self._error(405, f"{request.method} not allowed")

    def _scale(self, request: Request, plural: str, key: tuple[str, str, str], live: Obj | None, dry: bool) -> Reply:
        """The scale subresource (autoscaling/v1 Scale): what ``kubectl scale`` and autoscalers use."""
        if plural != "deployments" or request.method not in ("GET", "PATCH"):
            return self._error(405, f"{request.method} {plural}/scale not allowed")
        if live is None:
            return self._error(404, f'deployments "{key[2]}" not found')
        if request.method == "PATCH":
            replicas = ((request.body or {}).get("spec") or {}).get("replicas")
            if not isinstance(replicas, int) or replicas < 0:
                return self._error(422, f"spec.replicas: Invalid value: {replicas!r}")
            after = _merge(live, {"spec": {"replicas": replicas}}, strategic=False)
            live = after if dry else self._store(key, live, after)
        meta = live["metadata"]
        return Reply(200, {"kind": "Scale", "apiVersion": "autoscaling/v1",
                           "metadata": {"name": meta["name"], "namespace": meta["namespace"],
                                        "resourceVersion": meta["resourceVersion"]},
                           "spec": {"replicas": live["spec"]["replicas"]},
                           "status": {"replicas": (live.get("status") or {}).get("replicas", 0),
                                      "selector": ",".join(f"{k}={v}" for k, v in
                                                           live["spec"]["selector"]["matchLabels"].items())}})

    def _store(self, key: tuple[str, str, str], live: Obj, after: Obj) -> Obj:
        after = copy.deepcopy(after)
        after.setdefault("metadata", {})
        for kept in ("uid", "creationTimestamp", "namespace", "name"):
            after["metadata"].setdefault(kept, live["metadata"].get(kept))
        after["metadata"]["resourceVersion"] = self._next_version()
        with self._lock:
            self.objects[key] = after
        return copy.deepcopy(after)

    # -- kubeconfig ------------------------------------------------------------------------

    def write_kubeconfig(self, path: Path, context: str = "stub") -> Path:
        return write_kubeconfig(self.url, path, context)


def write_kubeconfig(server: str, path: Path, context: str = "stub") -> Path:
    path.write_text(json.dumps({
        "apiVersion": "v1", "kind": "Config", "current-context": context,
        "clusters": [{"name": context, "cluster": {"server": server}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "users": [{"name": context, "user": {"token": "stub"}}],
    }))
    return path


# -- objects in the API's shape, valid for the official client's models -----------------------

def deployment(name: str, image: str, *, replicas: int = 2, labels: dict[str, str] | None = None,
               revision: int | None = 1, ready: int | None = None, updated: int | None = None,
               progressing_reason: str | None = None, paused: bool = False, container: str | None = None) -> Obj:
    """A Deployment whose status says ``ready`` of ``replicas`` (default: all) are ready and updated."""
    app = (labels or {}).get("app", name)
    template_labels = {"app": app, **(labels or {})}
    ready = replicas if ready is None else ready
    updated = replicas if updated is None else updated
    status: Obj = {"observedGeneration": 1, "replicas": max(replicas, updated), "updatedReplicas": updated,
                   "readyReplicas": ready, "availableReplicas": ready, "unavailableReplicas": max(replicas - ready, 0)}
    if progressing_reason:
        status["conditions"] = [{"type": "Progressing", "status": "False", "reason": progressing_reason}]
    annotations = {"deployment.kubernetes.io/revision": str(revision)} if revision is not None else {}
    return {
        "metadata": {"name": name, "labels": {"app": app}, "annotations": annotations, "generation": 1},
        "spec": {"replicas": replicas, "paused": paused, "selector": {"matchLabels": {"app": app}},
                 "template": {"metadata": {"labels": template_labels},
                              "spec": {"containers": [{"name": container or app, "image": image}]}}},
        "status": status,
    }


def replica_set(owner: Obj, number: int, image: str, *, replicas: int = 0, version_label: str | None = None,
                annotations: dict[str, str] | None = None) -> Obj:
    """Revision ``number`` of ``owner`` (a stored Deployment: its uid makes the owner reference)."""
    meta = owner["metadata"]
    app = owner["spec"]["selector"]["matchLabels"]["app"]
    template = copy.deepcopy(owner["spec"]["template"])
    template["spec"]["containers"][0]["image"] = image
    labels = template["metadata"].setdefault("labels", {})
    labels["pod-template-hash"] = f"h{number}"
    if version_label:
        labels["version"] = version_label
    return {
        "metadata": {"name": f"{meta['name']}-h{number}", "labels": {"app": app, "pod-template-hash": f"h{number}"},
                     "annotations": {"deployment.kubernetes.io/revision": str(number), **(annotations or {})},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "Deployment", "name": meta["name"],
                                          "uid": meta["uid"], "controller": True}]},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": app, "pod-template-hash": f"h{number}"}},
                 "template": template},
    }


def pod(name: str, image: str, *, labels: dict[str, str], ip: str | None = "127.0.0.1", ready: bool = True,
        waiting_reason: str | None = None, restarts: int = 0) -> Obj:
    state: Obj = {"waiting": {"reason": waiting_reason}} if waiting_reason else {"running": {"startedAt": _now()}}
    return {
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": [{"name": labels.get("app", "app"), "image": image}]},
        "status": {"phase": "Running", "podIP": ip,
                   "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
                   "containerStatuses": [{"name": labels.get("app", "app"), "image": image, "imageID": "",
                                          "ready": ready, "restartCount": restarts, "state": state}]},
    }


def service(name: str, port: int, *, selector: dict[str, str] | None = None, cluster_ip: str = "127.0.0.1") -> Obj:
    return {"metadata": {"name": name},
            "spec": {"clusterIP": cluster_ip, "selector": selector or {"app": name},
                     "ports": [{"port": port, "targetPort": port}]}}


def event(name: str, reason: str, *, involved: str, type_: str = "Warning", message: str = "") -> Obj:
    return {"metadata": {"name": name}, "involvedObject": {"kind": "Pod", "name": involved},
            "reason": reason, "type": type_, "message": message, "count": 1, "lastTimestamp": _now()}


class KubeSystemStub(KubeStub):
    """Only the identity guard's call: GET /api/v1/namespaces/kube-system with a chosen UID."""

    def __init__(self, uid: str) -> None:
        super().__init__(kube_system_uid=uid)

    @property
    def uid(self) -> str:
        return self.kube_system_uid

    def paths(self) -> list[str]:
        return [r.path for r in self.requests]


def wait_until(predicate: Callable[[], bool], timeout_s: float = 5) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)
