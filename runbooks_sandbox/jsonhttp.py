"""The sandbox's small loopback endpoints (http_sd, traffic, faults, webhook sink): JSON replies,
and the guard of those that change something or keep what they are sent.

A guarded endpoint takes a JSON body only with ``Content-Type: application/json`` (415 else): a
web page can make a browser POST a form or ``text/plain`` to 127.0.0.1 without asking anyone,
but not JSON. And it answers only a caller that shows the sandbox's token (401 else, compared in
constant time): any local process could reach it otherwise.
"""
from __future__ import annotations

import hmac
import json
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["send_json", "bearer", "refused", "is_json", "read_json", "MAX_BODY"]

MAX_BODY = 64 * 1024


def send_json(handler: BaseHTTPRequestHandler, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
    """Write ``body`` as a complete application/json response with its length."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


def bearer(token: str) -> dict[str, str]:
    """The header a client of a guarded endpoint sends."""
    return {"Authorization": f"Bearer {token}"}


def is_json(handler: BaseHTTPRequestHandler) -> bool:
    media = (handler.headers.get("Content-Type") or "").split(";", 1)[0].strip().lower()
    return media == "application/json"


def _has_token(handler: BaseHTTPRequestHandler, token: str) -> bool:
    given = handler.headers.get("Authorization") or ""
    return hmac.compare_digest(given.encode(), f"Bearer {token}".encode())


def refused(handler: BaseHTTPRequestHandler, token: str, *, body: bool) -> bool:
    """Answer 415 (a body that is not declared JSON) or 401 (no token, or another) and say True;
    False when the request may go on. What is sent is checked before who sends it, so that a
    browser's form post is a 415 whoever it claims to be."""
    if body and not is_json(handler):
        send_json(handler, 415, {"error": "send JSON with Content-Type: application/json"})
        return True
    if not _has_token(handler, token):
        send_json(handler, 401, {"error": "the sandbox's token is required (Authorization: Bearer, from "
                                          "control-token in the state directory)"},
                  {"WWW-Authenticate": 'Bearer realm="veza-sandbox"'})
        return True
    return False


def read_json(handler: BaseHTTPRequestHandler, limit: int = MAX_BODY) -> Any:
    """The request's JSON body ({} when empty); ValueError when it is not JSON or too large."""
    length = int(handler.headers.get("Content-Length") or 0)
    if length > limit:
        raise ValueError(f"body of {length} bytes, more than {limit}")
    return json.loads(handler.rfile.read(length) or b"{}")
