"""The Service proxy: every Service's cluster IP and ports, served inside the cluster network, per-request.

It plays kube-proxy plus the Istio sidecar: it listens on ``spec.clusterIP:port`` for every
Service port (the apiserver allocates the ClusterIP; the supervisor puts it on the cluster
namespace's ``lo`` first, :mod:`runbooks_sandbox.clusterview`) and forwards each HTTP/1.1 request
to one ready endpoint, chosen per request (not per connection), so a load generator that keeps
connections alive still sees Service balancing and VirtualService weights exactly (see
``service_routes``). Responses carry ``X-Veza-Upstream`` naming the pod that answered.

Routing follows the API server's watch events: the table is rebuilt inside the informer's
callback. The node agent reports a terminating pod not ready before it sends SIGTERM, and the
workload drains the requests already sent to it, so an endpoint leaving does not cut a request.

Retry: a request whose connection to an endpoint is refused is retried once on another
endpoint of the same destination. kube-proxy does not retry, but it also never routes to a pod
once its endpoint removal is programmed; a request that picked an endpoint just before that
moment is the one case this retry covers (and a kept-alive upstream connection the pod closed
while idle is re-opened, as every HTTP client does for idempotent requests).
"""
from __future__ import annotations

import asyncio
import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass
from functools import partial
from typing import Callable

from ..clusterview import PROXY_TYPES as _TYPES
from ..clusterview import StoreView
from ..kube import StoreEvent
from .service_routes import Backend, Destination, ObjectCache, PortRoutes, build_table

__all__ = ["ServiceProxy"]

log = logging.getLogger(__name__)
ListenKey = tuple[str, int]
_HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "te", "trailer", "upgrade",
                         "transfer-encoding", "expect"})
_IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE", "TRACE"})
_MAX_HEAD = 64 * 1024
_REASONS = {400: "Bad Request", 404: "Not Found", 413: "Payload Too Large", 502: "Bad Gateway",
            503: "Service Unavailable", 504: "Gateway Timeout"}


class _BadRequest(Exception):
    pass


@dataclass
class _Request:
    method: str
    target: str
    version: str
    headers: list[tuple[str, str]]
    lookup: dict[str, str]  # lower-case name -> value (last wins)
    body: bytes = b""

    @property
    def keep_alive(self) -> bool:
        connection = self.lookup.get("connection", "").lower()
        if self.version == "HTTP/1.0":
            return "keep-alive" in connection
        return "close" not in connection


@dataclass
class _Upstream:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    def usable(self) -> bool:
        return not self.reader.at_eof() and not self.writer.is_closing()

    def close(self) -> None:
        self.writer.close()


def _parse_head(head: bytes) -> tuple[str, list[tuple[str, str]]]:
    lines = head.decode("latin-1").split("\r\n")
    headers = []
    for line in lines[1:]:
        if not line:
            continue
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise _BadRequest(f"malformed header line {line[:40]!r}")
        headers.append((name, value.strip()))
    return lines[0], headers


async def _read_request(reader: asyncio.StreamReader, max_body: int) -> _Request | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError as e:
        if e.partial.strip():
            raise _BadRequest("incomplete request head") from None
        return None  # the client closed a kept-alive connection
    except asyncio.LimitOverrunError:
        raise _BadRequest("request head too large") from None
    first, headers = _parse_head(head)
    parts = first.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        raise _BadRequest(f"malformed request line {first[:60]!r}")
    lookup = {k.lower(): v for k, v in headers}
    request = _Request(parts[0], parts[1], parts[2], headers, lookup)
    if "chunked" in lookup.get("transfer-encoding", "").lower():
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                while (await reader.readuntil(b"\r\n")) != b"\r\n":
                    pass  # trailers are dropped
                break
            chunks.append((await reader.readexactly(size + 2))[:-2])
            if sum(map(len, chunks)) > max_body:
                raise _BadRequest("body too large")
        request.body = b"".join(chunks)
    elif length := int(lookup.get("content-length", "0") or 0):
        if length > max_body:
            raise _BadRequest("body too large")
        request.body = await reader.readexactly(length)
    return request


class ServiceProxy:
    """Serves every Service's cluster IP:port (see the module doc)."""

    def __init__(self, *, connect_timeout_s: float = 2.0, response_timeout_s: float = 60.0,
                 max_body_bytes: int = 8 << 20, idle_per_backend: int = 64) -> None:
        self.connect_timeout_s = connect_timeout_s
        self.response_timeout_s = response_timeout_s
        self.max_body_bytes = max_body_bytes
        self.idle_per_backend = idle_per_backend
        self.listen_errors: dict[ListenKey, str] = {}  # a Service port that could not be bound, and why
        # requests, retried (refused, sent elsewhere), reopened (kept-alive connection closed by
        # the pod), failed (answered by the proxy itself with 5xx): for tests and the bench.
        self.stats: Counter[str] = Counter()
        self._cache = ObjectCache()
        self._table: dict[ListenKey, PortRoutes] = {}
        self._lock = threading.Lock()
        self._counters: dict[str, int] = {}  # route and destination counters (loop thread only)
        self._pool: dict[tuple[str, int], deque[_Upstream]] = {}
        self._servers: dict[ListenKey, asyncio.base_events.Server] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._unsubscribe: Callable[[], None] | None = None
        self._clients: set[asyncio.StreamWriter] = set()

    # --- life cycle ------------------------------------------------------------------------

    def start(self, store: StoreView) -> None:
        """Follow the cluster's Services, endpoints, pods and Istio rules; bind the listeners."""
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run_loop, args=(ready,), name="service-proxy", daemon=True)
        self._thread.start()
        ready.wait()
        with self._lock:
            self._unsubscribe = store.subscribe(self._on_event)
            for rt in _TYPES.values():
                for obj in store.list(rt)[0]:
                    self._cache.put(rt.plural, obj)
        self._rebuild()

    def stop(self) -> None:
        """Close every listener and connection; in-flight requests are cut."""
        if self._unsubscribe:
            self._unsubscribe()
        if self._loop is not None and self._thread is not None:
            asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(timeout=10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)

    # --- queries ---------------------------------------------------------------------------

    def address(self, namespace: str, service: str, port: int | None = None) -> tuple[str, int]:
        """The (cluster IP, port) serving a Service port (its first port when none is named)."""
        matches = sorted(k for k, r in self._table.items() if r.namespace == namespace and r.service == service
                         and (port is None or r.port == port))
        if not matches:
            raise LookupError(f"service {namespace}/{service} has no port {port or ''} served by the proxy")
        return matches[0]

    def url(self, namespace: str, service: str, port: int | None = None) -> str:
        ip, number = self.address(namespace, service, port)
        return f"http://{ip}:{number}"

    def routes(self, namespace: str, service: str, port: int | None = None) -> PortRoutes:
        return self._table[self.address(namespace, service, port)]

    # --- store side (writer threads) -------------------------------------------------------

    def _on_event(self, event: StoreEvent) -> None:
        plural = event.resource.plural
        if _TYPES.get(plural) != event.resource:
            return
        with self._lock:
            if event.type == "DELETED":
                self._cache.remove(plural, event.object)
            else:
                self._cache.put(plural, event.object)
        self._rebuild()

    def _rebuild(self) -> None:
        with self._lock:
            table = build_table(self._cache)
            changed_listeners = set(table) != set(self._table) or bool(self.listen_errors)
            self._table = table  # one reference swap: the loop reads whichever table is current
        if changed_listeners and self._loop is not None:
            # Wait for the binds, so a Service is reachable as soon as its create call returns.
            future = asyncio.run_coroutine_threadsafe(self._reconcile_listeners(), self._loop)
            try:
                future.result(timeout=5)
            except Exception:  # noqa: BLE001 - reported through listen_errors
                log.exception("service proxy: reconciling listeners failed")

    # --- loop side -------------------------------------------------------------------------

    def _run_loop(self, ready: threading.Event) -> None:
        self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(self._loop)
        self._loop.call_soon(ready.set)
        self._loop.run_forever()
        self._loop.close()

    async def _reconcile_listeners(self) -> None:
        wanted = set(self._table)
        for key in [k for k in self._servers if k not in wanted]:
            self._servers.pop(key).close()  # stops accepting; open connections finish
        for key in sorted(wanted - set(self._servers)):
            try:
                self._servers[key] = await asyncio.start_server(
                    partial(self._serve_client, key), host=key[0], port=key[1], reuse_address=True,
                    backlog=512, limit=_MAX_HEAD)
                self.listen_errors.pop(key, None)
            except OSError as e:
                routes = self._table.get(key)
                name = f"{routes.namespace}/{routes.service}" if routes else "?"
                message = f"service {name}: cannot listen on {key[0]}:{key[1]}: {e.strerror}"
                if self.listen_errors.get(key) != message:
                    log.warning(message)  # once; binding is retried at every routing change
                self.listen_errors[key] = message
        for key in [k for k in self.listen_errors if k not in wanted]:
            del self.listen_errors[key]
        self._prune_pool()

    def _prune_pool(self) -> None:
        live = {(b.ip, b.port) for routes in self._table.values() for b in routes.backends()}
        for address in [a for a in self._pool if a not in live]:
            for upstream in self._pool.pop(address):
                upstream.close()

    async def _shutdown(self) -> None:
        for server in self._servers.values():
            server.close()
        self._servers.clear()
        for writer in list(self._clients):
            writer.close()
        for idle in self._pool.values():
            for upstream in idle:
                upstream.close()
        self._pool.clear()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _serve_client(self, key: ListenKey, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._clients.add(writer)
        try:
            while True:
                try:
                    request = await _read_request(reader, self.max_body_bytes)
                except (_BadRequest, ValueError) as e:
                    await self._reply(writer, 400, str(e), keep_alive=False)
                    return
                if request is None:
                    return
                if not await self._forward(key, request, writer):
                    return
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away
        finally:
            self._clients.discard(writer)
            writer.close()

    async def _reply(self, writer: asyncio.StreamWriter, code: int, text: str, keep_alive: bool) -> bool:
        """An error answered by the proxy itself (Envoy's wording, so drills read like production)."""
        body = (text + "\n").encode()
        head = (f"HTTP/1.1 {code} {_REASONS.get(code, 'Error')}\r\ncontent-type: text/plain\r\n"
                f"content-length: {len(body)}\r\nserver: veza-sandbox-proxy\r\n"
                + ("" if keep_alive else "connection: close\r\n") + "\r\n")
        writer.write(head.encode() + body)
        await writer.drain()
        return keep_alive

    def _pick(self, key: ListenKey, request: _Request) -> Destination | None | str:
        routes = self._table.get(key)
        if routes is None:
            return "no healthy upstream"
        route = routes.route_for(request.method, request.target.split("?", 1)[0], request.lookup)
        if route is None:
            return "route not found"
        return route.pick(self._counters)

    def _backend(self, destination_key: str, key: ListenKey, excluded: set[Backend]) -> Backend | None:
        """Round-robin over the destination's current backends (looked up again on every try)."""
        routes = self._table.get(key)
        current = next((d for r in (routes.routes if routes else ()) for d in r.destinations
                        if d.key == destination_key), None)
        candidates = [b for b in (current.backends if current else ()) if b not in excluded]
        if not candidates:
            return None
        n = self._counters.get(destination_key, 0)
        self._counters[destination_key] = n + 1
        return candidates[n % len(candidates)]

    async def _checkout(self, backend: Backend, fresh: bool) -> tuple[_Upstream, bool]:
        idle = self._pool.get((backend.ip, backend.port))
        while idle and not fresh:
            upstream = idle.pop()
            if upstream.usable():
                return upstream, True
            upstream.close()
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(backend.ip, backend.port, limit=_MAX_HEAD), self.connect_timeout_s)
        return _Upstream(reader, writer), False

    def _checkin(self, backend: Backend, upstream: _Upstream) -> None:
        idle = self._pool.setdefault((backend.ip, backend.port), deque())
        if len(idle) < self.idle_per_backend and upstream.usable():
            idle.append(upstream)
        else:
            upstream.close()

    async def _forward(self, key: ListenKey, request: _Request, client: asyncio.StreamWriter) -> bool:
        """Send one request to an endpoint and relay the answer; returns whether to keep the client."""
        keep_alive = request.keep_alive
        self.stats["requests"] += 1
        picked = self._pick(key, request)
        if picked is None or isinstance(picked, str):
            self.stats["failed"] += 1
            return await self._reply(client, 404 if picked == "route not found" else 503,
                                     picked or "no healthy upstream", keep_alive)
        excluded: set[Backend] = set()
        retried, reopened, fresh = False, 0, False
        while True:
            backend = self._backend(picked.key, key, excluded)
            if backend is None:
                self.stats["failed"] += 1
                return await self._reply(client, 503, "no healthy upstream", keep_alive)
            try:
                upstream, reused = await self._checkout(backend, fresh)
            except (OSError, asyncio.TimeoutError):
                if not retried:  # refused: the endpoint just left; once more elsewhere (see module doc)
                    retried = True
                    self.stats["retried"] += 1
                    excluded.add(backend)
                    continue
                self.stats["failed"] += 1
                return await self._reply(client, 503, "upstream connect error or disconnect/reset before headers. "
                                                      "reset reason: connection failure", keep_alive)
            upstream.writer.write(self._upstream_head(request, client) + request.body)
            try:
                head = await asyncio.wait_for(upstream.reader.readuntil(b"\r\n\r\n"), self.response_timeout_s)
            except asyncio.TimeoutError:
                upstream.close()
                self.stats["failed"] += 1
                return await self._reply(client, 504, "upstream request timeout", False)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError):
                upstream.close()
                if reused and request.method in _IDEMPOTENT and reopened < 2:
                    reopened, fresh = reopened + 1, True  # the pod closed a kept-alive connection
                    self.stats["reopened"] += 1
                    continue
                self.stats["failed"] += 1
                return await self._reply(client, 503, "upstream connect error or disconnect/reset before headers. "
                                                      "reset reason: connection termination", keep_alive)
            return await self._relay(request, head, upstream, backend, client, keep_alive)

    def _upstream_head(self, request: _Request, client: asyncio.StreamWriter) -> bytes:
        lines = [f"{request.method} {request.target} HTTP/1.1"]
        lines += [f"{k}: {v}" for k, v in request.headers
                  if k.lower() not in _HOP_BY_HOP and k.lower() != "content-length"]
        peer = client.get_extra_info("peername")
        if peer:
            lines.append(f"X-Forwarded-For: {peer[0]}")
        if request.body or request.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(request.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    async def _relay(self, request: _Request, head: bytes, upstream: _Upstream, backend: Backend,
                     client: asyncio.StreamWriter, keep_alive: bool) -> bool:
        first, headers = _parse_head(head)
        parts = first.split(" ", 2)
        code = int(parts[1])
        lookup = {k.lower(): v for k, v in headers}
        if request.method == "HEAD" or code in (204, 304) or 100 <= code < 200:
            mode, length = "none", 0
        elif "chunked" in lookup.get("transfer-encoding", "").lower():
            mode, length = "chunked", 0
        elif "content-length" in lookup:
            mode, length = "length", int(lookup["content-length"])
        else:
            mode, length = "close", 0
        reusable = mode != "close" and "close" not in lookup.get("connection", "").lower() and parts[0] == "HTTP/1.1"
        keep_alive = keep_alive and mode != "close"
        out = [first] + [f"{k}: {v}" for k, v in headers if k.lower() not in _HOP_BY_HOP]
        if mode == "chunked":
            out.append("Transfer-Encoding: chunked")
        out.append(f"X-Veza-Upstream: {backend.pod or f'{backend.ip}:{backend.port}'}")
        if not keep_alive:
            out.append("Connection: close")
        client.write(("\r\n".join(out) + "\r\n\r\n").encode("latin-1"))
        try:
            await self._relay_body(upstream.reader, client, mode, length)
        except (OSError, asyncio.IncompleteReadError):
            upstream.close()
            return False  # a response cut mid-body: the client sees the cut, as through Envoy
        if reusable:
            self._checkin(backend, upstream)
        else:
            upstream.close()
        await client.drain()
        return keep_alive

    @staticmethod
    async def _relay_body(reader: asyncio.StreamReader, client: asyncio.StreamWriter, mode: str, length: int) -> None:
        if mode == "length":
            while length > 0:
                data = await reader.read(min(length, 65536))
                if not data:
                    raise asyncio.IncompleteReadError(b"", length)
                client.write(data)
                length -= len(data)
        elif mode == "chunked":
            while True:
                line = await reader.readuntil(b"\r\n")
                client.write(line)
                size = int(line.split(b";")[0], 16)
                if size == 0:
                    while (trailer := await reader.readuntil(b"\r\n")) != b"\r\n":
                        client.write(trailer)
                    client.write(b"\r\n")
                    return
                client.write(await reader.readexactly(size + 2))
                await client.drain()
        elif mode == "close":
            while data := await reader.read(65536):
                client.write(data)
                await client.drain()

