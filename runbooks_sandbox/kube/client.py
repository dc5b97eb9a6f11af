"""Who we are to the API server and how we reach it: :class:`Credentials` and :class:`ApiClient`.

Credentials come from a kubeconfig (path and context; inline ``*-data`` or file references) or
are given outright (server URL, CA file, a client certificate and key, or a bearer token). A
node agent uses a client certificate of the cluster CA (``CN=system:node:<name>``,
``O=system:nodes``), so the API server's Node authorizer and NodeRestriction admission apply to
it as to a real kubelet.

:class:`ApiClient` is HTTP/1.1 over TLS with urllib3 (one thread-safe connection pool per
client, kept-alive connections), JSON in and out, and every non-2xx answer raised as the
:mod:`.errors` class its Status names. A connection failure is :class:`~.errors.Unreachable`.
Requests go to the URL given, nothing else: no proxy from the environment, no redirects.
"""
from __future__ import annotations

import base64
import json
import os
import socket
import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import urlencode

import urllib3
import yaml

from .errors import ApiError, Unreachable

__all__ = ["Credentials", "ApiClient", "CONTENT_TYPES"]

Obj = dict[str, Any]
# Short names for PATCH bodies (old Store callers say "merge", "strategic-merge"...); a full
# media type passes through unchanged.
CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "strategic-merge": "application/strategic-merge-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    "json-patch": "application/json-patch+json",
    "json": "application/json-patch+json",
    "apply": "application/apply-patch+yaml",
    "apply-patch": "application/apply-patch+yaml",
}


@dataclass(frozen=True)
class Credentials:
    """Where the API server is and how to prove who we are.

    ``ca_file``/``cert_file``/``key_file`` are paths; ``ca_data``/``cert_data``/``key_data`` PEM
    text (a kubeconfig's inline ``*-data``, decoded). One of a client cert+key or a token.
    """

    server: str
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    token: str | None = None
    ca_data: str | None = None
    cert_data: str | None = None
    key_data: str | None = None
    insecure: bool = False  # never in the sandbox; here for a kubeconfig that says so

    def __repr__(self) -> str:  # a token or key never reaches a log line through repr()
        who = "token" if self.token else "client-cert" if (self.cert_file or self.cert_data) else "anonymous"
        return f"Credentials(server={self.server!r}, {who})"

    @classmethod
    def from_kubeconfig(cls, path: str | Path, context: str | None = None) -> "Credentials":
        """The cluster and user of ``context`` (the current context when None) in kubeconfig ``path``."""
        path = Path(path)
        doc = yaml.safe_load(path.read_text()) or {}
        name = context or doc.get("current-context")
        contexts = {c["name"]: c.get("context") or {} for c in doc.get("contexts") or []}
        if name not in contexts:
            raise ValueError(f"{path}: no context {name!r} (contexts: {', '.join(contexts) or 'none'})")
        ctx = contexts[name]
        cluster = _named(doc, "clusters", ctx.get("cluster"), path)
        user = _named(doc, "users", ctx.get("user"), path)
        base = path.parent

        def file(value: str | None) -> str | None:
            return None if value is None else str(base / value)  # relative paths are the kubeconfig's

        return cls(
            server=cluster["server"],
            ca_file=file(cluster.get("certificate-authority")),
            ca_data=_decoded(cluster.get("certificate-authority-data")),
            cert_file=file(user.get("client-certificate")),
            cert_data=_decoded(user.get("client-certificate-data")),
            key_file=file(user.get("client-key")),
            key_data=_decoded(user.get("client-key-data")),
            token=user.get("token") or (Path(user["tokenFile"]).read_text().strip() if user.get("tokenFile") else None),
            insecure=bool(cluster.get("insecure-skip-tls-verify")),
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A TLS client context that verifies the server by the cluster CA and presents our cert."""
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if self.insecure:
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
        elif self.ca_file or self.ca_data:
            ctx.load_verify_locations(cafile=self.ca_file, cadata=self.ca_data)
        if self.cert_file or self.cert_data:
            _load_cert_chain(ctx, self)
        return ctx


def _named(doc: Obj, section: str, name: str | None, path: Path) -> Obj:
    for entry in doc.get(section) or []:
        if entry.get("name") == name:
            return entry.get(section[:-1]) or {}
    raise ValueError(f"{path}: no {section[:-1]} {name!r}")


def _decoded(data: str | None) -> str | None:
    return None if data is None else base64.b64decode(data).decode()


def _load_cert_chain(ctx: ssl.SSLContext, creds: Credentials) -> None:
    """ssl loads a cert and key only from files: inline PEM goes through a private temporary
    folder (0700), removed as soon as the context holds them."""
    if creds.cert_file and creds.key_file and not creds.cert_data and not creds.key_data:
        ctx.load_cert_chain(creds.cert_file, creds.key_file)
        return
    with tempfile.TemporaryDirectory(prefix="veza-kube-") as folder:
        cert = creds.cert_file or _private_file(Path(folder) / "client.crt", creds.cert_data or "")
        key = creds.key_file or _private_file(Path(folder) / "client.key", creds.key_data or "")
        ctx.load_cert_chain(cert, key)


def _private_file(path: Path, text: str) -> str:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return str(path)


class ApiClient:
    """JSON over HTTPS to one API server (thread-safe; see the module doc)."""

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0, user_agent: str = "veza-sandbox",
                 pool_size: int = 8) -> None:
        self.credentials = credentials
        self.server = credentials.server.rstrip("/")
        self.timeout = timeout
        self._headers = {"User-Agent": user_agent, "Accept": "application/json"}
        if credentials.token:
            self._headers["Authorization"] = f"Bearer {credentials.token}"
        # block=False: watches hold connections for minutes; a burst beyond pool_size opens more
        # (and drops them afterwards) rather than waiting behind a watch.
        self._pool = urllib3.PoolManager(num_pools=4, maxsize=pool_size, block=False,
                                         ssl_context=credentials.ssl_context(), retries=False)

    def close(self) -> None:
        self._pool.clear()

    def request(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
                content_type: str = "application/json", timeout: float | None = None) -> Any:
        """Send one request; the decoded JSON answer (None when empty). Non-2xx raises ApiError."""
        response = self.open(method, path, query=query, body=body, content_type=content_type, timeout=timeout,
                             stream=False)
        data = response.data
        return json.loads(data) if data else None

    def open(self, method: str, path: str, *, query: Mapping[str, Any] | None = None, body: Any = None,
             content_type: str = "application/json", timeout: float | None = None,
             stream: bool = True) -> urllib3.BaseHTTPResponse:
        """Send one request; the response, unread when ``stream`` (a watch, a log). Non-2xx raises."""
        headers = dict(self._headers)
        payload: bytes | None = None
        if body is not None:
            payload = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        url = self.server + path
        fields = {k: _query_value(v) for k, v in (query or {}).items() if v is not None}
        if fields:
            url += "?" + urlencode(fields)
        read = timeout if timeout is not None else self.timeout
        try:
            response = self._pool.request(method, url, body=payload, headers=headers, preload_content=not stream,
                                          redirect=False, timeout=urllib3.Timeout(connect=min(10.0, read), read=read))
        except (urllib3.exceptions.HTTPError, OSError, socket.timeout) as e:
            raise Unreachable(f"{method} {self.server}{path}: {_describe(e)}") from None
        if response.status >= 300:
            data = response.read() if stream else response.data
            response.release_conn()
            raise ApiError.from_response(response.status, data or b"")
        return response


def _query_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _describe(error: BaseException) -> str:
    reason = getattr(error, "reason", None)
    return str(reason or error) or type(error).__name__
