"""The fault proxy's admin endpoint: set, clear and describe the faults (HTTP on 127.0.0.1).

Any local process could reach it, and a web page in a browser on this machine could POST to
it, so every request needs ``Authorization: Bearer <token>`` with the token of the proxy's
``admin-token`` file (0600, made at each start; :mod:`runbooks_sandbox.tokens` does the same
for the sandbox's control endpoint). Routes, JSON both ways:

- ``GET /faults``: the settings in force and the counters (``refused``, ``writes_failed``,
  ``writes_left``);
- ``PUT /faults`` (or POST) with :class:`.FaultSettings` fields: those faults replace the ones
  in force (an omitted field is no fault); answers as GET;
- ``DELETE /faults``: no faults; answers as GET;
- ``GET /healthz``: ``{"ok": true}`` (still with the token: it says the caller holds the right one).
"""
from __future__ import annotations

import hmac
import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .faults import FaultSettings, Faults

__all__ = ["AdminServer"]

_MAX_BODY = 64 * 1024


class AdminServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, address: tuple[str, int], *, faults: Faults, token: str) -> None:
        if not token:
            raise ValueError("the admin endpoint needs a token")
        self.faults, self.token = faults, token
        super().__init__(address, AdminHandler)


class AdminHandler(BaseHTTPRequestHandler):
    server: AdminServer

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the base class's name)
        sys.stderr.write(f"fault proxy admin: {format % args}\n")

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass

    def _authorized(self) -> bool:
        sent = self.headers.get("Authorization", "")
        expected = f"Bearer {self.server.token}"
        if hmac.compare_digest(sent.encode(), expected.encode()):
            return True
        self._reply(401, {"error": "this endpoint needs Authorization: Bearer <the token in the proxy's "
                                   "admin-token file>"})
        return False

    def _reply(self, code: int, doc: dict[str, Any]) -> None:
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _route(self) -> bool:
        path = self.path.split("?")[0]
        if path == "/healthz" and self.command == "GET":
            self._reply(200, {"ok": True})
            return False
        if path != "/faults":
            self._reply(404, {"error": f"no such route {path}; the routes are /faults and /healthz"})
            return False
        return True

    def do_GET(self) -> None:
        if self._authorized() and self._route():
            self._reply(200, self.server.faults.describe())

    def do_DELETE(self) -> None:
        if self._authorized() and self._route():
            self._reply(200, self.server.faults.clear())

    def do_PUT(self) -> None:
        if not (self._authorized() and self._route()):
            return
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._reply(413, {"error": "fault settings are a small JSON object"})
            return
        try:
            doc = json.loads(self.rfile.read(length) or b"{}")
            if not isinstance(doc, dict):
                raise ValueError("fault settings must be a JSON object")
            settings = FaultSettings.from_json(doc)
        except ValueError as e:
            self._reply(400, {"error": str(e)})
            return
        self.log_message("faults set: %s", json.dumps(doc, sort_keys=True))
        self._reply(200, self.server.faults.set(settings))

    do_POST = do_PUT
