"""The proxy's two ways to the apiserver, and the TLS context it serves with.

Both upstream contexts verify the apiserver's serving cert against the cluster CA (the
apiserver is reached at ``https://127.0.0.1:Q``, a name its cert carries). They differ in what
the proxy presents (:mod:`.identity`): nothing, for callers whose bearer token speaks for
them, or the proxy's ``front-proxy-client`` certificate, for callers it names in X-Remote-User.
Keeping the two apart means a token request never arrives with a certificate the apiserver's
x509 authenticator would first try and reject.
"""
from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

__all__ = ["Upstream", "ProxyCredentials", "serving_context", "read_response_head"]

# Where each piece of a forwarded request or answer is copied in one go.
CHUNK = 64 * 1024
_MAX_HEAD = 64 * 1024  # the apiserver's answer head is a few hundred bytes


@dataclass(frozen=True)
class ProxyCredentials:
    """The files the proxy process needs (paths only; the keys are read at start)."""

    cluster_ca: Path  # verifies the apiserver and the callers' client certificates
    serving_cert: Path  # the proxy's own serving cert (cluster CA; 127.0.0.1 and localhost)
    serving_key: Path
    front_proxy_cert: Path  # CN=front-proxy-client, of the front-proxy CA
    front_proxy_key: Path


def serving_context(creds: ProxyCredentials) -> ssl.SSLContext:
    """TLS for callers: the proxy's cert; a client cert of the cluster CA is asked for, not required
    (people come with tokens); HTTP/1.1 only (kubectl then falls back from h2, which the relay
    does not speak)."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(creds.serving_cert, creds.serving_key)
    context.load_verify_locations(cafile=str(creds.cluster_ca))
    context.verify_mode = ssl.CERT_OPTIONAL
    context.set_alpn_protocols(["http/1.1"])
    return context


def _client_context(creds: ProxyCredentials, with_cert: bool) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(creds.cluster_ca))
    if with_cert:
        context.load_cert_chain(creds.front_proxy_cert, creds.front_proxy_key)
    context.set_alpn_protocols(["http/1.1"])
    return context


class Upstream:
    """The apiserver at ``url``, reached with or without the front-proxy certificate."""

    def __init__(self, url: str, creds: ProxyCredentials) -> None:
        parts = urlsplit(url)
        if parts.scheme != "https" or not parts.hostname or not parts.port:
            raise ValueError(f"the apiserver URL must be https://host:port, not {url!r}")
        self.url, self.host, self.port = url, parts.hostname, parts.port
        self._contexts = {False: _client_context(creds, False), True: _client_context(creds, True)}

    def connection(self, as_front_proxy: bool) -> http.client.HTTPSConnection:
        """A new keep-alive connection (opened at its first request). No timeout: a watch or
        ``logs -f`` waits as long as the apiserver keeps it open."""
        return http.client.HTTPSConnection(self.host, self.port, context=self._contexts[as_front_proxy])

    def raw_socket(self, as_front_proxy: bool, timeout: float = 30.0) -> ssl.SSLSocket:
        """A TLS socket to the apiserver, for an upgrade (exec, attach, port-forward) relayed as bytes."""
        sock = socket.create_connection((self.host, self.port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # interactive: every keystroke at once
        try:
            tls = self._contexts[as_front_proxy].wrap_socket(sock, server_hostname=self.host)
        except BaseException:
            sock.close()
            raise
        tls.settimeout(None)
        return tls


def read_response_head(sock: ssl.SSLSocket) -> tuple[int, bytes, bytes]:
    """(status code, head up to and with its blank line, bytes received after it) of an answer
    read straight off ``sock``: after a 101 the rest belongs to the upgraded stream."""
    received = b""
    while b"\r\n\r\n" not in received:
        data = sock.recv(CHUNK)
        if not data:
            raise ConnectionError("the apiserver closed the connection before answering the upgrade")
        received += data
        if len(received) > _MAX_HEAD:
            raise ConnectionError("the apiserver's answer head is too long")
    head, _, rest = received.partition(b"\r\n\r\n")
    status_line = head.split(b"\r\n", 1)[0].split()
    code = int(status_line[1]) if len(status_line) > 1 and status_line[1].isdigit() else 502
    return code, head + b"\r\n\r\n", rest
