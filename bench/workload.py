"""Throughput of one sandbox workload process and of the load generator.

    .venv/bin/python bench/workload.py [--seconds 3]

Prints: start-up time of a workload; requests/s one workload serves to keep-alive clients (the
clients run in this process, on the same 2 cores, so it is a lower bound), with and without the
per-request access log; and, for a few asked rates, the rate the load generator achieves, its
dropped requests and the p99 it measures.
"""
from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from runbooks_sandbox.runtime.load import LoadGenerator  # noqa: E402
from runbooks_sandbox.workload.launch import start_workload  # noqa: E402

IMAGE = "registry.veza.app/veza-backend-api:v1.4.0"


def serve_rate(url: str, seconds: float, clients: int) -> float:
    """Requests/s served to `clients` threads each looping over one kept-alive connection."""
    host, port = url.removeprefix("http://").rsplit(":", 1)
    counts = [0] * clients
    stop = threading.Event()

    def client(index: int) -> None:
        conn = http.client.HTTPConnection(host, int(port), timeout=10)
        while not stop.is_set():
            conn.request("GET", "/api/v1/tracks")
            conn.getresponse().read()
            counts[index] += 1
        conn.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def generator_rate(url: str, rate: float, seconds: float) -> tuple[float, int, float | None]:
    """(achieved requests/s, dropped, p99 ms) of the load generator asked for `rate`."""
    generator = LoadGenerator({"veza-backend-api": url}, rate_per_s=rate, timeout_s=2)
    generator.start()
    time.sleep(seconds)
    generator.stop()
    summary = generator.report()["veza-backend-api"]
    p99 = max((v["p99_ms"] for v in summary["by_version"].values()), default=None)
    return summary["requests"] / seconds, generator.dropped, p99


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        started = time.perf_counter()
        quiet = start_workload(IMAGE, Path(tmp) / "quiet.log", host="127.0.0.61", access_log=False)
        print(f"workload start-up (spawn to listening): {(time.perf_counter() - started) * 1000:.0f} ms")
        logged = start_workload(IMAGE, Path(tmp) / "logged.log", host="127.0.0.62")
        try:
            for clients in (1, 4, 16):
                print(f"one workload, {clients:2d} keep-alive clients: "
                      f"{serve_rate(quiet.url, args.seconds, clients):6.0f} req/s (no access log), "
                      f"{serve_rate(logged.url, args.seconds, clients):6.0f} req/s (access log)")
            for rate in (100, 300, 1000, 3000):
                achieved, dropped, p99 = generator_rate(quiet.url, rate, args.seconds)
                print(f"load generator asked {rate:5d}/s: achieved {achieved:6.0f}/s, "
                      f"dropped {dropped}, p99 {p99} ms")
        finally:
            quiet.stop()
            logged.stop()


if __name__ == "__main__":
    main()
