"""One simulated Veza service process: the thing that runs inside every sandbox pod.

It impersonates the service and version named by its image (resolved through the image
catalog) and answers like the real one would: ``/health`` (liveness), ``/ready`` (readiness,
after the image's start delay), ``/version``, ``/metrics`` (Prometheus text) and the service's
API routes, with the image's error rate and latency. Faults injected through the fault file
change that at run time. SIGTERM is graceful: stop accepting, finish in-flight requests, close
idle keep-alive connections, exit 0.

Run it as ``python -m runbooks_sandbox.workload --image IMAGE --host IP --port PORT``.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

from .cache import CACHED_ROUTES, CacheUnavailable, SessionCache
from .faults import Fault, FaultWatcher
from .routes import api_body
from .schema import SCHEMA_SERVICES, SchemaCheck

if TYPE_CHECKING:
    from .catalog import ResolvedImage

__all__ = ["Workload", "WorkloadServer", "main"]

# Probe and scrape endpoints are not traffic: counting them would put probe 503s of a starting
# pod into the golden signals, which the real services' middleware also avoids.
_UNCOUNTED = frozenset({"/health", "/ready", "/version", "/metrics"})
# The classic text format every Prometheus 2.x reads (prometheus_client's newer default names 1.0.0).
_METRICS_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _Log:
    """Pod log lines on stdout, one write per line so threads never interleave."""

    def __init__(self, access: bool) -> None:
        self.access = access
        self._lock = threading.Lock()

    def line(self, text: str) -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        with self._lock:
            sys.stdout.write(f"{stamp} {text}\n")

    def flush(self) -> None:
        with self._lock:
            sys.stdout.flush()


@dataclass(frozen=True)
class GivenBehaviour:
    """An image's behaviour as the pod runtime resolved it (the catalog's ImageBehaviour fields)."""

    error_rate: float = 0.0
    extra_latency_ms: float = 0.0
    ready: bool = True
    crash_on_start: bool = False
    start_delay_s: float = 0.3
    exit_code: int = 1
    schema: int | None = None  # veza_db migrations this version needs (the backend checks at start)


@dataclass(frozen=True)
class GivenImage:
    """The image the runtime resolved, passed on the command line: no catalog to load in the pod.

    Loading the catalog means pydantic and YAML, ~11 MB in every pod process; the runtime has
    already resolved the image (and refused unknown ones) before starting the process.
    """

    image: str
    service: str
    version: str
    behaviour: GivenBehaviour = field(default_factory=GivenBehaviour)

    @classmethod
    def parse(cls, image: str, behaviour: dict[str, Any]) -> "GivenImage":
        path, _, tag = image.rpartition(":")
        if "/" in tag or not path:
            path, tag = image, "latest"
        known = {k: v for k, v in behaviour.items() if k in GivenBehaviour.__dataclass_fields__}
        return cls(image, path.rpartition("/")[2], tag, GivenBehaviour(**known))


class Workload:
    """Identity, behaviour, faults and metrics of one service process (no HTTP here)."""

    def __init__(self, image: "ResolvedImage | GivenImage", pod: str, log: _Log) -> None:
        self.image = image
        self.pod = pod
        self.log = log
        self.started_mono = time.monotonic()
        self.started_wall = time.time()
        self.fault = Fault()
        self.draining = False
        self._lock = threading.Lock()
        # Failures are spread evenly (one every 1/error_rate requests, from a random phase), so
        # 8 % means 80 of 1 000 requests, not 80 +- 9: canary drills and tests are repeatable.
        self._error_debt = random.random()
        self.registry = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "http_requests_total", "HTTP requests served", ["code", "method", "route"], registry=self.registry
        )
        self.duration = Histogram(
            "http_request_duration_seconds", "HTTP request latency", ["method", "route"], registry=self.registry
        )
        Gauge("veza_build_info", "The running image", ["service", "version"], registry=self.registry).labels(
            image.service, image.version
        ).set(1)
        # Sessions and cached answers in Redis, for the services that use it (REDIS_URL from veza-secrets).
        redis_url = os.environ.get("REDIS_URL", "")
        self.cache = (SessionCache(redis_url, self.registry)
                      if redis_url.startswith("redis://") and image.service in CACHED_ROUTES else None)
        # The schema it needs in veza_db (DATABASE_URL from veza-secrets), for versions that say.
        database_url = os.environ.get("DATABASE_URL", "")
        # GivenBehaviour.schema, or the catalog's ImageBehaviour.schema_ (whose .schema is pydantic's method).
        needs = next((v for v in (getattr(image.behaviour, name, None) for name in ("schema_", "schema"))
                      if isinstance(v, int)), None)
        self.schema = (SchemaCheck(database_url, needs, image.version, log.line)
                       if needs and database_url and image.service in SCHEMA_SERVICES else None)

    # -- behaviour -------------------------------------------------------------------------
    @property
    def error_rate(self) -> float:
        return self.image.behaviour.error_rate if self.fault.error_rate is None else self.fault.error_rate

    @property
    def extra_latency_s(self) -> float:
        ms = self.image.behaviour.extra_latency_ms if self.fault.extra_latency_ms is None else self.fault.extra_latency_ms
        return ms / 1000.0

    def is_live(self) -> bool:
        return not self.fault.health_fail

    def is_ready(self) -> bool:
        behaviour = self.image.behaviour
        return (
            behaviour.ready
            and (self.cache is None or self.cache.connected)  # the client is set up (not: Redis is up)
            and (self.schema is None or self.schema.ok)  # veza_db has the schema this version reads
            and not self.fault.ready_fail
            and not self.draining
            and time.monotonic() - self.started_mono >= behaviour.start_delay_s
        )

    def next_request_fails(self) -> bool:
        """Whether this API request is one of the error_rate share answered 500."""
        rate = self.error_rate
        if rate <= 0:
            return False
        with self._lock:
            self._error_debt += rate
            if self._error_debt >= 1.0:
                self._error_debt -= 1.0
                return True
        return False

    def observe(self, method: str, route: str, code: int, seconds: float) -> None:
        self.requests.labels(str(code), method, route).inc()
        self.duration.labels(method, route).observe(seconds)

    # -- faults ----------------------------------------------------------------------------
    def apply_fault(self, fault: Fault) -> None:
        """Called by the fault watcher when the fault file changes."""
        self.fault = fault
        self.log.line(f"faults now {json.dumps({k: v for k, v in vars(fault).items() if v})}")
        if fault.crash_on_start or (fault.crash_now is not None and fault.crash_now >= self.started_wall):
            self.log.line("panic: injected crash")
            self.log.flush()
            os._exit(1)  # a crash, not a shutdown: no draining, no cleanup


class WorkloadHandler(BaseHTTPRequestHandler):
    """HTTP/1.1 with keep-alive; every response names the service, version and pod."""

    protocol_version = "HTTP/1.1"
    # Headers and body go out in two writes; with Nagle's algorithm the body would wait for
    # the client's delayed ACK (40 ms on Linux) on every kept-alive request.
    disable_nagle_algorithm = True
    server: "WorkloadServer"

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def parse_request(self) -> bool:
        # Called once a request line has arrived: from here on the connection is in flight.
        self.server.mark(self.connection, busy=True)
        return super().parse_request()

    def handle_one_request(self) -> None:
        try:
            super().handle_one_request()
        finally:
            if self.server.mark(self.connection, busy=False):
                self.close_connection = True

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # we write our own, shorter access line

    def log_message(self, format: str, *args: object) -> None:
        self.server.workload.log.line("http: " + (format % args))

    def do_GET(self) -> None:
        self._serve(head_only=False)

    def do_HEAD(self) -> None:
        self._serve(head_only=True)

    def _method_not_allowed(self) -> None:
        self._reply(405, "application/json", b'{"error":"method not allowed"}\n', False, {"Allow": "GET, HEAD"})

    do_POST = do_PUT = do_PATCH = do_DELETE = _method_not_allowed

    def _serve(self, head_only: bool) -> None:
        workload = self.server.workload
        path = urlsplit(self.path).path
        if path in _UNCOUNTED:
            self._serve_operational(path, head_only)
            return
        started = time.perf_counter()
        if delay := workload.extra_latency_s:
            time.sleep(delay)
        found = api_body(workload.image.service, path)
        if found is None:
            route, code, ctype, body = "unmatched", 404, "application/json", b'{"error":"not found"}\n'
        elif workload.next_request_fails():
            route, code, ctype, body = path, 500, "application/json", b'{"error":"internal server error"}\n'
        else:
            route, code, (ctype, body) = path, 200, found
            kind = CACHED_ROUTES.get(workload.image.service, {}).get(path)
            if kind and workload.cache is not None:
                try:
                    body = workload.cache.serve(kind, path, body)
                except CacheUnavailable as e:
                    code, ctype, body = 503, "application/json", b'{"error":"session store unavailable"}\n'
                    workload.log.line(f"error: {e}")
        self._reply(code, ctype, body, head_only)
        elapsed = time.perf_counter() - started
        workload.observe(self.command, route, code, elapsed)
        if workload.log.access or code >= 500:
            workload.log.line(f"{self.command} {path} {code} {elapsed * 1000:.1f}ms")

    def _serve_operational(self, path: str, head_only: bool) -> None:
        workload = self.server.workload
        if path == "/health":
            ok = workload.is_live()
            self._reply(200 if ok else 500, "application/json", b'{"status":"ok"}\n' if ok else b'{"status":"failing"}\n', head_only)
        elif path == "/ready":
            ok = workload.is_ready()
            self._reply(200 if ok else 503, "application/json", b'{"ready":true}\n' if ok else b'{"ready":false}\n', head_only)
        elif path == "/version":
            image = workload.image
            body = json.dumps({"service": image.service, "version": image.version, "pod": workload.pod}).encode()
            self._reply(200, "application/json", body + b"\n", head_only)
        else:
            self._reply(200, _METRICS_CONTENT_TYPE, generate_latest(workload.registry), head_only)

    def _reply(self, code: int, ctype: str, body: bytes, head_only: bool, extra: dict[str, str] | None = None) -> None:
        workload = self.server.workload
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("X-Veza-Service", workload.image.service)
        self.send_header("X-Veza-Version", workload.image.version)
        self.send_header("X-Veza-Pod", workload.pod)
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        if workload.draining:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        if not head_only:
            self.wfile.write(body)


class WorkloadServer(ThreadingHTTPServer):
    """A threading HTTP server that knows which connections are idle, so it can drain."""

    daemon_threads = True  # draining waits for connections itself (see drain)
    block_on_close = False
    request_queue_size = 256

    def __init__(self, address: tuple[str, int], workload: Workload) -> None:
        self.workload = workload
        self._conn_lock = threading.Lock()
        self._busy: dict[socket.socket, bool] = {}
        super().__init__(address, WorkloadHandler)

    def track(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._busy[conn] = False

    def untrack(self, conn: socket.socket) -> None:
        with self._conn_lock:
            self._busy.pop(conn, None)

    def mark(self, conn: socket.socket, busy: bool) -> bool:
        """Record a connection's state; True when the server is draining."""
        with self._conn_lock:
            if conn in self._busy:
                self._busy[conn] = busy
            return self.workload.draining

    def in_flight(self) -> int:
        with self._conn_lock:
            return sum(self._busy.values())

    def drain(self, timeout_s: float) -> bool:
        """Stop accepting, let in-flight requests finish, close idle connections.

        Returns False if connections were still open at the deadline.
        """
        self.workload.draining = True
        self.shutdown()  # the accept loop; returns within its poll interval
        self.socket.close()  # new connections are now refused
        closed: set[socket.socket] = set()
        deadline = time.monotonic() + timeout_s
        while True:
            with self._conn_lock:
                if not self._busy:
                    return True
                # Re-checked every pass: a connection accepted just before the listener closed
                # registers late. SHUT_RD wakes a handler blocked reading the next request; the
                # write side stays open in case a request line slipped in just before.
                for conn in [c for c, busy in self._busy.items() if not busy and c not in closed]:
                    closed.add(conn)
                    try:
                        conn.shutdown(socket.SHUT_RD)
                    except OSError:
                        pass
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.01)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m runbooks_sandbox.workload", description=__doc__.splitlines()[0])
    parser.add_argument("--image", required=True, help="e.g. registry.veza.app/veza-backend-api:v1.4.0")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (the pod IP)")
    parser.add_argument("--port", type=int, default=0, help="container port; 0 picks a free one")
    parser.add_argument("--fault-file", help="JSON fault file polled for injected faults")
    parser.add_argument("--catalog", help="sandbox profile holding `sandbox: images:` (default parameters/sandbox.yaml)")
    parser.add_argument("--behaviour", help="the image's behaviour as JSON, already resolved by the pod runtime "
                                            "(then no catalog is read)")
    parser.add_argument("--no-access-log", action="store_true", help="log start-up, faults and 5xx only")
    parser.add_argument("--drain-timeout", type=float, default=30.0, help="seconds to finish requests after SIGTERM")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Run the workload until SIGTERM/SIGINT; returns the process exit status."""
    args = _parse_args(argv)
    log = _Log(access=not args.no_access_log)
    disable_created_metrics()  # *_created series are noise for the golden-signal queries
    image: ResolvedImage | GivenImage
    try:
        image = GivenImage.parse(args.image, json.loads(args.behaviour)) if args.behaviour else _resolve(args)
    except (LookupError, ValueError, TypeError) as e:  # CatalogError and ImagePullError among them
        print(f"error: {e}", file=sys.stderr)
        return 2
    pod = os.environ.get("POD_NAME") or socket.gethostname()
    workload = Workload(image, pod, log)
    watcher = FaultWatcher(args.fault_file, workload.apply_fault, log.line)
    watcher.poll()  # a crash loop injected before this start must crash it now
    if image.behaviour.crash_on_start:
        print(f"panic: {image.service} {image.version} failed to start", file=sys.stderr, flush=True)
        return image.behaviour.exit_code
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    try:
        server = WorkloadServer((args.host, args.port), workload)
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e.strerror}", file=sys.stderr)
        return 1
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    if workload.cache is not None:
        threading.Thread(target=workload.cache.connect, name="redis-connect", daemon=True).start()
    if workload.schema is not None:
        workload.schema.start()
    watcher.start()
    host, port = server.server_address[:2]
    log.line(f"{image.service} {image.version} pod={pod} listening on http://{host}:{port}")
    log.flush()
    flusher = threading.Thread(target=_flush_every, args=(log, stop), daemon=True)
    flusher.start()
    stop.wait()
    log.line(f"signal received: draining {server.in_flight()} in-flight request(s)")
    # Now, not after the drain: the flusher has stopped, and a drain that outlasts the grace period
    # ends in SIGKILL, which would take the shutdown's own lines with it (`kubectl logs -f` missed it).
    log.flush()
    drained = server.drain(args.drain_timeout)
    watcher.stop()
    log.line("stopped" if drained else "stopped with requests still in flight")
    log.flush()
    return 0


def _resolve(args: argparse.Namespace) -> "ResolvedImage":
    from .catalog import load_image_catalog

    return load_image_catalog(args.catalog).resolve(args.image)


def _flush_every(log: _Log, stop: threading.Event, interval_s: float = 0.2) -> None:
    # Flushing per line costs a syscall per request; a few times a second keeps `kubectl logs`
    # current without that.
    while not stop.wait(interval_s):
        log.flush()
