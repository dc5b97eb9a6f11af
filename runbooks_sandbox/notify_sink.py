"""The sandbox's webhook sink: a Slack-compatible incoming webhook that keeps what it receives.

Runbooks send incident notices to ``NOTIFY_URL`` (``.sandbox/env``; the sandbox profile's default
``notify`` target). The sink answers ``ok`` as Slack does and keeps every message in memory,
with any token shape it recognises flagged, so drills and tests read back exactly what was
sent (``GET /notifications``, ``runbook sandbox notifications --json``) and can prove that no
secret left the runbook.

As a Slack incoming webhook's, its URL is its secret: it takes posts only under
``/hooks/<notify token>/...`` (the runbooks' notifier posts to a URL, nothing else), only as
``application/json`` (415 else: a browser's form post), and 401 for any other path. What it
kept is read with the control token (``Authorization: Bearer``), and the path it keeps has the
token taken out (:mod:`.tokens`).
"""
from __future__ import annotations

import hmac
import json
import threading
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from .jsonhttp import is_json, refused, send_json

__all__ = ["WebhookSink", "HOOK_PATH", "hook_url"]

HOOK_PATH = "/hooks/incidents"
_MAX_MESSAGES = 1000
_MAX_BODY = 64 * 1024


def hook_url(base: str, token: str) -> str:
    """Where runbooks post (NOTIFY_URL): the sink's address with its token in the path."""
    return f"{base.rstrip('/')}/hooks/{token}/incidents"


class WebhookSink:
    """One sink on a loopback port."""

    def __init__(self, token: str, reader_token: str, host: str = "127.0.0.1") -> None:
        if not token or not reader_token or token == reader_token:
            raise ValueError("the webhook sink takes two different, non-empty tokens (post, read)")
        self.host, self.port = host, 0
        self.token, self.reader_token = token, reader_token
        self.messages: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def base_url(self) -> str:
        """The sink's address, without its token (what may go into a 0644 status file)."""
        return f"http://{self.host}:{self.port}"

    @property
    def url(self) -> str:
        """Where runbooks post (NOTIFY_URL): holds the token, so only into the 0600 env file."""
        return hook_url(self.base_url, self.token)

    @property
    def report_url(self) -> str:
        return f"{self.base_url}/notifications"

    def hook_path(self, path: str) -> str | None:
        """``path`` with the token taken out (``/hooks/incidents``), or None when it does not hold it."""
        prefix = f"/hooks/{self.token}"
        head, rest = path[:len(prefix)], path[len(prefix):]
        if not hmac.compare_digest(head.encode(), prefix.encode()) or rest[:1] not in ("/", ""):
            return None
        return "/hooks" + rest

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
        sink = self.server.sink  # type: ignore[attr-defined]
        length = int(self.headers.get("Content-Length") or 0)
        if not is_json(self):
            self._text(415, "send JSON with Content-Type: application/json")
            return
        kept_path = sink.hook_path(self.path)
        if kept_path is None:
            self._text(401, "invalid_token")  # Slack's answer to a webhook URL it does not know
            return
        if length > _MAX_BODY:
            self._text(413, "too large")
            return
        sink.keep(kept_path, self.rfile.read(length))
        self._text(200, "ok")  # Slack's answer

    def do_GET(self) -> None:
        sink = self.server.sink  # type: ignore[attr-defined]
        if refused(self, sink.reader_token, body=False):
            return
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
