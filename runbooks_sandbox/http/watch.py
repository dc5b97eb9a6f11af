"""Watch responses: chunked JSON lines ``{"type": ..., "object": ...}``, as the API server sends.

No (or 0) resourceVersion starts with synthetic ADDED events; BOOKMARKs are sent only when the
client allows them; the stream ends at ``timeoutSeconds``; a too-old resourceVersion gives one
ERROR event carrying a 410 Expired Status. For ``kubectl get -w`` each object is rendered as a
one-row Table (column definitions in the first event only, as the API server does).
"""
from __future__ import annotations

import json
import select
import socket
import time
from typing import Any, Callable

from ..models.api import StoreEvent
from ..models.errors import ApiError, Gone
from ..models.watch import Watcher

Obj = dict[str, Any]
DEFAULT_TIMEOUT_S = 1800.0
POLL_TICK_S = 1.0


def client_gone(sock: socket.socket) -> bool:
    """True when the client closed its side (a readable socket with nothing to read)."""
    try:
        readable, _, _ = select.select([sock], [], [], 0)
        return bool(readable) and sock.recv(1, socket.MSG_PEEK) == b""
    except OSError:
        return True


class ChunkedWriter:
    """Writes HTTP/1.1 chunks of one JSON document per line."""

    def __init__(self, wfile: Any) -> None:
        self._wfile = wfile

    def event(self, kind: str, obj: Obj) -> None:
        data = json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"
        self._wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self._wfile.flush()

    def raw(self, data: bytes) -> None:
        """One chunk of bytes as they are (a followed log's text)."""
        if data:
            self._wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self._wfile.flush()

    def end(self) -> None:
        self._wfile.write(b"0\r\n\r\n")
        self._wfile.flush()


def stream_events(
    writer: ChunkedWriter, sock: socket.socket, open_watch: Callable[[], Watcher], *,
    render: Callable[[StoreEvent], Obj], bookmark: Callable[[int], Obj] | None,
    timeout_s: float, bookmark_interval_s: float,
) -> None:
    """Stream events until the timeout, the client leaving, or the store closing."""
    try:
        watcher = open_watch()
    except Gone as error:
        writer.event("ERROR", error.status())
        return
    deadline = time.monotonic() + timeout_s
    last_bookmark = time.monotonic()
    try:
        while (remaining := deadline - time.monotonic()) > 0:
            tick = min(remaining, POLL_TICK_S, bookmark_interval_s if bookmark else POLL_TICK_S)
            try:
                event = watcher.poll(tick)
            except ApiError as error:  # fell behind the kept history
                writer.event("ERROR", error.status())
                return
            if event is not None:
                writer.event(event.type, render(event))
                continue
            if watcher.closed or client_gone(sock):
                return
            if bookmark and time.monotonic() - last_bookmark >= bookmark_interval_s:
                writer.event("BOOKMARK", bookmark(watcher.resource_version))
                last_bookmark = time.monotonic()
    finally:
        watcher.close()
