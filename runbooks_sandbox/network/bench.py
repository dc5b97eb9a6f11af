"""What a forwarder adds to a request: ``python -m runbooks_sandbox.network.bench [--requests N]``.

A minimal HTTP/1.1 server runs inside a throw-away cluster network, on a pod address. The same
client then sends N small requests three ways: directly (from a thread inside the namespace: the
baseline), through the forwarder run as its own process (how the sandbox runs it), and through a
forwarder embedded in the client's process (sharing its GIL); each over one kept-alive
connection and with a new connection per request, then with 50 concurrent kept-alive
connections (throughput) and as one bulk transfer. Needs root (it creates a namespace).
"""
from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Callable

from ..servers.ports import wait_for_port
from .forward import Forwarder, ForwarderProcess, Rule
from .namespace import ClusterNetwork

__all__ = ["main"]

PORT = 8080
BODY = b"ok\n"
REQUEST = b"GET / HTTP/1.1\r\nHost: bench\r\n\r\n"
REQUEST_CLOSE = b"GET / HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
RESPONSE_LEN = 0  # set from the server's first answer

# The server: asyncio, fixed answer, keep-alive; /bulk/N answers N bytes.
SERVER = r"""
import asyncio, sys
BODY = b"ok\n"
async def serve(reader, writer):
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            path = head.split(b" ", 2)[1]
            if path.startswith(b"/bulk/"):
                n = int(path[6:])
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % n)
                chunk = b"x" * 65536
                while n > 0:
                    writer.write(chunk[:min(n, 65536)]); n -= 65536
                    await writer.drain()
            else:
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n" + BODY)
            if b"onnection: close" in head:
                break
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()
async def main():
    server = await asyncio.start_server(serve, sys.argv[1], int(sys.argv[2]), backlog=1024)
    await server.serve_forever()
asyncio.run(main())
"""


def _read_response(sock: socket.socket, expected: int) -> None:
    got = 0
    while got < expected:
        data = sock.recv(65536)
        if not data:
            raise ConnectionError("closed mid-response")
        got += len(data)


def keep_alive(address: tuple[str, int], n: int) -> list[float]:
    """Per-request latencies (s) of n requests over one connection."""
    times = []
    with socket.create_connection(address) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for _ in range(n):
            start = time.perf_counter()
            sock.sendall(REQUEST)
            _read_response(sock, RESPONSE_LEN)
            times.append(time.perf_counter() - start)
    return times


def new_connections(address: tuple[str, int], n: int) -> list[float]:
    """Per-request latencies (s) of n requests, each on a new connection (connect included)."""
    times = []
    for _ in range(n):
        start = time.perf_counter()
        with socket.create_connection(address) as sock:
            sock.sendall(REQUEST_CLOSE)
            _read_response(sock, RESPONSE_LEN)
        times.append(time.perf_counter() - start)
    return times


def concurrent(address: tuple[str, int], connections: int, per_connection: int) -> float:
    """Requests per second with ``connections`` kept-alive connections in parallel."""
    threads = [threading.Thread(target=keep_alive, args=(address, per_connection)) for _ in range(connections)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return connections * per_connection / (time.perf_counter() - start)


def bulk(address: tuple[str, int], size: int) -> float:
    """MB/s of one ``size``-byte response."""
    start = time.perf_counter()
    with socket.create_connection(address) as sock:
        sock.sendall(b"GET /bulk/%d HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n" % size)
        while sock.recv(1 << 20):
            pass
    return size / (time.perf_counter() - start) / 1e6


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _summary(times: list[float]) -> str:
    ms = sorted(t * 1000 for t in times)
    return (f"mean {statistics.fmean(ms):.3f} ms, p50 {ms[len(ms) // 2]:.3f}, p99 {ms[int(len(ms) * 0.99)]:.3f}, "
            f"{len(ms) / (sum(ms) / 1000):.0f} req/s")


def run(requests: int, out: Callable[[str], None] = print) -> dict[str, dict[str, float]]:
    global RESPONSE_LEN
    RESPONSE_LEN = len(b"HTTP/1.1 200 OK\r\ncontent-length: 3\r\n\r\n" + BODY)
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="veza-netbench-") as state:
        network = ClusterNetwork(Path(state)).create()
        server = None
        process = ForwarderProcess(Path(state))
        try:
            pod = network.allocate_pod_ip("bench/server")
            server = subprocess.Popen(network.exec_argv([sys.executable, "-c", SERVER, pod, str(PORT)]))
            if not network.call(wait_for_port, PORT, pod, 10.0):
                raise RuntimeError("the bench server did not start")
            process.start()
            via_process = process.add(Rule.inward("bench", pod, PORT))
            embedded = Forwarder(network).start()
            via_embedded = embedded.add(Rule.inward("bench", pod, PORT))
            ways: dict[str, Callable[[Callable[..., object], tuple[object, ...]], object]] = {
                "direct (inside)": lambda fn, args: network.call(fn, (pod, PORT), *args, timeout=600),
                "forwarder process": lambda fn, args: fn(via_process, *args),
                "forwarder embedded": lambda fn, args: fn(via_embedded, *args),
            }
            forwarder_pid = process.running_pid() or 0
            for way, call in ways.items():
                call(keep_alive, (50,))  # warm up
                cpu_before = _cpu_seconds(forwarder_pid)
                ka = call(keep_alive, (requests,))
                if way == "forwarder process":
                    out(f"forwarder process CPU: {(_cpu_seconds(forwarder_pid) - cpu_before) / requests * 1e6:.0f} "
                        "µs per kept-alive request")
                nc = call(new_connections, (requests,))
                rps = call(concurrent, (50, max(1, requests // 10)))
                mbs = call(bulk, (200_000_000,))
                assert isinstance(ka, list) and isinstance(nc, list)
                results[way] = {"keepalive_mean_ms": statistics.fmean(ka) * 1000,
                                "new_conn_mean_ms": statistics.fmean(nc) * 1000,
                                "concurrent_rps": float(rps), "bulk_MBps": float(mbs)}  # type: ignore[arg-type]
                out(f"{way}:\n  keep-alive   {_summary(ka)}\n  new conn     {_summary(nc)}\n"
                    f"  50 conns     {rps:.0f} req/s\n  bulk 200 MB  {mbs:.0f} MB/s")
            embedded.stop()
        finally:
            process.stop()
            if server is not None:
                server.terminate()
                server.wait(10)
            network.delete(kill=True)
    base = results["direct (inside)"]
    for way in ("forwarder process", "forwarder embedded"):
        r = results[way]
        out(f"{way} adds {r['keepalive_mean_ms'] - base['keepalive_mean_ms']:.3f} ms per kept-alive request, "
            f"{r['new_conn_mean_ms'] - base['new_conn_mean_ms']:.3f} ms per new connection")
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbooks_sandbox.network.bench")
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    run(args.requests)
    return 0


if __name__ == "__main__":
    sys.exit(main())
