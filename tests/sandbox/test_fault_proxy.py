"""The fault proxy (runbooks_sandbox.controlplane.faultproxy) in front of a real SandboxCluster.

One cluster for the module (network namespace, forwarder, the control plane `make controlplane`
built; ~20-40 s to start here) with one proxy in front of it; kubectl (the built one), the
official Python client and raw HTTPS requests go through the proxy's kubeconfig. Each test
clears the faults after itself. The last tests stop the proxy and then the cluster and check
that no process and no port is left.

There are no nodes here, so exec and port-forward meet the apiserver's refusal, and the upgrade
checked end to end is a watch over WebSocket. ``kubectl logs``, ``logs -f`` and ``wait`` through
the proxy were checked by hand with the node agent (branch node-agent, 2026-12-07): ``logs -f``
streamed the pod's drain lines and ended 0.2 s after the pod's deletion.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbooks_sandbox.controlplane import binaries
from runbooks_sandbox.controlplane.faultproxy import FaultProxy, ProxyCredentials
from runbooks_sandbox.servers.ports import PortInUse, ServerError, StaleState, is_port_free, process_alive

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

NAMESPACE = "veza-sandbox"
PEOPLE_GROUPS = {"alice": "veza:oncall", "bob": "veza:approvers", "carol": "veza:viewers",
                 "sandbox-admin": "system:masters"}


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kubectl_binary() -> str:
    """The built kubectl (raises ControlPlaneNotBuilt, naming `make controlplane`, when not built)."""
    return binaries().kubectl


@pytest.fixture(scope="module")
def cluster(kubectl_binary: str) -> Iterator[Any]:
    """A started SandboxCluster (skipped where network namespaces cannot be made), stopped after."""
    from runbooks_sandbox.cluster import SandboxCluster

    if os.geteuid() != 0:
        pytest.skip("the sandbox cluster's network needs root: `ip netns add` (CAP_SYS_ADMIN) is not permitted here")
    state = Path(tempfile.mkdtemp(prefix="vz-fp-test-"))
    sandbox = SandboxCluster(state)
    try:
        sandbox.start({})
        yield sandbox
    finally:
        sandbox.stop()
        shutil.rmtree(state, ignore_errors=True)


@pytest.fixture(scope="module")
def proxy(cluster: Any) -> Iterator[FaultProxy]:
    started = FaultProxy.for_cluster(cluster)
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture(autouse=True)
def no_faults_after(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "proxy" in request.fixturenames:
        proxy = request.getfixturevalue("proxy")
        if proxy.running_pid() is not None:
            proxy.clear_faults()


def _kubectl(binary: str, kubeconfig: Path, *args: str, context: str = "sandbox-admin", input: str | None = None,
             check: bool = True, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / ".kube-cache"),
               "--context", context, *args]
    result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout,
                            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} ({context}) failed: {result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def kubectl(proxy: FaultProxy, kubectl_binary: str) -> Any:
    """kubectl through the proxy (its kubeconfig), as sandbox-admin unless told."""
    def run(*args: str, **options: Any) -> subprocess.CompletedProcess[str]:
        return _kubectl(kubectl_binary, proxy.kubeconfig, *args, **options)

    return run


class Api:
    """Raw HTTPS requests to the proxy as one of the people (their bearer token)."""

    def __init__(self, url: str, cluster: Any) -> None:
        plane = cluster.control_plane()
        self.port = int(url.rsplit(":", 1)[1])
        self.context = ssl.create_default_context(cafile=str(plane.pki.ca.cert))
        self.tokens = plane.tokens()

    def request(self, method: str, path: str, *, person: str = "alice", body: dict[str, Any] | None = None,
                headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPSConnection("127.0.0.1", self.port, context=self.context, timeout=30)
        try:
            connection.request(method, path, body=json.dumps(body).encode() if body is not None else None,
                               headers={"Authorization": f"Bearer {self.tokens[person]}",
                                        "Content-Type": "application/json", **(headers or {})})
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()


@pytest.fixture(scope="module")
def api(proxy: FaultProxy, cluster: Any) -> Api:
    return Api(proxy.url, cluster)


def _configmap(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": NAMESPACE},
            "data": {"made-by": "test_fault_proxy"}}


def _deployment(name: str) -> dict[str, Any]:
    labels = {"app": name}
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": NAMESPACE},
            "spec": {"replicas": 1, "selector": {"matchLabels": labels},
                     "template": {"metadata": {"labels": labels},
                                  "spec": {"containers": [{"name": "web", "image": "registry.veza.app/web:v1.0.0"}]}}}}


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:6]}"


# -- identity and plain requests ------------------------------------------------------------------

def test_kubectl_get_through_the_proxy(kubectl: Any, proxy: FaultProxy) -> None:
    assert proxy.url.startswith("https://127.0.0.1:")
    assert f"server: {proxy.url}" in proxy.kubeconfig.read_text()
    assert NAMESPACE in kubectl("get", "namespaces", "-o", "name").stdout
    listed = kubectl("get", "deployments", "-n", NAMESPACE, context="alice")
    assert listed.returncode == 0


@pytest.mark.parametrize("person", sorted(PEOPLE_GROUPS))
def test_auth_whoami_names_the_person_through_the_proxy(kubectl: Any, person: str) -> None:
    """People's tokens pass through; the admin's client cert becomes X-Remote-User/-Group."""
    review = json.loads(kubectl("auth", "whoami", "-o", "json", context=person).stdout)
    user = review["status"]["userInfo"]
    assert user["username"] == person
    assert PEOPLE_GROUPS[person] in user["groups"]


def test_a_caller_cannot_assert_another_identity_in_front_proxy_headers(api: Api) -> None:
    body = {"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}
    code, _, answer = api.request("POST", "/apis/authentication.k8s.io/v1/selfsubjectreviews", person="carol",
                                  body=body, headers={"X-Remote-User": "sandbox-admin",
                                                      "X-Remote-Group": "system:masters"})
    assert code == 201, answer
    user = json.loads(answer)["status"]["userInfo"]
    assert user["username"] == "carol" and "system:masters" not in user["groups"]


def test_rbac_is_the_persons_through_the_proxy(kubectl: Any) -> None:
    denied = kubectl("get", "secrets", "-n", NAMESPACE, context="carol", check=False)
    assert denied.returncode != 0 and "forbidden" in denied.stderr.lower() and '"carol"' in denied.stderr


# -- faults -----------------------------------------------------------------------------------

def test_error_rate_refuses_with_503_and_a_status_and_clear_restores(api: Api, proxy: FaultProxy) -> None:
    path = f"/api/v1/namespaces/{NAMESPACE}/configmaps"
    before = proxy.faults()["refused"]
    assert proxy.set_faults(error_rate=1.0)["error_rate"] == 1.0
    code, headers, body = api.request("GET", path)
    assert code == 503
    assert headers.get("Retry-After") == "1"
    status = json.loads(body)
    assert (status["kind"], status["reason"], status["code"]) == ("Status", "ServiceUnavailable", 503)
    assert proxy.faults()["refused"] == before + 1
    proxy.clear_faults()
    code, _, body = api.request("GET", path)
    assert code == 200 and json.loads(body)["kind"] == "ConfigMapList"


def test_kubectl_rides_out_refusals_by_retrying_after_retry_after(kubectl: Any, proxy: FaultProxy) -> None:
    """What a drill meets: client-go retries a 503 that carries Retry-After, 1 s apart, up to 10
    times (measured: at error_rate 1.0 a `kubectl get` fails after 10.1 s and 11 refusals), so
    kubectl at a 40 % refusal rate is slow, not failing: a request fails only after 11 refusals
    in a row (0.4^11, about 4 in 100,000)."""
    kubectl("get", "configmaps", "-n", NAMESPACE, context="alice")  # discovery cached before the faults
    proxy.set_faults(error_rate=0.4)
    began = time.monotonic()
    for _ in range(3):
        kubectl("get", "configmaps", "-n", NAMESPACE, context="alice")
    print(f"3 x kubectl get at error_rate 0.4: {time.monotonic() - began:.1f} s, {proxy.faults()['refused']} "
          "requests refused and retried")


def _median_seconds(api: Api, n: int = 5) -> float:
    times = []
    for _ in range(n):
        began = time.monotonic()
        code, _, _ = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}")
        times.append(time.monotonic() - began)
        assert code == 200
    return sorted(times)[n // 2]


def test_latency_is_added_to_every_request(api: Api, proxy: FaultProxy, cluster: Any) -> None:
    direct = _median_seconds(Api(proxy.status()["upstream"], cluster))
    plain = _median_seconds(api)
    proxy.set_faults(latency_ms=400)
    slow = _median_seconds(api)
    print(f"median GET (new connection each): {direct * 1000:.0f} ms direct, {plain * 1000:.0f} ms through the "
          f"proxy, {slow * 1000:.0f} ms with latency_ms=400")
    assert slow - plain >= 0.35


def test_fail_writes_on_deployments_applies_the_write_then_answers_500(kubectl: Any, proxy: FaultProxy,
                                                                       api: Api) -> None:
    proxy.set_faults(fail_writes=1, resource="deployments")
    other = _unique("cm")
    code, _, _ = api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", body=_configmap(other))
    assert code == 201  # another resource: not counted
    name = _unique("web")
    created = kubectl("create", "deployment", name, "--image=registry.veza.app/web:v1.0.0", "-n", NAMESPACE,
                      context="alice", check=False)
    assert created.returncode != 0
    assert "etcdserver: request timed out" in created.stderr, created.stderr
    assert kubectl("get", "deployment", name, "-n", NAMESPACE, "-o", "name", context="alice").stdout.strip() \
        == f"deployment.apps/{name}"
    state = proxy.faults()
    assert (state["writes_failed"], state["writes_left"]) == (1, 0)
    again = _unique("web")
    kubectl("create", "deployment", again, "--image=registry.veza.app/web:v1.0.0", "-n", NAMESPACE, context="alice")


def test_no_answer_closes_the_connection_after_applying_the_write(api: Api, proxy: FaultProxy) -> None:
    proxy.set_faults(fail_writes=1, no_answer=True)
    name = _unique("cm")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionError, ssl.SSLError)):
        api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", body=_configmap(name))
    code, _, _ = api.request("GET", f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}")
    assert code == 200  # applied, though nobody was told
    assert proxy.faults()["writes_failed"] >= 1


def test_a_dry_run_write_is_not_counted(api: Api, proxy: FaultProxy) -> None:
    proxy.set_faults(fail_writes=1, resource="deployments")
    path = f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments"
    name = _unique("dry")
    code, _, body = api.request("POST", f"{path}?dryRun=All", body=_deployment(name))
    assert code == 201, body
    assert proxy.faults()["writes_left"] == 1
    assert api.request("GET", f"{path}/{name}")[0] == 404  # a dry run stored nothing
    code, _, body = api.request("POST", path, body=_deployment(name))
    assert code == 500 and json.loads(body)["reason"] == "InternalError"
    assert proxy.faults()["writes_left"] == 0


# -- streams ----------------------------------------------------------------------------------

def test_a_watch_through_the_proxy_receives_events_as_they_happen(proxy: FaultProxy, api: Api) -> None:
    from kubernetes import client, config, watch

    name = _unique("watched")
    api_client = config.new_client_from_config(config_file=str(proxy.kubeconfig), context="alice")
    seen: list[tuple[str, str, float]] = []
    listening = threading.Event()

    def follow() -> None:
        w = watch.Watch()
        v1 = client.CoreV1Api(api_client)
        listing = v1.list_namespaced_config_map(NAMESPACE)
        listening.set()
        for event in w.stream(v1.list_namespaced_config_map, NAMESPACE, timeout_seconds=30,
                              resource_version=listing.metadata.resource_version):
            seen.append((event["type"], event["object"].metadata.name, time.monotonic()))
            if event["object"].metadata.name == name and event["type"] == "DELETED":
                w.stop()

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    try:
        assert listening.wait(15)
        time.sleep(0.5)  # the watch request is on its way
        created_at = time.monotonic()
        assert api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", body=_configmap(name))[0] == 201
        assert api.request("DELETE", f"/api/v1/namespaces/{NAMESPACE}/configmaps/{name}")[0] == 200
        follower.join(20)
    finally:
        api_client.close()
    ours = [(kind, at) for kind, who, at in seen if who == name]
    assert [kind for kind, _ in ours] == ["ADDED", "DELETED"], seen
    print(f"watch event ADDED {1000 * (ours[0][1] - created_at):.0f} ms after the create was sent")
    assert ours[0][1] - created_at < 2.0


def test_a_websocket_watch_is_upgraded_and_spliced(api: Api) -> None:
    """The apiserver serves a watch over WebSocket too: a real 101 through the proxy, then its frames."""
    name = _unique("ws")
    with api.context.wrap_socket(socket.create_connection(("127.0.0.1", api.port), timeout=15),
                                 server_hostname="127.0.0.1") as sock:
        sock.sendall((f"GET /api/v1/namespaces/{NAMESPACE}/configmaps?watch=true HTTP/1.1\r\n"
                      f"Host: 127.0.0.1:{api.port}\r\nAuthorization: Bearer {api.tokens['alice']}\r\n"
                      "Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\n"
                      # The apiserver's WebSocket handler refuses a handshake without an Origin (403).
                      "Origin: http://127.0.0.1\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n").encode())
        received = b""
        while b"\r\n\r\n" not in received:
            received += sock.recv(4096)
        assert received.startswith(b"HTTP/1.1 101"), received + sock.recv(4096)
        assert api.request("POST", f"/api/v1/namespaces/{NAMESPACE}/configmaps", body=_configmap(name))[0] == 201
        deadline = time.monotonic() + 10
        while name.encode() not in received and time.monotonic() < deadline:
            received += sock.recv(65536)
    assert name.encode() in received and b'"ADDED"' in received


def test_an_upgrade_request_is_relayed(kubectl: Any, cluster: Any, kubectl_binary: str) -> None:
    """exec on a pod no node runs: the apiserver's own refusal of the upgrade comes back as it would directly."""
    pod = _unique("pending")
    kubectl("run", pod, "--image=registry.veza.app/web:v1.0.0", "-n", NAMESPACE)
    through = kubectl("exec", pod, "-n", NAMESPACE, "--", "true", check=False, timeout=60)
    direct = _kubectl(kubectl_binary, cluster.kubeconfig, "exec", pod, "-n", NAMESPACE, "--", "true",
                      check=False, timeout=60)
    assert through.returncode != 0 and direct.returncode != 0
    assert "does not have a host assigned" in direct.stderr, direct.stderr
    assert "does not have a host assigned" in through.stderr, through.stderr


# -- admin endpoint, ports, stop -----------------------------------------------------------------

def test_the_admin_endpoint_needs_the_owners_token(proxy: FaultProxy) -> None:
    assert proxy.token_path.stat().st_mode & 0o777 == 0o600
    port = int(proxy.admin_url.rsplit(":", 1)[1])
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
        connection.request("PUT", "/faults", body=b'{"error_rate": 1.0}', headers=headers)
        assert connection.getresponse().status == 401
        connection.close()
    assert proxy.faults()["error_rate"] == 0.0
    with pytest.raises(ValueError, match="error_rate"):
        proxy.set_faults(error_rate=2.0)


def test_a_second_proxy_on_the_state_dir_and_a_port_in_use_are_refused(cluster: Any, proxy: FaultProxy,
                                                                        tmp_path: Path) -> None:
    with pytest.raises(StaleState, match="still runs"):
        FaultProxy.for_cluster(cluster)
    credentials = ProxyCredentials(**{k: Path(v) for k, v in json.loads(proxy.config_path.read_text())
                                      ["credentials"].items()})
    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        port = held.getsockname()[1]
        other = FaultProxy(tmp_path, port=port)
        with pytest.raises(PortInUse, match=str(port)):
            other.start(proxy.status()["upstream"], credentials)
        assert other.running_pid() is None and not other.status_path.exists()


def test_stop_leaves_no_process_and_no_port(proxy: FaultProxy) -> None:
    status = proxy.status()
    pid, ports = status["pid"], (status["port"], status["admin_port"])
    assert process_alive(pid)
    assert proxy.stop() is True
    assert not process_alive(pid)
    assert all(is_port_free(port) for port in ports)
    assert not proxy.kubeconfig.exists() and not proxy.token_path.exists()
    assert proxy.stop() is False  # idempotent
    with pytest.raises(ServerError, match="not running"):
        proxy.faults()


def test_the_clusters_stop_stops_a_proxy_in_front_of_it(cluster: Any) -> None:
    second = FaultProxy.for_cluster(cluster)
    pid, port = second.status()["pid"], second.status()["port"]
    stopped = cluster.stop()
    assert "fault proxy" in stopped
    assert not process_alive(pid) and is_port_free(port)
