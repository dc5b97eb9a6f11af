"""One JSON reply for the sandbox's small loopback endpoints (http_sd, traffic, faults)."""
from __future__ import annotations

import json
from http.server import BaseHTTPRequestHandler
from typing import Any

__all__ = ["send_json"]


def send_json(handler: BaseHTTPRequestHandler, code: int, body: Any) -> None:
    """Write ``body`` as a complete application/json response with its length."""
    data = json.dumps(body).encode()
    handler.send_response(code)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    handler.end_headers()
    handler.wfile.write(data)
