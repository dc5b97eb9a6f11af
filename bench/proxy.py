"""Service proxy figures: requests/s through a Service and the latency the proxy adds.

Three workload pods behind one Service (process runtime, in-process store); the same requests
are sent straight to a pod and through the Service's cluster IP, over kept-alive connections,
one client and then several at once. Prints figures; asserts nothing.

    .venv/bin/python bench/proxy.py [--seconds 3] [--clients 8]
"""
from __future__ import annotations

import argparse
import http.client
import statistics
import threading
import time

from runbooks_sandbox.models.resources import NAMESPACES, PODS, SERVICES
from runbooks_sandbox.models.store import MemoryStore
from runbooks_sandbox.runtime.pods import ProcessRuntime
from runbooks_sandbox.runtime.proxy import ServiceProxy

NAMESPACE = "bench"


def client_loop(address: tuple[str, int], seconds: float, latencies: list[float]) -> None:
    connection = http.client.HTTPConnection(*address, timeout=10)
    deadline = time.perf_counter() + seconds
    while (started := time.perf_counter()) < deadline:
        connection.request("GET", "/api/v1/tracks")
        response = connection.getresponse()
        response.read()
        latencies.append(time.perf_counter() - started)
    connection.close()


def measure(label: str, address: tuple[str, int], seconds: float, clients: int) -> float:
    per_client: list[list[float]] = [[] for _ in range(clients)]
    threads = [threading.Thread(target=client_loop, args=(address, seconds, lat)) for lat in per_client]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    latencies = sorted(x for lat in per_client for x in lat)
    p50 = statistics.median(latencies) * 1000
    p99 = latencies[int(len(latencies) * 0.99) - 1] * 1000
    print(f"{label:<36} {len(latencies) / elapsed:7.0f} req/s   p50 {p50:6.2f} ms   p99 {p99:6.2f} ms")
    return p50


def start_pods(store: MemoryStore, count: int) -> list[tuple[str, int]]:
    for i in range(count):
        store.create(PODS, NAMESPACE, {"metadata": {"name": f"api-{i}", "labels": {"app": "api"}}, "spec": {"containers": [{
            "name": "backend", "image": "registry.veza.app/veza-backend-api:v1.4.0",
            "ports": [{"containerPort": 8080}],
            "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 1}}]}})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        pods = store.list(PODS, NAMESPACE)[0]
        if all(c.get("ready") for p in pods for c in p["status"].get("containerStatuses") or [{}]):
            return [(p["status"]["podIP"], 8080) for p in pods]
        time.sleep(0.1)
    raise SystemExit("pods did not become ready")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--clients", type=int, default=8)
    args = parser.parse_args()
    store = MemoryStore()
    store.create(NAMESPACES, None, {"metadata": {"name": NAMESPACE}})
    runtime, proxy = ProcessRuntime(time_scale=0.1), ServiceProxy()
    runtime.start(store)
    proxy.start(store)
    try:
        pods = start_pods(store, 3)
        store.create(SERVICES, NAMESPACE, {"metadata": {"name": "api"}, "spec": {
            "selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": 8080}]}})
        service = proxy.address(NAMESPACE, "api")
        print(f"3 pods, Service at {service[0]}:{service[1]}; {args.seconds:g} s per figure")
        direct = measure("direct to one pod, 1 client", pods[0], args.seconds, 1)
        proxied = measure("through the Service, 1 client", service, args.seconds, 1)
        print(f"{'latency added by the proxy (p50)':<36} {proxied - direct:7.2f} ms")
        measure(f"direct to one pod, {args.clients} clients", pods[0], args.seconds, args.clients)
        measure(f"through the Service, {args.clients} clients", service, args.seconds, args.clients)
        print(f"proxy counters: {dict(proxy.stats)}")
    finally:
        proxy.stop()
        runtime.stop()


if __name__ == "__main__":
    main()
