"""The sandbox's long-lived process: Service proxy, pod discovery, load, control endpoint, webhook sink.

``runbook sandbox up`` returns while the sandbox keeps running, so everything that lives in a
Python process runs here, in one detached process (its own session, so a closed terminal does
not end it): ``python -m runbooks_sandbox.stack serve --state-dir DIR --kubeconfig FILE``. The
Kubernetes API server, its controllers and the pods are not ours: the real apiserver holds the
objects, the node agent (:mod:`.node`, its own process) runs the pods. What runs here, reading the
real API through an admin :class:`~.kube.ClusterStore`:

- the Service proxy (:mod:`.runtime.proxy`, kube-proxy's role with the Istio weights), each
  Service's ClusterIP put on the namespace's ``lo`` before the proxy binds it (:mod:`.clusterview`);
- the http_sd endpoint Prometheus reads its pod list from (:mod:`.discovery_sd`);
- the load generator, its report, the control endpoint (pod faults through the fault files the
  node agent's workloads poll, load rates, the entry point, the Redis exporter) and the webhook sink.

It runs inside the cluster's network namespace (``ip netns exec``: pod and Service addresses
live there), every endpoint on :attr:`SandboxCluster.services_address`; ``runbook sandbox up``
exposes them on the host's 127.0.0.1 through the forwarder. The API server's faults are the fault
proxy's (:mod:`.controlplane.faultproxy`), set from the host.

It tells its starter how it went through ``<state>/supervisor.json`` (written atomically):
``{"pid", "api_url", "kubeconfig", "sd_url", "traffic_url", "cluster_uid", ...}`` once ready,
or ``{"pid", "error"}`` when it could not start. SIGTERM stops it in order: load first (so a
stopping pod is not counted as a failed request), then the proxy and the rest.
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from . import kube
from .clusterview import PodFaults, StoreView
from .discovery_sd import PodDiscoveryServer
from .jsonhttp import read_json, refused, send_json
from .manifests import NAMESPACE
from .notify_sink import WebhookSink
from .runtime.load import LoadGenerator
from .runtime.proxy import ServiceProxy
from .tokens import CONTROL_TOKEN, NOTIFY_TOKEN, read_token

__all__ = ["Supervisor", "serve", "write_json_atomically", "STATUS_FILE"]

log = logging.getLogger("runbooks_sandbox.supervisor")

STATUS_FILE = "supervisor.json"
# The load generator runs as long as the sandbox does; a month bounds a forgotten one.
_LOAD_MAX_DURATION_S = 30 * 24 * 3600.0


def write_json_atomically(path: Path, data: dict[str, Any], mode: int = 0o644) -> None:
    """Write JSON through a rename, so a reader never sees half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out, indent=2)
    os.replace(tmp, path)


class Supervisor:
    """Starts and stops the supervisor's parts (module doc), and keeps the load's targets current."""

    def __init__(self, state_dir: Path, kubeconfig: Path, namespace: str = NAMESPACE, load_rate: float = 10.0,
                 serving_users: bool = True) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.kubeconfig = Path(kubeconfig)  # the admin's, inside the namespace
        self.namespace = namespace
        self.load_rate = load_rate
        # The platform's entry point (DNS, in production) sends users here: the load generator's
        # traffic. A DR region starts without it; `runbook sandbox entry-point --on` switches it.
        self.serving_users = serving_users
        self.store: StoreView | None = None
        self.runtime: PodFaults | None = None
        self.proxy: ServiceProxy | None = None
        self.discovery: PodDiscoveryServer | None = None
        self.load: LoadGenerator | None = None
        self.control: _ControlServer | None = None
        self.sink: WebhookSink | None = None
        self.control_token = ""  # read at start from the 0600 file `runbook sandbox up` wrote
        self._stop = threading.Event()
        self._targets: dict[str, str] = {}
        self._targets_lock = threading.Lock()  # the follower thread and the control endpoint both update them

    # -- start ---------------------------------------------------------------------------------
    def start(self) -> dict[str, Any]:
        """Start every part; returns the status written to supervisor.json (no token in it: 0644)."""
        from .cluster import SandboxCluster
        from .controlplane import ADMIN_CONTEXT

        # First: without its tokens the sandbox would serve its endpoints to anyone.
        self.control_token = read_token(self.state_dir, CONTROL_TOKEN)
        notify_token = read_token(self.state_dir, NOTIFY_TOKEN)
        cluster = SandboxCluster(self.state_dir)
        host = cluster.services_address
        store = kube.ClusterStore.from_kubeconfig(self.kubeconfig, context=ADMIN_CONTEXT,
                                                  user_agent="sandbox-supervisor")
        self.store = StoreView(store, cluster.network.add_address)
        self.runtime = PodFaults(self.state_dir, store)
        self.proxy = ServiceProxy()
        self.proxy.start(self.store)
        self.discovery = PodDiscoveryServer(lambda ns: store.list(kube.PODS, ns)[0], host=host).start()
        self.load = LoadGenerator({}, rate_per_s=self.load_rate, max_duration_s=_LOAD_MAX_DURATION_S).start()
        traffic_host, traffic_port = self.load.serve_report(host)
        threading.Thread(target=self._follow_services, name="load-targets", daemon=True).start()
        self.control = _ControlServer(self, host=host).start()
        self.sink = WebhookSink(notify_token, self.control_token, host=host).start()
        kube_system = store.get(kube.NAMESPACES, None, "kube-system")
        return {
            "pid": os.getpid(),
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "api_url": store.credentials.server,
            "kubeconfig": str(self.kubeconfig),
            "cluster_uid": kube_system["metadata"]["uid"],
            "sd_url": self.discovery.url,
            "sd_port": self.discovery.port,
            "traffic_url": f"http://{traffic_host}:{traffic_port}/traffic",
            "traffic_port": traffic_port,
            "control_url": self.control.url,
            "control_port": self.control.port,
            "notify_base_url": self.sink.base_url,
            "notify_port": self.sink.port,
            "services_address": host,
            "runtime": "node agent",
            "proxy": type(self.proxy).__name__,
        }

    # -- load targets --------------------------------------------------------------------------
    def _follow_services(self, interval_s: float = 0.5) -> None:
        """Send load to each Veza Service once its Deployment is available, and keep sending.

        A target is kept when the deployment later loses its pods: the failures of an outage
        are what the load generator is there to count. A Service deleted is forgotten (its
        address may be another's next), and no traffic is sent while the entry point is off.
        """
        while not self._stop.wait(interval_s):
            try:
                self._update_targets()
            except Exception:  # keep following; a transient API error must not end the load
                log.exception("updating load targets failed")

    def _update_targets(self, force: bool = False) -> None:
        with self._targets_lock:
            self._update_targets_locked(force)

    def _update_targets_locked(self, force: bool) -> None:
        assert self.store is not None and self.load is not None
        store, changed = self.store, force
        services = {svc["metadata"]["name"]: svc for svc in store.list(kube.SERVICES, self.namespace)[0]}
        for gone in [name for name in self._targets if name not in services]:  # deleted: its address is no one's
            del self._targets[gone]
            changed = True
        for name, svc in services.items():
            spec = svc.get("spec", {})
            if name in self._targets or not spec.get("clusterIP") or not spec.get("ports"):
                continue
            if not _deployment_available(store, self.namespace, name):
                continue
            self._targets[name] = f"http://{spec['clusterIP']}:{spec['ports'][0]['port']}"
            changed = True
        if changed:
            self.load.set_targets(dict(self._targets) if self.serving_users else {})
            log.info("load targets: %s%s", ", ".join(sorted(self._targets)),
                     "" if self.serving_users else " (entry point off: no traffic sent)")

    def set_entry_point(self, serving: bool) -> dict[str, Any]:
        """Send users here (the load generator's traffic) or stop: the platform's entry point."""
        self.serving_users = serving
        self._update_targets(force=True)
        return {"serving": self.serving_users, "targets": sorted(self._targets) if serving else []}

    # -- stop ----------------------------------------------------------------------------------
    def stop(self) -> None:
        """Stop in order: load, proxy, the API client, discovery."""
        self._stop.set()
        for name, part in (("control", self.control), ("sink", self.sink), ("load", self.load), ("proxy", self.proxy),
                           ("store", self.store), ("discovery", self.discovery)):
            if part is None:
                continue
            try:
                part.stop()
            except Exception:  # stop the rest whatever one part does
                log.exception("stopping %s failed", name)

    def wait(self) -> None:
        self._stop.wait()


class _ControlServer:
    """Loopback endpoint through which ``runbook sandbox`` reaches the pod runtime.

    ``POST /fault`` ``{"namespace", "pod", "faults": {...}, "clear": bool}`` injects or clears
    a pod's faults through ``runtime.fault`` / ``runtime.clear_fault``; ``GET /pids`` lists the
    container processes (``namespace/pod/container`` -> PID); ``POST /load`` ``{"rate", "service"}``
    changes the load generator's rate (of one service, or of all); ``GET /redis/metrics`` is the
    Redis exporter Prometheus scrapes (job ``redis``). Every request shows the control token, every
    body is JSON (:func:`.jsonhttp.refused`: 401, 415).
    """

    def __init__(self, supervisor: Supervisor, host: str = "127.0.0.1") -> None:
        self.supervisor = supervisor
        self.host, self.port = host, 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> "_ControlServer":
        server = ThreadingHTTPServer((self.host, 0), _ControlHandler)
        server.daemon_threads = True
        server.supervisor = self.supervisor  # type: ignore[attr-defined]
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="sandbox-control", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None


class _ControlHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        supervisor = self.server.supervisor  # type: ignore[attr-defined]
        if refused(self, supervisor.control_token, body=False):
            return
        runtime = supervisor.runtime
        if self.path == "/redis/metrics":
            from .servers.redis import redis_metrics

            body = redis_metrics(supervisor.state_dir).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.path != "/pids":
            self._reply(404, {"error": "try GET /pids or POST /fault"})
        else:
            self._reply(200, runtime.pids())

    def do_POST(self) -> None:
        if refused(self, self.server.supervisor.control_token, body=True):  # type: ignore[attr-defined]
            return
        runtime = self.server.supervisor.runtime  # type: ignore[attr-defined]
        if self.path == "/load":
            self._set_load()
            return
        if self.path == "/entry-point":
            try:
                body = self._json_body()
                self._reply(200, self.server.supervisor.set_entry_point(bool(body["serving"])))  # type: ignore[attr-defined]
            except (KeyError, TypeError, ValueError) as e:
                self._reply(400, {"error": f"bad entry-point request: {e}"})
            return
        if self.path != "/fault":
            self._reply(404, {"error": "try POST /fault, /entry-point or /load"})
            return
        try:
            body = self._json_body()
            namespace, pod = body["namespace"], body["pod"]
            doc: dict[str, Any] = {}
            if body.get("clear"):
                doc = runtime.clear_fault(namespace, pod)
            if body.get("faults"):
                doc = runtime.fault(namespace, pod, **body["faults"])
        except kube.ApiError as e:
            self._reply(e.code, {"error": e.message})
        except (KeyError, TypeError, ValueError) as e:
            self._reply(400, {"error": f"bad fault request: {e}"})
        else:
            self._reply(200, doc)

    def _set_load(self) -> None:
        """``POST /load`` ``{"rate": R or null, "service": S or null}``: the load generator's rate."""
        load = self.server.supervisor.load  # type: ignore[attr-defined]
        try:
            body = self._json_body()
            load.set_rate(body.get("rate"), body.get("service"))
        except (TypeError, ValueError) as e:
            self._reply(400, {"error": f"bad load request: {e}"})
        else:
            self._reply(200, load.rates())

    def _json_body(self) -> Any:
        """The request's JSON body ({} when empty); ValueError when it is not JSON or too large."""
        return read_json(self)

    def _reply(self, code: int, body: Any) -> None:
        send_json(self, code, body)

    def log_message(self, format: str, *args: object) -> None:
        log.info("control: %s", format % args)


def _deployment_available(store: StoreView, namespace: str, name: str) -> bool:
    try:
        deployment = store.get(kube.DEPLOYMENTS, namespace, name)
    except kube.ApiError:
        return False
    return int(deployment.get("status", {}).get("availableReplicas") or 0) > 0


def serve(state_dir: Path, supervisor: Supervisor) -> int:
    """Run ``supervisor`` until SIGTERM/SIGINT; report readiness through supervisor.json."""
    state_dir = Path(state_dir).resolve()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    status_path = state_dir / STATUS_FILE
    stopping = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        status = supervisor.start()
    except Exception as e:
        log.exception("the sandbox supervisor could not start")
        write_json_atomically(status_path, {"pid": os.getpid(), "error": f"{type(e).__name__}: {e}"})
        supervisor.stop()
        return 1
    write_json_atomically(status_path, status)
    log.info("ready: API %s, http_sd %s, traffic %s", status["api_url"], status["sd_url"], status["traffic_url"])
    while not stopping.wait(1.0):
        pass
    log.info("stopping")
    started = time.monotonic()
    supervisor.stop()
    log.info("stopped in %.1f s", time.monotonic() - started)
    return 0
