"""The proxy's HTTPS front: take a request, meet the faults, forward it, relay the answer.

One thread per caller connection (kubectl opens a few and keeps them alive), each with its own
keep-alive connections to the apiserver, one per way of reaching it (:mod:`.upstream`). What
is relayed how:

- an ordinary answer with a Content-Length is copied as it arrives;
- an answer without one (a watch, ``logs -f``: chunked by the apiserver) is re-chunked piece
  by piece as the apiserver sends it, so every watch event reaches the caller at once;
- an upgrade (``exec``, ``attach``, ``port-forward``: SPDY or WebSocket) gets its own TLS
  socket to the apiserver; after the apiserver's 101 the two sockets are spliced byte for byte
  until either side closes.

The faults (:mod:`.faults`) act before forwarding (latency, refusal) and on a write's answer
(lost: 500, or the connection closed). An upgrade is a stream, not a stored write: it is never
a lost answer. Errors reaching the apiserver are answered 502 with a Status body.
"""
from __future__ import annotations

import http.client
import json
import re
import select
import socket
import ssl
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import Faults, status_body
from .identity import HOP_BY_HOP, Caller, caller_from_peer_cert, upstream_headers
from .upstream import CHUNK, Upstream, read_response_head

__all__ = ["ProxyServer"]

HANDSHAKE_TIMEOUT = 10.0  # a caller that opens a connection and never speaks TLS is dropped
IDLE_TIMEOUT = 300.0  # a kept-alive caller connection idle this long is closed
RETRY_AFTER_SECONDS = "1"  # what kube-apiserver's max-in-flight filter sends with its refusals


class ProxyServer(ThreadingHTTPServer):
    """The HTTPS listener. TLS is negotiated in each connection's own thread, not in the accept
    loop, so a caller stuck in its handshake holds up nobody else."""

    daemon_threads = True  # open watches must not keep a stopping proxy alive
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], *, tls: ssl.SSLContext, upstream: Upstream,
                 faults: Faults) -> None:
        self.tls, self.upstream, self.faults = tls, upstream, faults
        super().__init__(address, ProxyHandler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        request.settimeout(HANDSHAKE_TIMEOUT)
        # Headers and body leave in separate writes: without this, Nagle's algorithm holds the
        # body until the caller's delayed ACK (~40 ms on every answer).
        request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        try:
            connection = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ValueError):
            return  # a failed handshake (wrong CA, a port scan): nothing to answer
        try:
            self.RequestHandlerClass(connection, client_address, self)
        finally:
            connection.close()

    def shutdown_request(self, request: Any) -> None:
        # The TLS socket took over the descriptor in finish_request and is closed there.
        self.close_request(request)


class ProxyHandler(BaseHTTPRequestHandler):
    """One caller connection: its requests one after the other (HTTP/1.1 keep-alive)."""

    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server: ProxyServer
    connection: ssl.SSLSocket

    def setup(self) -> None:
        super().setup()
        self.caller: Caller | None = caller_from_peer_cert(self.connection.getpeercert())
        self._upstream: dict[bool, http.client.HTTPSConnection] = {}

    def finish(self) -> None:
        for connection in self._upstream.values():
            connection.close()
        self._upstream.clear()
        try:
            super().finish()
        except OSError:
            pass  # the caller is gone already

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write(f"fault proxy: {self.address_string()} {format % args}\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass  # one line per request would cost more than it tells; errors and faults are logged

    # -- one request ----------------------------------------------------------------------------
    def relay(self) -> None:
        method, target, faults = self.command, self.path, self.server.faults
        upgrade = "upgrade" in self.headers.get("Connection", "").lower() and "Upgrade" in self.headers
        body = self._read_body()
        faults.delay()
        refusal = faults.refusal(method, target)
        if refusal is not None:
            self._answer_status(refusal, {"Retry-After": RETRY_AFTER_SECONDS})
            return
        headers = upstream_headers(list(self.headers.items()), self.caller, client_ip=self.client_address[0],
                                   keep_upgrade=upgrade)
        if upgrade:
            self._relay_upgrade(headers, body)
            return
        try:
            response = self._forward(headers, body)
        except (OSError, http.client.HTTPException) as e:
            self._answer_status(_bad_gateway(self.server.upstream.url, e))
            return
        try:
            lost = faults.lost_answer(method, target, response.status)
            if lost is None:
                self._relay_response(response)
                return
            response.read()  # the apiserver applied the write; its answer is what gets lost
            self.log_message("lost the answer to %s %s (%s)", method, target.split("?")[0], lost)
            if lost == "close":
                self.close_connection = True  # no answer at all: the socket closes under the caller
            else:
                self._answer_status(Faults.lost_answer_status(method, target))
        except (OSError, http.client.HTTPException):
            self.close_connection = True  # the caller went away mid-answer, or the apiserver did
            self._drop_upstream()

    # Every method the API uses; any other gets the base class's 501.
    do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = relay

    def _read_body(self) -> bytes | None:
        """The request body (None when there is none); a chunked one is read whole."""
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():  # trailers, up to the blank line
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        return None

    def _forward(self, headers: list[tuple[str, str]], body: bytes | None) -> http.client.HTTPResponse:
        """Send the request on this caller's kept-alive connection to the apiserver; a connection
        the apiserver closed while idle is replaced once (the request never reached it)."""
        as_front_proxy = self.caller is not None
        for attempt in (1, 2):
            connection = self._upstream.get(as_front_proxy)
            reused = connection is not None
            if connection is None:
                connection = self._upstream[as_front_proxy] = self.server.upstream.connection(as_front_proxy)
            try:
                connection.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for name, value in headers:
                    if name.lower() != "content-length":
                        connection.putheader(name, value)
                if body is not None:
                    connection.putheader("Content-Length", str(len(body)))
                connection.endheaders(body)
                return connection.getresponse()
            except (OSError, http.client.HTTPException) as e:
                self._drop_upstream()
                self.log_message("upstream %s on %s %s (attempt %d, reused %s)", type(e).__name__,
                                 self.command, self.path.split("?")[0], attempt, reused)
                if not reused or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _drop_upstream(self) -> None:
        connection = self._upstream.pop(self.caller is not None, None)
        if connection is not None:
            connection.close()

    def _relay_response(self, response: http.client.HTTPResponse) -> None:
        """Status, end-to-end headers and body, framed for the caller (module doc)."""
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        length = response.getheader("Content-Length")
        if self.command == "HEAD" or response.status in (204, 304) or response.status < 200:
            if length is not None:
                self.send_header("Content-Length", length)
            self.end_headers()
        elif length is not None:
            self.send_header("Content-Length", length)
            self.end_headers()
            while data := response.read1(CHUNK):
                self.wfile.write(data)
        elif self.request_version == "HTTP/1.1":
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            with HangUpWatch(self.connection, self._upstream[self.caller is not None]) as hang_up:
                while data := response.read1(CHUNK):  # one watch event is usually one piece: sent at once
                    self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            if hang_up.seen:
                raise ConnectionAbortedError("the caller hung up on a stream")
            self.wfile.write(b"0\r\n\r\n")
        else:  # an HTTP/1.0 caller: the end of the body is the end of the connection
            self.close_connection = True
            self.end_headers()
            while data := response.read1(CHUNK):
                self.wfile.write(data)
        # read1() stops at Content-Length without marking the response closed: left open, the
        # connection's next getresponse() raises ResponseNotReady after its request was sent,
        # and the request would be sent twice (a POST answered 409 AlreadyExists, a PUT 409 Conflict).
        response.close()
        if response.will_close:
            self._drop_upstream()

    def _answer_status(self, status: dict[str, Any], extra: dict[str, str] | None = None) -> None:
        body = json.dumps(status).encode()
        self.send_response_only(int(status["code"]))
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    # -- upgrades -------------------------------------------------------------------------------
    def _relay_upgrade(self, headers: list[tuple[str, str]], body: bytes | None) -> None:
        """exec/attach/port-forward: forward the upgrade request on a socket of its own, relay
        the apiserver's answer; after a 101, splice the two connections until one closes."""
        self.close_connection = True  # after an upgrade this connection is the stream's
        try:
            upstream = self.server.upstream.raw_socket(self.caller is not None)
        except OSError as e:
            self._answer_status(_bad_gateway(self.server.upstream.url, e))
            return
        try:
            lines = [f"{self.command} {self.path} HTTP/1.1", *(f"{n}: {v}" for n, v in headers
                                                             if n.lower() != "content-length")]
            if body is not None:
                lines.append(f"Content-Length: {len(body)}")
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + (body or b""))
            code, head, rest = read_response_head(upstream)
            if code != 101:
                self._relay_refused_upgrade(upstream, head, rest)
                return
            self.connection.sendall(head + rest)
            splice(self.connection, upstream, already_read=_take_buffered(self))
        except OSError as e:
            self.log_message("upgrade %s ended: %s", self.path.split("?")[0], e)
        finally:
            upstream.close()

    def _relay_refused_upgrade(self, upstream: ssl.SSLSocket, head: bytes, rest: bytes) -> None:
        """An ordinary answer to an upgrade (403, 400): passed on with ``Connection: close``."""
        match = re.search(rb"\r\ncontent-length:\s*(\d+)", head, re.IGNORECASE)
        head = re.sub(rb"\r\nconnection:[^\r]*", b"", head, flags=re.IGNORECASE)
        self.connection.sendall(head[:-2] + b"Connection: close\r\n\r\n" + rest)
        left = int(match.group(1)) - len(rest) if match else None
        upstream.settimeout(10.0)
        while left is None or left > 0:
            data = upstream.recv(CHUNK if left is None else min(CHUNK, left))
            if not data:
                return
            self.connection.sendall(data)
            if left is not None:
                left -= len(data)


class HangUpWatch:
    """While a stream is relayed, end it upstream when the caller hangs up.

    A watch nobody sends events on would otherwise hold its thread and its apiserver connection
    until the apiserver's own timeout (30 to 60 min), though the caller is long gone (``kubectl
    get -w`` ended with Ctrl-C). A caller awaiting an answer sends nothing (HTTP/1.1 without
    pipelining), so its socket turning readable means it closed: the upstream socket is then
    shut down, which ends the blocked read at once.
    """

    POLL_SECONDS = 1.0  # how soon the watching thread notices the stream ended normally

    def __init__(self, caller: ssl.SSLSocket, upstream: http.client.HTTPSConnection) -> None:
        self.caller, self.upstream = caller, upstream
        self.seen = False
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._watch, name="hang-up-watch", daemon=True)

    def __enter__(self) -> "HangUpWatch":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._done.set()

    def _watch(self) -> None:
        while not self._done.is_set():
            try:
                readable, _, _ = select.select([self.caller], [], [], self.POLL_SECONDS)
            except (OSError, ValueError):
                return  # the caller's socket is closed already
            if readable and not self._done.is_set():
                self.seen = True
                sock = self.upstream.sock
                if sock is not None:
                    try:
                        # The plain socket's shutdown: SSLSocket.shutdown would also drop its TLS
                        # state under the thread that is reading it.
                        socket.socket.shutdown(sock, socket.SHUT_RDWR)
                    except OSError:
                        pass
                return


def _bad_gateway(url: str, error: BaseException) -> dict[str, Any]:
    return status_body(502, "InternalError", f"fault proxy: the apiserver at {url} did not answer: "
                                             f"{type(error).__name__}: {error}")


def _take_buffered(handler: ProxyHandler) -> bytes:
    """What the caller sent after its upgrade request and the request reader already buffered."""
    handler.connection.setblocking(False)
    try:
        return handler.rfile.read1(CHUNK) or b""
    except (ssl.SSLWantReadError, BlockingIOError):
        return b""
    finally:
        handler.connection.setblocking(True)


def splice(a: ssl.SSLSocket, b: ssl.SSLSocket, *, already_read: bytes = b"") -> None:
    """Copy bytes both ways between two TLS sockets until either closes, in this one thread
    (one OpenSSL connection must not be read and written by two threads at once)."""
    for sock in (a, b):
        sock.setblocking(False)
    try:
        if already_read:
            _send_all(b, already_read)
        while True:
            ready = [s for s in (a, b) if s.pending()]  # decrypted already: select would not see it
            if not ready:
                ready, _, _ = select.select([a, b], [], [])
            for source in ready:
                try:
                    data = source.recv(CHUNK)
                except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                    continue  # a partial TLS record: its rest comes with the next select
                if not data:
                    return
                _send_all(b if source is a else a, data)
    except (OSError, ValueError):
        return  # either side reset: the stream is over
    finally:
        for sock in (a, b):
            try:
                sock.setblocking(True)
            except OSError:
                pass


def _send_all(sock: ssl.SSLSocket, data: bytes) -> None:
    view = memoryview(data)
    while view:
        try:
            sent = sock.send(view)
        except (ssl.SSLWantWriteError, ssl.SSLWantReadError, BlockingIOError):
            select.select([], [sock], [], 30.0)
            continue
        view = view[sent:]

