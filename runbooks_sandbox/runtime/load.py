"""Steady background traffic through each Service, with every request accounted for.

The load generator is how the sandbox proves a change caused no downtime: it sends a fixed
rate of requests to each target (a Service's cluster address), records each one (time, status
or connection error, latency, and the version and pod that answered, from the workload's
``X-Veza-Version`` / ``X-Veza-Pod`` headers) and reports, per service and per version::

    {"<service>": {"requests": N, "failed": N,
                   "by_version": {"<version>": {"requests": N, "failed": N, "p50_ms": x, "p99_ms": y,
                                                  "first": ISO time, "last": ISO time}}}}

where failed means non-2xx or a connection error (those have version ``unknown``). Another
process reads the same report over loopback: ``GET /traffic?since=<ISO time>`` on the address
:meth:`LoadGenerator.serve_report` returns, or :func:`fetch_report`.

Traffic is open-loop (requests are scheduled at the rate whatever the latency) and bounded: it
stops at :meth:`LoadGenerator.stop` or after ``max_duration_s``.
"""
from __future__ import annotations

import http.client
import json
import math
import queue
import threading
import time
import urllib.request
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

from ..jsonhttp import send_json
from ..workload.routes import routes_for

__all__ = ["LoadGenerator", "RequestRecord", "fetch_report", "parse_since"]

UNKNOWN_VERSION = "unknown"
_USER_AGENT = "veza-sandbox-load/1"


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request as the client saw it."""

    at: float  # Unix time the request was sent
    service: str
    route: str
    status: int | None  # None: connection error or timeout (see error)
    latency_ms: float
    version: str | None
    pod: str | None
    error: str | None = None

    @property
    def failed(self) -> bool:
        return self.status is None or not 200 <= self.status < 300


@dataclass(frozen=True, slots=True)
class _Job:
    service: str
    due: float  # monotonic time the request was scheduled for


class _Target:
    """Where a service's requests go: host, port, path prefix and its routes in turn."""

    def __init__(self, service: str, base_url: str, routes: list[str]) -> None:
        parts = urlsplit(base_url if "://" in base_url else f"http://{base_url}")
        if parts.scheme != "http" or not parts.hostname:
            raise ValueError(f"target for {service} must be an http:// URL, not {base_url!r}")
        self.key = (parts.hostname, parts.port or 80)
        self.prefix = parts.path.rstrip("/")
        self.routes = routes or ["/"]
        self._next = 0

    def next_route(self) -> str:
        # Not locked: an occasional repeated route under contention does not matter.
        route = self.routes[self._next % len(self.routes)]
        self._next += 1
        return route


class LoadGenerator:
    """Steady traffic to each target service, recorded request by request.

    ``targets`` maps a service name to its base URL (``http://10.0.0.1:8080``);
    ``rate_per_s`` is the rate *per service*; ``timeout_s`` bounds each request.
    """

    def __init__(
        self,
        targets: dict[str, str],
        rate_per_s: float = 20.0,
        timeout_s: float = 2.0,
        *,
        max_duration_s: float = 3600.0,
        max_workers: int = 256,
        routes: dict[str, list[str]] | None = None,
        max_records: int = 1_000_000,
    ) -> None:
        if rate_per_s <= 0 or timeout_s <= 0 or max_duration_s <= 0 or max_workers <= 0:
            raise ValueError("rate_per_s, timeout_s, max_duration_s and max_workers must be positive")
        self.rate_per_s = rate_per_s
        self.timeout_s = timeout_s
        self.max_duration_s = max_duration_s
        # Workers are added while requests wait and none is idle (a slow version needs rate x
        # latency of them), up to max_workers; a request left waiting longer than timeout_s is dropped.
        self.max_workers = max_workers
        self._idle_workers = 0
        self.dropped = 0  # scheduled requests never sent because every worker was busy too long
        self._routes = routes or {}
        self._lock = threading.Lock()
        self._records: deque[RequestRecord] = deque(maxlen=max_records)
        self._targets: dict[str, _Target] = {}
        self._targets_generation = 0
        self._jobs: queue.Queue[_Job] = queue.Queue()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._report_server: ThreadingHTTPServer | None = None
        self._schedule_reset = True
        self._service_rates: dict[str, float] = {}  # per-service overrides of rate_per_s
        self.set_targets(targets)

    # -- control ---------------------------------------------------------------------------
    def set_targets(self, targets: dict[str, str]) -> None:
        """Replace the targets (a service added now starts at the full rate from now)."""
        built = {name: _Target(name, url, self._routes.get(name) or routes_for(name)) for name, url in targets.items()}
        with self._lock:
            self._targets = built
            self._targets_generation += 1
            self._schedule_reset = True

    def set_rate(self, rate_per_s: float | None, service: str | None = None) -> None:
        """The rate of every service, or of one (``None`` for one service: back to the common rate)."""
        if rate_per_s is not None and rate_per_s <= 0:
            raise ValueError("rate_per_s must be positive")
        if rate_per_s is None and service is None:
            raise ValueError("give a rate, or a service to reset")
        with self._lock:
            if service is None:
                self.rate_per_s = float(rate_per_s)  # type: ignore[arg-type]
            elif rate_per_s is None:
                self._service_rates.pop(service, None)
            else:
                self._service_rates[service] = rate_per_s
            self._schedule_reset = True

    def rates(self) -> dict[str, float]:
        """The rate each target gets now."""
        with self._lock:
            return {name: self._service_rates.get(name, self.rate_per_s) for name in self._targets}

    @property
    def running(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def start(self) -> "LoadGenerator":
        if self.running:
            return self
        self._stop.clear()
        self._idle_workers = 0
        self._threads = [threading.Thread(target=self._schedule, name="load-scheduler", daemon=True)]
        self._threads[0].start()
        for _ in range(min(4, self.max_workers)):
            self._add_worker()
        return self

    def _add_worker(self) -> None:
        thread = threading.Thread(target=self._work, name=f"load-worker-{len(self._threads)}", daemon=True)
        self._threads.append(thread)
        thread.start()

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop sending (requests in flight finish or time out) and the report endpoint."""
        self._stop.set()
        deadline = time.monotonic() + timeout_s
        for thread in self._threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        if self._report_server is not None:
            self._report_server.shutdown()
            self._report_server.server_close()
            self._report_server = None

    def __enter__(self) -> "LoadGenerator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- scheduling and sending ------------------------------------------------------------
    def _schedule(self, tick_s: float = 0.005) -> None:
        """Enqueue each service's requests at the rate, until stopped or max_duration_s."""
        started = time.monotonic()
        base, issued = started, {}
        while not self._stop.wait(tick_s):
            now = time.monotonic()
            if now - started >= self.max_duration_s:
                break
            with self._lock:
                if self._schedule_reset:
                    base, issued, self._schedule_reset = now, dict.fromkeys(self._targets, 0), False
                rates = {name: self._service_rates.get(name, self.rate_per_s) for name in self._targets}
            for service, rate in rates.items():
                due = int((now - base) * rate)
                for _ in range(due - issued[service]):
                    self._jobs.put(_Job(service, now))
                issued[service] = due
            with self._lock:
                starved = self._idle_workers == 0 and not self._jobs.empty()
            if starved and len(self._threads) - 1 < self.max_workers:
                self._add_worker()
        self._stop.set()  # the workers stop too

    def _work(self) -> None:
        connections: dict[tuple[str, int], http.client.HTTPConnection] = {}
        generation = -1
        try:
            while not self._stop.is_set():
                with self._lock:
                    self._idle_workers += 1
                try:
                    job = self._jobs.get(timeout=0.1)
                except queue.Empty:
                    continue
                finally:
                    with self._lock:
                        self._idle_workers -= 1
                with self._lock:
                    target = self._targets.get(job.service)
                    if generation != self._targets_generation:
                        generation = self._targets_generation
                        _close_unused(connections, {t.key for t in self._targets.values()})
                if target is None:
                    continue  # the service was removed from the targets
                if time.monotonic() - job.due > self.timeout_s:
                    with self._lock:  # sending it now would not be the steady rate asked for
                        self.dropped += 1
                    continue
                record = self._send(connections, job.service, target)
                with self._lock:
                    self._records.append(record)
        finally:
            _close_unused(connections, set())

    def _send(self, connections: dict, service: str, target: _Target) -> RequestRecord:
        route = target.next_route()
        sent_at, started = time.time(), time.perf_counter()
        for attempt in (1, 2):
            conn = connections.get(target.key)
            reused = conn is not None
            if conn is None:
                conn = connections[target.key] = http.client.HTTPConnection(*target.key, timeout=self.timeout_s)
            try:
                conn.request("GET", target.prefix + route, headers={"User-Agent": _USER_AGENT})
                response = conn.getresponse()
                response.read()
            except (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError) as e:
                connections.pop(target.key).close()
                # A kept-alive connection the server closed while idle: retry once on a new
                # one, as HTTP clients do for idempotent requests. Anything else is a failure.
                if reused and attempt == 1:
                    continue
                return self._failure(sent_at, started, service, route, e)
            except (OSError, http.client.HTTPException) as e:
                connections.pop(target.key).close()
                return self._failure(sent_at, started, service, route, e)
            if response.will_close:
                connections.pop(target.key).close()
            latency_ms = (time.perf_counter() - started) * 1000
            return RequestRecord(
                sent_at, service, route, response.status, latency_ms,
                response.getheader("X-Veza-Version"), response.getheader("X-Veza-Pod"),
            )
        raise AssertionError("unreachable")

    @staticmethod
    def _failure(sent_at: float, started: float, service: str, route: str, error: Exception) -> RequestRecord:
        kind = "timeout" if isinstance(error, TimeoutError) else type(error).__name__
        return RequestRecord(sent_at, service, route, None, (time.perf_counter() - started) * 1000, None, None, kind)

    # -- results ---------------------------------------------------------------------------
    def records(self, since: datetime | None = None) -> list[RequestRecord]:
        """Every recorded request sent at or after ``since`` (naive times are UTC)."""
        with self._lock:
            snapshot = list(self._records)
        if since is None:
            return snapshot
        cutoff = _as_utc(since).timestamp()
        return [r for r in snapshot if r.at >= cutoff]

    def report(self, since: datetime | None = None) -> dict[str, Any]:
        """Requests and failures per service and per answering version (see module doc)."""
        with self._lock:
            services = list(self._targets)
        groups: dict[str, dict[str, list[RequestRecord]]] = {name: {} for name in services}
        for record in self.records(since):
            version = record.version or UNKNOWN_VERSION
            groups.setdefault(record.service, {}).setdefault(version, []).append(record)
        report: dict[str, Any] = {}
        for service, by_version in groups.items():
            versions = {version: _summary(records) for version, records in sorted(by_version.items())}
            report[service] = {
                "requests": sum(v["requests"] for v in versions.values()),
                "failed": sum(v["failed"] for v in versions.values()),
                "by_version": versions,
            }
        return report

    # -- report endpoint -------------------------------------------------------------------
    def serve_report(self, host: str = "127.0.0.1", port: int = 0) -> tuple[str, int]:
        """Serve ``GET /traffic[?since=ISO]`` on loopback; returns the bound (host, port)."""
        if self._report_server is None:
            server = ThreadingHTTPServer((host, port), _ReportHandler)
            server.daemon_threads = True
            server.generator = self  # type: ignore[attr-defined]
            threading.Thread(target=server.serve_forever, name="load-report", daemon=True).start()
            self._report_server = server
        bound_host, bound_port = self._report_server.server_address[:2]
        return str(bound_host), int(bound_port)


def _summary(records: list[RequestRecord]) -> dict[str, Any]:
    latencies = sorted(r.latency_ms for r in records)
    return {
        "requests": len(records),
        "failed": sum(r.failed for r in records),
        "p50_ms": _percentile(latencies, 50),
        "p99_ms": _percentile(latencies, 99),
        # When this version answered first and last (a canary's time to abort starts at its first request).
        "first": _iso(min(r.at for r in records)) if records else None,
        "last": _iso(max(r.at for r in records)) if records else None,
    }


def _iso(unix: float) -> str:
    return datetime.fromtimestamp(unix, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _percentile(sorted_values: list[float], pct: float) -> float | None:
    """Nearest-rank percentile (a value that was observed), in ms to 0.1."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(pct / 100 * len(sorted_values)))
    return round(sorted_values[rank - 1], 1)


def _close_unused(connections: dict, keep: set) -> None:
    for key in [k for k in connections if k not in keep]:
        connections.pop(key).close()


def _as_utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def parse_since(text: str) -> datetime:
    """An ISO 8601 time (``Z`` accepted; no offset means UTC), as an aware UTC datetime."""
    try:
        moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f"not an ISO time: {text!r} (e.g. 2025-01-31T12:00:00Z)") from None
    return _as_utc(moment)


class _ReportHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        if url.path != "/traffic":
            self._json(404, {"error": f"no such endpoint {url.path}; try /traffic?since=<ISO time>"})
            return
        since_values = parse_qs(url.query).get("since")
        try:
            since = parse_since(since_values[0]) if since_values else None
        except ValueError as e:
            self._json(400, {"error": str(e)})
            return
        self._json(200, self.server.generator.report(since))  # type: ignore[attr-defined]

    def _json(self, code: int, body: dict[str, Any]) -> None:
        send_json(self, code, body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # the sandbox's own log is not the place for report polling


def fetch_report(base_url: str, since: datetime | None = None, timeout_s: float = 5.0) -> dict[str, Any]:
    """Ask a running load generator (in another process) for its report."""
    url = base_url.rstrip("/") + "/traffic"
    if since is not None:
        url += "?since=" + quote(_as_utc(since).isoformat().replace("+00:00", "Z"))
    with urllib.request.urlopen(url, timeout=timeout_s) as response:
        return json.load(response)
