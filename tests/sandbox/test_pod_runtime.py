"""The process pod runtime against the in-process store: real processes, real probes, real HTTP.

Each test creates pods in its own namespace of one shared store and runtime and watches what
the runtime reports through the store, as the API server's clients would.
"""
from __future__ import annotations

import json
import os
import signal
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from runbooks_sandbox.models.resources import EVENTS, NAMESPACES, PODS, SECRETS
from runbooks_sandbox.models.store import MemoryStore
from runbooks_sandbox.runtime.ipam import can_bind
from runbooks_sandbox.runtime.pods import FINALIZER, ProcessRuntime

Obj = dict[str, Any]
IMAGE = "registry.veza.app/veza-backend-api:{}"
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def cluster() -> Iterator[tuple[MemoryStore, ProcessRuntime]]:
    store = MemoryStore()
    runtime = ProcessRuntime(time_scale=0.1)
    runtime.start(store)
    yield store, runtime
    runtime.stop()
    assert runtime.pids() == {}


@pytest.fixture
def ns(cluster: tuple[MemoryStore, ProcessRuntime]) -> str:
    name = f"t-{uuid.uuid4().hex[:6]}"
    cluster[0].create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


def pod_manifest(name: str, version: str = "v1.4.0", *, readiness: bool = True, liveness: bool = False,
                 env: list[Obj] | None = None, grace: int = 30) -> Obj:
    container: Obj = {"name": "backend", "image": IMAGE.format(version),
                      "ports": [{"containerPort": 8080, "name": "http"}], "env": env or []}
    if readiness:  # the guide's probe, with periods the test can wait for
        container["readinessProbe"] = {"httpGet": {"path": "/ready", "port": "http"}, "initialDelaySeconds": 1,
                                       "periodSeconds": 2, "failureThreshold": 2}
    if liveness:  # the delay must cover the process start-up, or liveness kills every start
        container["livenessProbe"] = {"httpGet": {"path": "/health", "port": 8080}, "initialDelaySeconds": 20,
                                      "periodSeconds": 2, "failureThreshold": 2}
    return {"metadata": {"name": name, "labels": {"app": "api"}},
            "spec": {"containers": [container], "terminationGracePeriodSeconds": grace}}


def wait_for(store: MemoryStore, ns: str, name: str, check: Callable[[Obj], bool], timeout: float = 15.0) -> Obj:
    deadline = time.monotonic() + timeout
    pod: Obj = {}
    while time.monotonic() < deadline:
        pod = store.get(PODS, ns, name)
        if check(pod):
            return pod
        time.sleep(0.05)
    raise AssertionError(f"pod {ns}/{name} never matched; last status: {json.dumps(pod.get('status'), indent=1)}")


def container(pod: Obj) -> Obj:
    return (pod.get("status", {}).get("containerStatuses") or [{}])[0]


def is_ready(pod: Obj) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in pod.get("status", {}).get("conditions") or [])


def waiting_reason(pod: Obj) -> str | None:
    return container(pod).get("state", {}).get("waiting", {}).get("reason")


def reasons(store: MemoryStore, ns: str, name: str) -> list[str]:
    return [e["reason"] for e in store.list(EVENTS, ns)[0] if e["involvedObject"]["name"] == name]


def get_json(url: str) -> Obj:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def test_pods_serve_on_their_own_ip_with_kubelet_status(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, _ = cluster
    for name in ("api-a", "api-b"):
        store.create(PODS, ns, pod_manifest(name))
    pods = [wait_for(store, ns, name, is_ready) for name in ("api-a", "api-b")]
    ips = [p["status"]["podIP"] for p in pods]
    assert len(set(ips)) == 2 and all(ip.startswith("127.") for ip in ips)
    for pod, ip in zip(pods, ips):
        assert get_json(f"http://{ip}:8080/version") == {"service": "veza-backend-api", "version": "v1.4.0",
                                                         "pod": pod["metadata"]["name"]}
        status = pod["status"]
        assert status["phase"] == "Running" and status["hostIP"] == "127.0.0.1" and status["podIPs"] == [{"ip": ip}]
        assert {c["type"] for c in status["conditions"]} >= {"PodScheduled", "Initialized", "ContainersReady", "Ready"}
        assert all(c["lastTransitionTime"] for c in status["conditions"])
        entry = container(pod)
        assert entry["ready"] and entry["started"] and entry["restartCount"] == 0
        assert "running" in entry["state"] and entry["imageID"].startswith("registry.veza.app/veza-backend-api@sha256:")
        assert pod["spec"]["nodeName"] == "sandbox-node" and FINALIZER in pod["metadata"]["finalizers"]
    assert {"Scheduled", "Pulled", "Created", "Started"} <= set(reasons(store, ns, "api-a"))


def test_killed_process_restarts(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    store.create(PODS, ns, pod_manifest("victim"))
    wait_for(store, ns, "victim", is_ready)
    pid = runtime.pids()[f"{ns}/victim/backend"]
    os.kill(pid, signal.SIGKILL)
    pod = wait_for(store, ns, "victim", lambda p: container(p).get("restartCount") == 1 and is_ready(p))
    assert container(pod)["lastState"]["terminated"]["exitCode"] == 137
    assert runtime.pids()[f"{ns}/victim/backend"] != pid
    assert get_json(f"http://{pod['status']['podIP']}:8080/version")["pod"] == "victim"


def test_noready_version_never_becomes_ready(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, _ = cluster
    store.create(PODS, ns, pod_manifest("noready", "v1.5.3-noready"))
    wait_for(store, ns, "noready", lambda p: p["status"].get("phase") == "Running")
    time.sleep(1.5)  # several readiness periods (0.2 s each at time scale 0.1)
    pod = store.get(PODS, ns, "noready")
    assert not is_ready(pod) and not container(pod)["ready"]
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    assert ready["reason"] == "ContainersNotReady"
    assert "Unhealthy" in reasons(store, ns, "noready")


def test_readiness_fault_turns_pod_unready_then_ready(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    store.create(PODS, ns, pod_manifest("flaky"))
    wait_for(store, ns, "flaky", is_ready)
    runtime.fault(ns, "flaky", ready_fail=True)
    wait_for(store, ns, "flaky", lambda p: not is_ready(p), timeout=5)
    runtime.clear_fault(ns, "flaky")
    pod = wait_for(store, ns, "flaky", is_ready, timeout=5)
    assert container(pod)["restartCount"] == 0  # readiness never restarts a container


def test_liveness_failure_restarts_container(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    store.create(PODS, ns, pod_manifest("sick", liveness=True))
    wait_for(store, ns, "sick", is_ready)
    runtime.fault(ns, "sick", health_fail=True)
    wait_for(store, ns, "sick", lambda p: container(p).get("restartCount", 0) >= 1, timeout=15)
    runtime.clear_fault(ns, "sick")
    wait_for(store, ns, "sick", is_ready, timeout=10)
    assert {"Unhealthy", "Killing"} <= set(reasons(store, ns, "sick"))
    messages = [e["message"] for e in store.list(EVENTS, ns)[0] if e["reason"] == "Killing"]
    assert any("failed liveness probe, will be restarted" in m for m in messages)


def test_crashing_image_goes_into_crash_loop_back_off(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, _ = cluster
    store.create(PODS, ns, pod_manifest("crasher", "v1.5.4-crash"))
    pod = wait_for(store, ns, "crasher", lambda p: waiting_reason(p) == "CrashLoopBackOff")
    assert container(pod)["restartCount"] >= 1 and pod["status"]["phase"] == "Running"
    assert container(pod)["lastState"]["terminated"]["exitCode"] == 1
    assert "BackOff" in reasons(store, ns, "crasher")


def test_unknown_tag_fails_to_pull_without_a_process(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    store.create(PODS, ns, pod_manifest("typo", "v9.9.9"))
    pod = wait_for(store, ns, "typo", lambda p: waiting_reason(p) == "ErrImagePull")
    assert pod["status"]["phase"] == "Pending" and "v9.9.9" in container(pod)["state"]["waiting"]["message"]
    wait_for(store, ns, "typo", lambda p: waiting_reason(p) == "ImagePullBackOff", timeout=5)
    assert not any(key.startswith(f"{ns}/typo/") for key in runtime.pids())
    assert "Failed" in reasons(store, ns, "typo")


def test_missing_secret_blocks_the_container_until_created(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    env = [{"name": "DATABASE_URL", "valueFrom": {"secretKeyRef": {"name": "veza-secrets", "key": "database-url"}}}]
    store.create(PODS, ns, pod_manifest("needs-secret", env=env))
    pod = wait_for(store, ns, "needs-secret", lambda p: waiting_reason(p) == "CreateContainerConfigError")
    assert container(pod)["state"]["waiting"]["message"] == 'secret "veza-secrets" not found'
    assert pod["status"]["phase"] == "Pending"
    store.create(SECRETS, ns, {"metadata": {"name": "veza-secrets"}, "stringData": {"database-url": "postgres://db/veza"}})
    wait_for(store, ns, "needs-secret", is_ready)
    pid = runtime.pids()[f"{ns}/needs-secret/backend"]
    environ = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    assert b"DATABASE_URL=postgres://db/veza" in environ and f"POD_NAMESPACE={ns}".encode() in environ


def test_logs_are_kept_per_container(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    store.create(PODS, ns, pod_manifest("chatty"))
    pod = wait_for(store, ns, "chatty", is_ready)
    text = runtime.logs(ns, "chatty")
    assert f"listening on http://{pod['status']['podIP']}:8080" in text
    assert runtime.logs(ns, "chatty", tail=1).count("\n") == 1


def test_deletion_marks_unready_before_sigterm(cluster: tuple[MemoryStore, ProcessRuntime], ns: str) -> None:
    store, runtime = cluster
    store.create(PODS, ns, pod_manifest("leaving"))
    pod = wait_for(store, ns, "leaving", is_ready)
    ip, pid = pod["status"]["podIP"], runtime.pids()[f"{ns}/leaving/backend"]
    log = runtime._worker(ns, "leaving").containers[0].log  # the runtime's own record of the output
    unready_at: list[float] = []

    def on_event(event: Any) -> None:
        obj = event.object
        if event.resource == PODS and obj["metadata"]["name"] == "leaving" and not unready_at and not is_ready(obj):
            unready_at.append(time.time())

    unsubscribe = store.subscribe(on_event)
    try:
        deleted = store.delete(PODS, ns, "leaving")
        assert deleted["metadata"]["deletionTimestamp"]  # graceful: Terminating first
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and store.list(PODS, ns, field_selector="metadata.name=leaving")[0]:
            time.sleep(0.05)
    finally:
        unsubscribe()
    assert not store.list(PODS, ns, field_selector="metadata.name=leaving")[0]
    signalled = [at for at, line in log._current if "signal received" in line]
    assert unready_at and signalled and unready_at[0] < signalled[0]
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert can_bind(ip, 8080)  # the address is free again


def test_stop_leaves_no_process_behind() -> None:
    store = MemoryStore()
    store.create(NAMESPACES, None, {"metadata": {"name": "veza"}})
    runtime = ProcessRuntime(time_scale=0.1)
    runtime.start(store)
    for name in ("one", "two"):
        store.create(PODS, "veza", pod_manifest(name, readiness=False))
    wait_for(store, "veza", "one", is_ready)
    wait_for(store, "veza", "two", is_ready)
    pids = list(runtime.pids().values())
    assert len(pids) == 2
    runtime.stop()
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    assert runtime.pids() == {}
    # Without a runtime nobody would finish deletions: the finalizers are gone with it.
    assert all(FINALIZER not in (p["metadata"].get("finalizers") or []) for p in store.list(PODS)[0])


def test_a_stopped_runtime_starts_again_on_a_new_store() -> None:
    runtime = ProcessRuntime(time_scale=0.1)
    for _ in range(2):  # what ApiServer.reset does: stop, new store, start
        store = MemoryStore()
        store.create(NAMESPACES, None, {"metadata": {"name": "veza"}})
        runtime.start(store)
        try:
            store.create(PODS, "veza", pod_manifest("again"))
            pod = wait_for(store, "veza", "again", is_ready)
            assert get_json(f"http://{pod['status']['podIP']}:8080/version")["pod"] == "again"
        finally:
            runtime.stop()
        assert runtime.pids() == {}
