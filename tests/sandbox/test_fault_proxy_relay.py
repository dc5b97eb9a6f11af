"""The fault proxy's relay and fault decisions without a control plane (runs where none is built).

Faults are checked as a model (no HTTP). The relay runs as its real process in front of a small
HTTPS server of this module, made with the sandbox's own PKI as an apiserver would be: it echoes
what reached it (headers, the proxy's client cert), streams chunked answers slowly, and answers
upgrades with 101 then echoes bytes, so identity forwarding, streaming and upgrades are seen
from both sides. The real apiserver behind the proxy: test_fault_proxy.py.
"""
from __future__ import annotations

import http.client
import json
import select
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from runbooks_sandbox.controlplane.faultproxy import FaultProxy, Faults, FaultSettings, ProxyCredentials
from runbooks_sandbox.controlplane.faultproxy.faults import is_dry_run
from runbooks_sandbox.controlplane.pki import Pki

# -- the faults, as a model -------------------------------------------------------------------


def test_settings_are_checked_and_unknown_keys_refused() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        FaultSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="unknown fault setting.*error_rte"):
        FaultSettings.from_json({"error_rte": 0.5})
    assert FaultSettings.from_json({"fail_writes": "2", "resource": "deployments"}).fail_writes == 2


def test_refusals_follow_the_rate_and_are_counted() -> None:
    faults = Faults(seed=7)
    assert faults.refusal("GET", "/api") is None
    faults.set(FaultSettings(error_rate=0.5))
    refused = sum(faults.refusal("GET", "/api/v1/pods?watch=1") is not None for _ in range(1000))
    assert 420 < refused < 580 and faults.describe()["refused"] == refused
    faults.set(FaultSettings(error_rate=1.0))
    status = faults.refusal("GET", "/api/v1/pods?limit=5")
    assert status is not None and status["reason"] == "ServiceUnavailable" and "/api/v1/pods:" in status["message"]


def test_lost_answers_count_only_applied_writes_to_the_resource() -> None:
    faults = Faults()
    faults.set(FaultSettings(fail_writes=2, resource="deployments"))
    deployments = "/apis/apps/v1/namespaces/veza/deployments"
    assert faults.lost_answer("GET", deployments, 200) is None  # not a write
    assert faults.lost_answer("POST", "/api/v1/namespaces/veza/configmaps", 201) is None  # another resource
    assert faults.lost_answer("POST", f"{deployments}?dryRun=All", 201) is None  # stores nothing
    assert faults.lost_answer("POST", deployments, 409) is None  # refused by the apiserver: nothing applied
    assert faults.lost_answer("PATCH", f"{deployments}/web/scale", 200) == "500"  # its subresource counts
    faults.set(FaultSettings(fail_writes=1, no_answer=True))
    assert faults.lost_answer("DELETE", "/api/v1/namespaces/veza/pods/p", 200) == "close"
    assert faults.lost_answer("DELETE", "/api/v1/namespaces/veza/pods/q", 200) is None  # used up
    assert faults.describe()["writes_failed"] == 2
    assert is_dry_run("/x?dryRun=All&fieldManager=kubectl") and not is_dry_run("/x?fieldManager=dryRun")


# -- the relay in front of a stand-in apiserver ---------------------------------------------------

STREAM_ENDED_UPSTREAM = threading.Event()


SEEN: list[tuple[str, str]] = []  # every request that reached the stand-in


class StandIn(BaseHTTPRequestHandler):
    """An apiserver stand-in: echoes what reached it; /stream sends 3 pieces 0.4 s apart;
    /upgrade answers 101 and echoes bytes; /refuse-upgrade answers 403."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def _echo(self, code: int = 200) -> None:
        SEEN.append((self.command, self.path))
        length = int(self.headers.get("Content-Length") or 0)
        cert = self.connection.getpeercert()
        headers: dict[str, Any] = dict(self.headers.items())
        if groups := self.headers.get_all("X-Remote-Group"):
            headers["X-Remote-Group"] = groups  # one header per group
        body = json.dumps({"method": self.command, "path": self.path, "headers": headers,
                           "body": self.rfile.read(length).decode(),
                           "client_cn": cert and dict(x[0] for x in cert["subject"])["commonName"]}).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:
        if self.path == "/stream":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for i in range(3):
                piece = json.dumps({"type": "ADDED", "n": i}).encode() + b"\n"
                self.wfile.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                time.sleep(0.4)
            self.wfile.write(b"0\r\n\r\n")
        elif self.path == "/quiet-stream":  # one event, then nothing, as a watch on a quiet namespace
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self.wfile.write(b"5\r\nfirst\r\n")
            self.close_connection = True
            readable, _, _ = select.select([self.connection], [], [], 20)
            if readable and not self.connection.recv(1):
                STREAM_ENDED_UPSTREAM.set()  # the proxy let go of it
        elif self.path == "/upgrade":
            self.send_response(101)
            self.send_header("Connection", "Upgrade")
            self.send_header("Upgrade", "test-stream")
            self.end_headers()
            self.close_connection = True
            while data := self.connection.recv(4096):
                self.connection.sendall(data.upper())
        elif self.path == "/refuse-upgrade":
            body = b'{"kind":"Status","code":403}'
            self.send_response(403)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self._echo()

    def do_POST(self) -> None:
        self._echo(201)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return Pki.create(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def stand_in(pki: Pki) -> Iterator[str]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.apiserver.cert, pki.apiserver.key)
    context.load_verify_locations(cafile=str(pki.front_proxy_ca.cert))  # as --requestheader-client-ca-file
    context.verify_mode = ssl.CERT_OPTIONAL
    server = ThreadingHTTPServer(("127.0.0.1", 0), StandIn)
    server.daemon_threads = True
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def proxy(pki: Pki, stand_in: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[FaultProxy]:
    serving = pki.issue_serving_cert("faultproxy", "fault-proxy", ["127.0.0.1"], ["localhost"])
    front = pki.issue_front_proxy_client_cert("faultproxy-front-proxy-client")
    started = FaultProxy(tmp_path_factory.mktemp("state")).start(stand_in, ProxyCredentials(
        pki.ca.cert, serving.cert, serving.key, front.cert, front.key))
    yield started
    started.stop()


def _connect(proxy: FaultProxy, pki: Pki, *, admin_cert: bool = False) -> http.client.HTTPSConnection:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    if admin_cert:
        context.load_cert_chain(pki.admin.cert, pki.admin.key)
    return http.client.HTTPSConnection("127.0.0.1", int(proxy.url.rsplit(":", 1)[1]), context=context, timeout=10)


def _echo(proxy: FaultProxy, pki: Pki, headers: dict[str, str], *, admin_cert: bool = False) -> dict[str, Any]:
    connection = _connect(proxy, pki, admin_cert=admin_cert)
    connection.request("GET", "/api/v1/pods?limit=1", headers=headers)
    response = connection.getresponse()
    assert response.status == 200
    echoed = json.loads(response.read())
    connection.close()
    return echoed


def test_a_bearer_token_passes_unchanged_without_a_proxy_cert(proxy: FaultProxy, pki: Pki) -> None:
    echoed = _echo(proxy, pki, {"Authorization": "Bearer tok", "X-Remote-User": "mallory",
                                "X-Remote-Extra-Scopes": "all", "Impersonate-User": "bob"})
    headers = echoed["headers"]
    assert headers["Authorization"] == "Bearer tok" and headers["Impersonate-User"] == "bob"
    assert not any(name.lower().startswith("x-remote-") for name in headers)
    assert echoed["client_cn"] is None and headers["X-Forwarded-For"] == "127.0.0.1"
    assert echoed["path"] == "/api/v1/pods?limit=1"


def test_a_client_cert_caller_is_named_in_front_proxy_headers(proxy: FaultProxy, pki: Pki) -> None:
    echoed = _echo(proxy, pki, {"Authorization": "Bearer ignored", "X-Remote-Group": "mallory"}, admin_cert=True)
    headers = echoed["headers"]
    assert echoed["client_cn"] == "front-proxy-client"
    assert headers["X-Remote-User"] == "sandbox-admin" and headers["X-Remote-Group"] == ["system:masters"]
    assert "Authorization" not in headers  # the certificate's user is who it is


def test_a_request_body_and_keep_alive(proxy: FaultProxy, pki: Pki) -> None:
    connection = _connect(proxy, pki)
    before = len(SEEN)
    for n in range(3):  # one caller connection, several requests
        connection.request("POST", "/api/v1/namespaces/x/configmaps", body=json.dumps({"n": n}).encode())
        response = connection.getresponse()
        assert response.status == 201 and json.loads(json.loads(response.read())["body"]) == {"n": n}
    connection.close()
    # Each write reached the apiserver once, on the kept-alive upstream connection: a response
    # left unclosed made the next request fail after it was sent, and the proxy sent it again.
    assert SEEN[before:] == [("POST", "/api/v1/namespaces/x/configmaps")] * 3


def test_a_chunked_answer_is_relayed_piece_by_piece(proxy: FaultProxy, pki: Pki) -> None:
    connection = _connect(proxy, pki)
    connection.request("GET", "/stream")
    response = connection.getresponse()
    began, arrivals = time.monotonic(), []
    while response.readline():
        arrivals.append(time.monotonic() - began)
    assert len(arrivals) == 3
    assert arrivals[0] < 0.3 and arrivals[1] > 0.3  # each piece as it was sent, not all at the end
    connection.close()


def test_a_stream_the_caller_hangs_up_on_is_ended_upstream(proxy: FaultProxy, pki: Pki) -> None:
    """``kubectl get -w`` ended with Ctrl-C on a quiet watch: the proxy lets go of the apiserver's stream."""
    connection = _connect(proxy, pki)
    connection.request("GET", "/quiet-stream")
    response = connection.getresponse()
    assert response.read1(100) == b"first"
    hung_up = time.monotonic()
    connection.sock.shutdown(socket.SHUT_RDWR)
    connection.close()
    assert STREAM_ENDED_UPSTREAM.wait(10), "the proxy kept the quiet stream open upstream"
    assert time.monotonic() - hung_up < 3.0


def test_an_upgrade_is_spliced_both_ways(proxy: FaultProxy, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    port = int(proxy.url.rsplit(":", 1)[1])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: test-stream\r\n\r\n")
        head = b""
        while b"\r\n\r\n" not in head:
            head += sock.recv(4096)
        assert head.startswith(b"HTTP/1.1 101")
        for word in (b"hello", b"again"):
            sock.sendall(word)
            assert sock.recv(4096) == word.upper()


def test_a_refused_upgrade_is_answered_and_the_connection_closed(proxy: FaultProxy, pki: Pki) -> None:
    context = ssl.create_default_context(cafile=str(pki.ca.cert))
    port = int(proxy.url.rsplit(":", 1)[1])
    with context.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                             server_hostname="127.0.0.1") as sock:
        sock.sendall(b"GET /refuse-upgrade HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n")
        received = b""
        while data := sock.recv(4096):
            received += data
    assert received.startswith(b"HTTP/1.1 403") and b"Connection: close" in received
    assert received.endswith(b'{"kind":"Status","code":403}')


def test_faults_through_the_admin_endpoint(proxy: FaultProxy, pki: Pki) -> None:
    proxy.set_faults(error_rate=1.0)
    try:
        connection = _connect(proxy, pki)
        connection.request("GET", "/api")
        response = connection.getresponse()
        assert response.status == 503 and response.getheader("Retry-After") == "1"
        assert json.loads(response.read())["kind"] == "Status"
        connection.close()
    finally:
        proxy.clear_faults()
    assert proxy.faults()["refused"] == 1


def test_the_admin_token_file_is_the_owners_only(proxy: FaultProxy) -> None:
    assert proxy.token_path.stat().st_mode & 0o777 == 0o600
    assert Path(proxy.dir).stat().st_mode & 0o777 == 0o700
