"""Sandbox API server figures: requests/s for GET and PATCH, watch event latency, and the time
for a 3-replica rolling update with instant readiness. Prints figures; asserts nothing.

    .venv/bin/python bench/apiserver.py [--seconds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

from kubernetes import client, config, watch

from runbooks_sandbox.apiserver import ApiServer
from runbooks_sandbox.models.instant_runtime import InstantRuntime


def rate(label: str, seconds: float, call) -> None:  # type: ignore[no-untyped-def]
    count, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        call(count)
        count += 1
    elapsed = time.perf_counter() - started
    print(f"{label:<44} {count / elapsed:8.0f} req/s  ({count} in {elapsed:.1f} s)")


def watch_latency(core: client.CoreV1Api, samples: int = 50) -> list[float]:
    """Write a ConfigMap, measure until the watching client has the event."""
    received: dict[str, float] = {}
    ready = threading.Event()
    w = watch.Watch()

    def consume() -> None:
        ready.set()
        for event in w.stream(core.list_namespaced_config_map, "default", resource_version=rv, timeout_seconds=30):
            name = event["object"].metadata.name
            received[name] = time.perf_counter()
            if name == f"lat-{samples - 1}":
                w.stop()

    rv = core.list_namespaced_config_map("default").metadata.resource_version
    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    ready.wait()
    sent: dict[str, float] = {}
    for n in range(samples):
        name = f"lat-{n}"
        sent[name] = time.perf_counter()
        core.create_namespaced_config_map("default", {"metadata": {"name": name}})
        time.sleep(0.01)
    thread.join(timeout=30)
    return [(received[k] - sent[k]) * 1000 for k in sent if k in received]


def rolling_update_time(apps: client.AppsV1Api) -> float:
    body = {"metadata": {"name": "roll"}, "spec": {
        "replicas": 3, "selector": {"matchLabels": {"app": "roll"}},
        "strategy": {"rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
        "template": {"metadata": {"labels": {"app": "roll"}},
                     "spec": {"containers": [{"name": "c", "image": "app:1"}]}}}}
    apps.create_namespaced_deployment("default", body)
    wait_complete(apps, generation=1)
    started = time.perf_counter()
    apps.patch_namespaced_deployment("roll", "default", {"spec": {"template": {"spec": {
        "containers": [{"name": "c", "image": "app:2"}]}}}})
    wait_complete(apps, generation=2)
    return time.perf_counter() - started


def wait_complete(apps: client.AppsV1Api, generation: int, timeout: float = 30) -> None:
    """The condition kubectl rollout status waits for."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = apps.read_namespaced_deployment_status("roll", "default")
        s = d.status
        if (s.observed_generation or 0) >= generation and s.updated_replicas == 3 and s.replicas == 3 \
                and s.available_replicas == 3:
            return
        time.sleep(0.005)
    raise TimeoutError("rollout did not complete")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0, help="duration of each rate measurement")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, \
            ApiServer(port=0, kubeconfig=Path(tmp) / "config", runtime=InstantRuntime(ready_after=0.0)) as server:
        api = config.new_client_from_config(config_file=str(server.kubeconfig))
        core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
        core.create_namespaced_config_map("default", {"metadata": {"name": "bench"}, "data": {"n": "0"}})
        rate("GET configmap (official client, keep-alive)", args.seconds,
             lambda n: core.read_namespaced_config_map("bench", "default"))
        rate("PATCH configmap (strategic merge)", args.seconds,
             lambda n: core.patch_namespaced_config_map("bench", "default", {"data": {"n": str(n)}}))
        rate("LIST pods in kube-system (empty)", args.seconds, lambda n: core.list_namespaced_pod("kube-system"))
        latencies = watch_latency(core)
        print(f"{'watch event latency (write -> client)':<44} median {statistics.median(latencies):.2f} ms, "
              f"max {max(latencies):.2f} ms ({len(latencies)} events)")
        seconds = rolling_update_time(apps)
        print(f"{'3-replica rolling update, instant readiness':<44} {seconds:.2f} s (maxSurge 1, maxUnavailable 0)")


if __name__ == "__main__":
    main()
