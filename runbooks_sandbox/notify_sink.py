"""The sandbox's webhook sink: a Slack-compatible incoming webhook that keeps what it receives.

Runbooks send incident notices to ``NOTIFY_URL`` (``.sandbox/env``; the sandbox profile's default
``notify`` target). The sink answers ``ok`` as Slack does and keeps every message in memory,
with any token shape it recognises flagged, so drills and tests read back exactly what was
sent (``GET /notifications``, ``runbook sandbox notifications --json``) and can prove that no
secret left the runbook.
"""
from __future__ import annotations

import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .jsonhttp import send_json

__all__ = ["WebhookSink", "HOOK_PATH"]

HOOK_PATH = "/hooks/incidents"
_MAX_MESSAGES = 1000
_MAX_BODY = 64 * 1024


class WebhookSink:
    """One sink on a loopback port."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host, self.port = host, 0
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """Where runbooks post (NOTIFY_URL)."""
        return f"http://{self.host}:{self.port}{HOOK_PATH}"

    @property
    def report_url(self) -> str:
        return f"http://{self.host}:{self.port}/notifications"

    def start(self) -> "WebhookSink":
        server = ThreadingHTTPServer((self.host, 0), _SinkHandler)
        server.daemon_threads = True
        server.sink = self  # type: ignore[attr-defined]
        self.port = int(server.server_address[1])
        threading.Thread(target=server.serve_forever, name="webhook-sink", daemon=True).start()
        self._server = server
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def keep(self, path: str, raw: bytes) -> dict[str, Any]:
        from runbooks_lib.records.redaction import find_shapes

        text = raw.decode("utf-8", "replace")
        try:
            body: Any = json.loads(text)
        except ValueError:
            body = text
        message = {
            "received_at": datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "path": path, "text": body.get("text") if isinstance(body, dict) else text, "body": body,
            # A token shape in a notice is a leak the runbook should have masked: flag it.
            "secret_shapes": sorted({hit.shape for hit in find_shapes(text)}),
        }
        with self.lock:
            self.messages.append(message)
            del self.messages[:-_MAX_MESSAGES]
        return message


class _SinkHandler(BaseHTTPRequestHandler):
    server: ThreadingHTTPServer

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            self._text(413, "too large")
            return
        self.server.sink.keep(self.path, self.rfile.read(length))  # type: ignore[attr-defined]
        self._text(200, "ok")  # Slack's answer

    def do_GET(self) -> None:
        sink = self.server.sink  # type: ignore[attr-defined]
        if self.path.split("?")[0] != "/notifications":
            send_json(self, 404, {"error": "try GET /notifications, or POST a message"})
            return
        with sink.lock:
            send_json(self, 200, list(sink.messages))

    def _text(self, code: int, text: str) -> None:
        data = text.encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        pass
