"""The Service proxy over real pod processes: balancing, Istio weights, draining under load.

The store runs the real controllers (Deployments, ReplicaSets, Endpoints) and the process pod
runtime; requests go over real HTTP/1.1 keep-alive connections to the Services' cluster IPs.
"""
from __future__ import annotations

import http.client
import json
import os
import signal
import threading
import time
import uuid
from collections import Counter
from typing import Any, Iterator

import pytest

from runbooks_sandbox.models.controllers import start_controllers
from runbooks_sandbox.models.resources import (DEPLOYMENTS, DESTINATIONRULES, NAMESPACES, PODS, SERVICES,
                                               VIRTUALSERVICES)
from runbooks_sandbox.models.store import MemoryStore
from runbooks_sandbox.runtime.pods import ProcessRuntime
from runbooks_sandbox.runtime.proxy import ServiceProxy

Obj = dict[str, Any]
IMAGE = "registry.veza.app/veza-backend-api:{}"
Cluster = tuple[MemoryStore, ServiceProxy, ProcessRuntime]
pytestmark = pytest.mark.timeout(180)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[MemoryStore, ServiceProxy, ProcessRuntime]]:
    store = MemoryStore()  # its Service and pod networks are random /16s: other sandboxes may run
    runtime = ProcessRuntime(time_scale=0.1)
    runtime.start(store)
    controllers = start_controllers(store)
    proxy = ServiceProxy()
    proxy.start(store)
    yield store, proxy, runtime
    proxy.stop()
    controllers.stop()
    runtime.stop()


@pytest.fixture
def ns(cluster: Cluster) -> str:
    name = f"t-{uuid.uuid4().hex[:6]}"
    cluster[0].create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


def deployment(name: str, replicas: int, version: str, labels: dict[str, str]) -> Obj:
    return {
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": labels},
            "template": {"metadata": {"labels": labels}, "spec": {
                "terminationGracePeriodSeconds": 30,
                "containers": [{
                    "name": "backend", "image": IMAGE.format(version),
                    "ports": [{"containerPort": 8080, "name": "http"}],
                    # The guide's probe; at time scale 0.1: 1 s delay, 0.5 s period.
                    "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "initialDelaySeconds": 10,
                                       "periodSeconds": 5, "timeoutSeconds": 3, "failureThreshold": 3},
                }]}},
        },
    }


def service(name: str, selector: dict[str, str]) -> Obj:
    return {"metadata": {"name": name},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}


def wait_backends(proxy: ServiceProxy, ns: str, name: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if len(proxy.routes(ns, name).backends()) == count:
                return
        except (LookupError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"{ns}/{name} never had {count} ready endpoints")


def send(proxy: ServiceProxy, ns: str, name: str, count: int, path: str = "/version",
         headers: dict[str, str] | None = None) -> list[tuple[int, dict[str, Any], str]]:
    """count requests over one kept-alive connection: (status, body, X-Veza-Upstream)."""
    ip, port = proxy.address(ns, name)
    connection = http.client.HTTPConnection(ip, port, timeout=10)
    answers = []
    for _ in range(count):
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        body = response.read()
        parsed = json.loads(body) if response.getheader("Content-Type") == "application/json" else {}
        answers.append((response.status, parsed, response.getheader("X-Veza-Upstream") or ""))
    connection.close()
    return answers


def test_service_spreads_requests_over_its_ready_pods(cluster: Cluster, ns: str) -> None:
    store, proxy, _ = cluster
    store.create(DEPLOYMENTS, ns, deployment("api", 3, "v1.4.0", {"app": "api"}))
    svc = store.create(SERVICES, ns, service("api", {"app": "api"}))
    assert proxy.address(ns, "api") == (svc["spec"]["clusterIP"], 80)
    wait_backends(proxy, ns, "api", 3)
    answers = send(proxy, ns, "api", 999)
    assert {status for status, _, _ in answers} == {200}
    per_pod = Counter(upstream for _, _, upstream in answers)
    assert len(per_pod) == 3 and all(abs(n - 333) <= 30 for n in per_pod.values()), per_pod
    assert all(body["pod"] == upstream for _, body, upstream in answers)  # X-Veza-Upstream names the pod
    assert not proxy.listen_errors


def test_service_without_ready_endpoints_answers_503(cluster: Cluster, ns: str) -> None:
    store, proxy, _ = cluster
    store.create(SERVICES, ns, service("nobody", {"app": "nobody"}))
    [(status, _, _)] = send(proxy, ns, "nobody", 1)
    assert status == 503


@pytest.fixture
def canary_setup(cluster: Cluster, ns: str) -> str:
    """The guide's canary: stable and canary deployments behind one Service, Istio subsets."""
    store, proxy, _ = cluster
    store.create(DEPLOYMENTS, ns, deployment("backend-stable", 2, "v1.4.0", {"app": "backend", "track": "stable"}))
    store.create(DEPLOYMENTS, ns, deployment("backend-canary", 1, "v1.5.0", {"app": "backend", "track": "canary"}))
    store.create(SERVICES, ns, service("veza-backend", {"app": "backend"}))
    store.create(DESTINATIONRULES, ns, {"metadata": {"name": "veza-backend"}, "spec": {
        "host": "veza-backend",
        "subsets": [{"name": "stable", "labels": {"track": "stable"}}, {"name": "canary", "labels": {"track": "canary"}}],
    }})
    wait_backends(proxy, ns, "veza-backend", 3)
    return ns


def virtual_service(stable: int, canary: int) -> Obj:
    """k8s/canary/virtualservice.yaml from the guide, with the weights given."""
    def to(subset: str) -> Obj:
        return {"host": "veza-backend", "subset": subset}
    return {"metadata": {"name": "veza-backend"}, "spec": {"hosts": ["veza-backend"], "http": [
        {"match": [{"headers": {"canary": {"exact": "true"}}}], "route": [{"destination": to("canary")}]},
        {"route": [{"destination": to("stable"), "weight": stable}, {"destination": to("canary"), "weight": canary}]},
    ]}}


@pytest.mark.parametrize(("stable", "canary"), [(90, 10), (50, 50), (100, 0)])
def test_virtual_service_weights_hold_per_request(cluster: Cluster, canary_setup: str,
                                                  stable: int, canary: int) -> None:
    store, proxy, _ = cluster
    ns = canary_setup
    store.create(VIRTUALSERVICES, ns, virtual_service(stable, canary))
    answers = send(proxy, ns, "veza-backend", 1000)
    versions = Counter(body["version"] for _, body, _ in answers)
    assert abs(versions["v1.5.0"] - canary * 10) <= 30, versions  # within 3 % of 1 000
    assert versions["v1.5.0"] + versions["v1.4.0"] == 1000
    # Weights hold over connections too: a fresh connection per request changes nothing.
    fresh = Counter(send(proxy, ns, "veza-backend", 1)[0][1]["version"] for _ in range(100))
    assert abs(fresh["v1.5.0"] - canary) <= 5, fresh


def test_canary_header_routes_to_the_canary_subset(cluster: Cluster, canary_setup: str) -> None:
    store, proxy, _ = cluster
    ns = canary_setup
    store.create(VIRTUALSERVICES, ns, virtual_service(100, 0))
    answers = send(proxy, ns, "veza-backend", 50, headers={"canary": "true"})
    assert {body["version"] for _, body, _ in answers} == {"v1.5.0"}
    assert proxy.routes(ns, "veza-backend").virtual_service == f"{ns}/veza-backend"


class Load:
    """Closed-loop clients on kept-alive connections, counting every failed request."""

    def __init__(self, proxy: ServiceProxy, ns: str, name: str, clients: int = 3) -> None:
        self.address = proxy.address(ns, name)
        self.results: Counter[str] = Counter()
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(clients)]

    def __enter__(self) -> Load:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)

    def _run(self) -> None:
        connection = http.client.HTTPConnection(*self.address, timeout=10)
        while not self._stop.is_set():
            try:
                connection.request("GET", "/version")
                response = connection.getresponse()
                body = response.read()
                if response.status != 200:
                    self.failures.append(f"{response.status} {body[:80]!r}")
                else:
                    self.results[json.loads(body)["version"]] += 1
            except (OSError, http.client.HTTPException) as e:
                self.failures.append(repr(e))
                connection.close()
                connection = http.client.HTTPConnection(*self.address, timeout=10)
            time.sleep(0.002)
        connection.close()


def _rolled_out(store: MemoryStore, ns: str, version: str, replicas: int) -> bool:
    pods = store.list(PODS, ns, label_selector="app=api")[0]
    ready = [p for p in pods if any(c["type"] == "Ready" and c["status"] == "True" for c in p["status"].get("conditions") or [])]
    return (len(pods) == replicas and len(ready) == replicas
            and all(p["spec"]["containers"][0]["image"].endswith(version) for p in pods))


def test_rolling_update_under_load_loses_no_request(cluster: Cluster, ns: str) -> None:
    store, proxy, _ = cluster
    store.create(DEPLOYMENTS, ns, deployment("api", 3, "v1.4.0", {"app": "api"}))
    store.create(SERVICES, ns, service("api", {"app": "api"}))
    wait_backends(proxy, ns, "api", 3)
    with Load(proxy, ns, "api") as load:
        time.sleep(0.5)
        store.patch(DEPLOYMENTS, ns, "api", {"spec": {"template": {"spec": {"containers": [
            {"name": "backend", "image": IMAGE.format("v1.5.0")}]}}}}, "strategic")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not _rolled_out(store, ns, "v1.5.0", 3):
            time.sleep(0.1)
        time.sleep(0.5)
    assert _rolled_out(store, ns, "v1.5.0", 3)
    assert load.failures == [], load.failures[:5]
    assert load.results["v1.4.0"] > 0 and load.results["v1.5.0"] > 0, load.results


def test_a_crashed_pod_loses_at_most_the_requests_in_flight(cluster: Cluster, ns: str) -> None:
    """SIGKILL, no draining: as on a cluster, a request the dead process had already taken (or the
    kernel had queued for it) fails; requests that merely picked it are sent elsewhere (retry
    once), and none is sent to it once the runtime has seen it exit."""
    store, proxy, runtime = cluster
    store.create(DEPLOYMENTS, ns, deployment("api", 3, "v1.4.0", {"app": "api"}))
    store.create(SERVICES, ns, service("api", {"app": "api"}))
    wait_backends(proxy, ns, "api", 3)
    victim = proxy.routes(ns, "api").backends()[0].pod
    with Load(proxy, ns, "api", clients=3) as load:
        time.sleep(0.5)
        os.kill(runtime.pids()[f"{ns}/{victim}/backend"], signal.SIGKILL)
        wait_backends(proxy, ns, "api", 2, timeout=5)  # the runtime saw the exit: not ready
        failed_by_then = len(load.failures)
        time.sleep(1.0)
    assert len(load.failures) == failed_by_then <= 3, load.failures
    assert sum(load.results.values()) > 100
