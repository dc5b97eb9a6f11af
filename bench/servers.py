"""Start and stop times and resident memory of the sandbox's real servers.

    .venv/bin/python bench/servers.py [--rounds 3]

Prints, per server, the median start time (until usable: OpenBao unsealed and seeded,
PostgreSQL primary seeded and standby streaming, Prometheus serving with rules loaded),
the median stop time, and the memory (RSS, with PostgreSQL's backends) at rest. Also the
time until Prometheus reports a first target up (its discovery batches updates).
"""
from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import psutil
from prometheus_client import CollectorRegistry, Counter, start_http_server

from runbooks_sandbox.servers import OpenBaoServer, PostgresCluster, PrometheusServer
from runbooks_sandbox.servers.ports import free_port


def _rss_mb(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            total += proc.memory_info().rss + sum(c.memory_info().rss for c in proc.children(recursive=True))
        except psutil.Error:
            pass
    return total / 2**20


def _sd_server(target: str) -> ThreadingHTTPServer:
    body = json.dumps([{"targets": [target], "labels": {
        "__meta_kubernetes_pod_ip": target.split(":")[0], "__meta_kubernetes_pod_name": "bench-pod",
        "__meta_kubernetes_namespace": "veza-sandbox", "__meta_kubernetes_pod_label_app": "bench"}}]).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    rounds = parser.parse_args().rounds

    registry = CollectorRegistry()
    Counter("http_requests_total", "Requests", ["code", "method", "route"], registry=registry)
    metrics_port = free_port()
    metrics, _ = start_http_server(metrics_port, "127.0.0.1", registry=registry)
    sd = _sd_server(f"127.0.0.1:{metrics_port}")
    sd_url = f"http://127.0.0.1:{sd.server_address[1]}/sd"

    timings: dict[str, dict[str, list[float]]] = {
        name: {"start": [], "stop": [], "rss": []} for name in ("openbao", "postgres", "prometheus")}
    first_up: list[float] = []
    for _ in range(rounds):
        state = Path(tempfile.mkdtemp(prefix="veza-bench-"))
        state.chmod(0o755)
        try:
            servers = {
                "openbao": OpenBaoServer(state),
                "postgres": PostgresCluster(state),
                "prometheus": PrometheusServer(state, sd_url=sd_url, metrics_port=metrics_port),
            }
            for name, server in servers.items():
                began = time.perf_counter()
                server.start()
                if name == "openbao":
                    server.seed()
                timings[name]["start"].append(time.perf_counter() - began)
            began = time.perf_counter()
            servers["prometheus"].wait_for_targets_up(1, timeout=60)
            first_up.append(time.perf_counter() - began)
            time.sleep(1)  # at rest
            timings["openbao"]["rss"].append(_rss_mb([servers["openbao"].status()["pid"]]))
            pg = servers["postgres"].status()
            timings["postgres"]["rss"].append(_rss_mb([pg["primary"]["pid"], pg["standby"]["pid"]]))
            timings["prometheus"]["rss"].append(_rss_mb([servers["prometheus"].status()["pid"]]))
            for name, server in servers.items():
                began = time.perf_counter()
                server.stop()
                timings[name]["stop"].append(time.perf_counter() - began)
        finally:
            for cls in (OpenBaoServer, PostgresCluster):
                cls(state).stop()
            PrometheusServer(state).stop()
            shutil.rmtree(state, ignore_errors=True)
    metrics.shutdown()
    sd.shutdown()

    print(f"sandbox servers, median of {rounds} rounds")
    print(f"{'server':<12}{'start s':>10}{'stop s':>10}{'RSS MB':>10}")
    for name, figures in timings.items():
        print(f"{name:<12}{statistics.median(figures['start']):>10.2f}"
              f"{statistics.median(figures['stop']):>10.2f}{statistics.median(figures['rss']):>10.1f}")
    print(f"prometheus first target up after start: {statistics.median(first_up):.2f} s")
    total_rss = sum(statistics.median(f["rss"]) for f in timings.values())
    print(f"total RSS at rest: {total_rss:.1f} MB")


if __name__ == "__main__":
    main()
