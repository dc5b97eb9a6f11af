"""The HTTP server: a stdlib ThreadingHTTPServer whose handler only moves bytes.

Parsing and rendering live in ``responses``; this module writes status lines, headers, bodies
and the chunked framing of watches, and turns unexpected exceptions into 500 Status bodies.
"""
from __future__ import annotations

import json
import logging
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from ..models.errors import ApiError
from .responses import Backend, Request, Response, handle
from .watch import ChunkedWriter

log = logging.getLogger(__name__)


class ApiHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def __init__(self, address: tuple[str, int], backend: Backend) -> None:
        super().__init__(address, _Handler)
        self.backend = backend


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive and chunked watches
    # Headers and body go out in separate writes; with Nagle on, the client's delayed ACK adds
    # ~40 ms to every response.
    disable_nagle_algorithm = True
    server: ApiHTTPServer

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        try:
            # A drill's fault (runbooks_sandbox.http.faults) answers first, as an overloaded server would.
            faults, path = self.server.backend.faults, self.path.split("?")[0]
            response = faults.before(self.command, path) or faults.after(
                self.command, path, handle(self.server.backend, Request.parse(self.command, self.path, self.headers, body)),
                dry_run="dryRun=All" in self.path)
        except Exception:  # a bug in the sandbox: say so in a Status, keep serving
            log.error("500 on %s %s\n%s", self.command, self.path, traceback.format_exc())
            error = ApiError("internal error in the sandbox API server; see its log")
            response = Response(500, error.status())
        if response.code == 0:  # a drill's lost answer (http.faults): close without a word
            self.close_connection = True
        elif response.stream is not None:
            self._stream(response)
        else:
            self._send(response)

    def _send(self, response: Response) -> None:
        if isinstance(response.body, str):
            data = response.body.encode()
        else:
            data = json.dumps(response.body, separators=(",", ":")).encode()
        self.send_response(response.code)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, response: Response) -> None:
        self.send_response(200)
        self.send_header("Content-Type", response.content_type)
        self.send_header("Transfer-Encoding", "chunked")
        self.send_header("Cache-Control", "no-cache, private")
        self.end_headers()
        writer = ChunkedWriter(self.wfile)
        try:
            response.stream(writer, self.connection)
            writer.end()
        except (BrokenPipeError, ConnectionResetError):
            pass
        self.close_connection = True

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: object) -> None:
        log.debug("%s - %s", self.address_string(), format % args)
