"""Pod logs through kubectl against pods that are real processes: follow, previous, tail."""
from __future__ import annotations

import subprocess
import threading
import time
import uuid
from typing import Any, Callable

import pytest
from kubernetes import client

from runbooks_sandbox.runtime.logs import ContainerLog

pytestmark = pytest.mark.sandbox


def wait_until(check: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def pod(name: str, version: str) -> dict:
    return {"metadata": {"name": name},
            "spec": {"terminationGracePeriodSeconds": 2, "containers": [{
                "name": "api", "image": f"registry.veza.app/veza-backend-api:{version}",
                "ports": [{"containerPort": 8080}]}]}}


@pytest.fixture
def cluster(process_cluster, kubectl_cache):  # type: ignore[no-untyped-def]
    server, runtime, api = process_cluster
    namespace = f"logs-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": namespace}})
    kubectl = ["kubectl", "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(kubectl_cache), "-n", namespace]
    yield core, runtime, namespace, kubectl
    core.delete_namespace(namespace)


def test_logs_follow_streams_new_lines_until_the_pod_ends(cluster) -> None:
    core, runtime, namespace, kubectl = cluster
    core.create_namespaced_pod(namespace, pod("api", "v1.5.0"))
    wait_until(lambda: core.read_namespaced_pod("api", namespace).status.phase == "Running", what="running")
    follower = subprocess.Popen([*kubectl, "logs", "-f", "api"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(follower.stdout.readline, "")), daemon=True)  # type: ignore[union-attr]
    reader.start()
    wait_until(lambda: lines, what="the log so far")
    time.sleep(0.3)
    runtime.fault(namespace, "api", error_rate=0.5)  # the workload logs the change: a line written now
    wait_until(lambda: any("faults now" in line for line in lines), what="a line written while following")
    assert follower.poll() is None, "follow must not end while the container runs"
    core.delete_namespaced_pod("api", namespace)  # SIGTERM: the process logs its shutdown and exits
    assert follower.wait(timeout=20) == 0, follower.stderr.read()  # type: ignore[union-attr]
    reader.join(timeout=5)
    assert len(lines) > 2 and lines[-1].strip(), lines


def test_logs_previous_shows_the_last_terminated_container(cluster) -> None:
    core, _, namespace, kubectl = cluster
    core.create_namespaced_pod(namespace, pod("crashy", "v1.5.4-crash"))
    wait_until(lambda: (core.read_namespaced_pod("crashy", namespace).status.container_statuses or [None])[0]
               and core.read_namespaced_pod("crashy", namespace).status.container_statuses[0].restart_count >= 1,
               what="a restart")
    previous = subprocess.run([*kubectl, "logs", "crashy", "--previous"], capture_output=True, text=True, timeout=30)
    assert previous.returncode == 0 and "panic:" in previous.stdout, previous
    # A follow of a container that is not running prints what it wrote and returns at once.
    followed = subprocess.run([*kubectl, "logs", "-f", "crashy"], capture_output=True, text=True, timeout=30)
    assert followed.returncode == 0 and "panic:" in followed.stdout, followed


def test_a_follow_ends_when_its_reader_leaves() -> None:
    log = ContainerLog()
    log.append("one")
    left = threading.Event()
    chunks = log.follow(stopped=left.is_set, tick_s=0.02)
    assert next(chunks) == "one\n"
    log.append("two")
    assert next(chunks) == "two\n"
    left.set()
    with pytest.raises(StopIteration):
        next(chunks)
    log.new_instance()  # a restart ends a follow of the earlier instance too
    chunks = log.follow()
    next(chunks)
    log.new_instance()
    with pytest.raises(StopIteration):
        next(chunks)
