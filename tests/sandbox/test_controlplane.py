"""The real Kubernetes control plane (runbooks_sandbox.controlplane) as `make controlplane` built it.

One control plane serves most of the module (started once: ~10-15 s); the built kubectl (not
Debian's) and the official Python client talk to it as the sandbox's people. A second one, in a
throwaway network namespace when this machine allows one, is killed with SIGKILL and cleaned
up by stop(). Nothing is left running: every test that stops checks the PIDs and ports that
status() reported.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbooks_sandbox.controlplane import (
    COMPONENTS,
    ControlPlane,
    ControlPlaneNotBuilt,
    Pki,
    bin_dir,
    binaries,
    read_versions,
)
from runbooks_sandbox.controlplane.process import Network
from runbooks_sandbox.servers.ports import PortInUse, StaleState, is_port_free, process_alive

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

NAMESPACE = "veza-sandbox"
VERSIONS = read_versions()
INSIDE_ADDRESS = "172.18.0.1"  # the apiserver's address in the throwaway network namespace
PEOPLE_GROUPS = {"alice": "veza:oncall", "bob": "veza:approvers", "carol": "veza:viewers"}


# -- fixtures ---------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def kubectl_binary() -> str:
    """The built kubectl (raises ControlPlaneNotBuilt, naming `make controlplane`, when not built)."""
    return binaries().kubectl


@pytest.fixture(scope="module")
def cp(kubectl_binary: str) -> Iterator[ControlPlane]:
    state = Path(tempfile.mkdtemp(prefix="vz-cp-test-"))
    plane = ControlPlane(state)
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(state, ignore_errors=True)


def _kubectl(binary: str, kubeconfig: Path, *args: str, context: str | None = None, input: str | None = None,
             netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    command = [binary, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / ".kube-cache")]
    if context:
        command += ["--context", context]
    if netns:
        command = ["ip", "netns", "exec", netns, *command]
    result = subprocess.run([*command, *args], input=input, capture_output=True, text=True, timeout=60,
                            env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
    if check and result.returncode != 0:
        raise AssertionError(f"kubectl {' '.join(args)} ({context}) failed: {result.stdout}{result.stderr}")
    return result


@pytest.fixture(scope="module")
def kubectl(cp: ControlPlane, kubectl_binary: str) -> Any:
    def run(*args: str, context: str = "sandbox-admin", input: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        return _kubectl(kubectl_binary, cp.kubeconfig, *args, context=context, input=input, check=check)

    return run


def _forbidden(result: subprocess.CompletedProcess[str], user: str) -> None:
    assert result.returncode != 0, f"expected Forbidden for {user}, got: {result.stdout}"
    assert "forbidden" in result.stderr.lower() and f'"{user}"' in result.stderr, result.stderr


DEPLOYMENT = """
apiVersion: apps/v1
kind: Deployment
metadata: {name: web, namespace: veza-sandbox, labels: {app: web}}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: web, image: registry.veza.app/web:v1.0.0}]
---
apiVersion: v1
kind: Secret
metadata: {name: veza-secrets, namespace: veza-sandbox}
stringData: {jwt_secret: not-a-real-one}
"""


@pytest.fixture(scope="module")
def web(kubectl: Any) -> str:
    """A Deployment of 2 replicas and a Secret in veza-sandbox, created by the admin."""
    kubectl("apply", "-f", "-", input=DEPLOYMENT)
    return "web"


# -- binaries: the pinned build or a clear error ----------------------------------------------------

def test_missing_bin_dir_names_make_controlplane_before_starting_anything(tmp_path: Path) -> None:
    plane = ControlPlane(tmp_path / "state", bin_dir=tmp_path / "not-built")
    with pytest.raises(ControlPlaneNotBuilt, match=r"make controlplane") as caught:
        plane.start()
    assert "kube-apiserver is missing" in str(caught.value)
    assert not (tmp_path / "state").exists()  # nothing made, nothing started


def test_a_binary_of_another_version_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    for name in ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "etcd"):
        (fake / name).write_text("#!/bin/sh\necho 'Kubernetes v1.30.0'\n")
        (fake / name).chmod(0o755)
    with pytest.raises(ControlPlaneNotBuilt, match=r"v1\.30\.0.*make controlplane"):
        ControlPlane(tmp_path / "state", bin_dir=fake).start()
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("env", [
    {"VEZA_CONTROLPLANE_CACHE": "/srv/cp-cache"},
    {"XDG_CACHE_HOME": "/srv/xdg", "VEZA_CONTROLPLANE_CACHE": ""},
    {"HOME": "/srv/home", "XDG_CACHE_HOME": ""},
])
def test_bin_dir_is_where_the_build_script_builds(env: dict[str, str]) -> None:
    environ = {k: v for k, v in os.environ.items() if k not in ("VEZA_CONTROLPLANE_CACHE", "XDG_CACHE_HOME")}
    environ.update(env)
    script = Path(__file__).resolve().parents[2] / "scripts" / "build-controlplane.sh"
    printed = subprocess.run(["bash", str(script), "--print-bindir"], capture_output=True, text=True, env=environ,
                             check=True).stdout.strip()
    assert str(bin_dir(environ=environ)) == printed


def test_kubelet_serving_cert_names_the_node_and_is_signed_by_the_cluster_ca(tmp_path: Path) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

    pki = Pki.create(tmp_path / "pki", service_cidr="10.96.0.0/16", extra_ips=["192.0.2.7"])
    pair = pki.issue_kubelet_serving_cert("node-1", ["10.200.0.2"])
    cert = x509.load_pem_x509_certificate(pair.cert.read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca.cert.read_bytes())
    public_key = ca.public_key()
    assert isinstance(public_key, ec.EllipticCurvePublicKey)
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in sans.get_values_for_type(x509.IPAddress)] == ["10.200.0.2"]
    assert sans.get_values_for_type(x509.DNSName) == ["node-1"]
    assert pair.key.stat().st_mode & 0o777 == 0o600
    apiserver = x509.load_pem_x509_certificate(pki.apiserver.cert.read_bytes())
    api_sans = apiserver.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"10.96.0.1", "127.0.0.1", "192.0.2.7"} <= {str(ip) for ip in api_sans.get_values_for_type(x509.IPAddress)}
    assert "kubernetes.default.svc.cluster.local" in api_sans.get_values_for_type(x509.DNSName)


def test_an_apiserver_port_in_use_is_refused_and_nothing_is_left(tmp_path: Path, kubectl_binary: str) -> None:
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=str(port)):
            ControlPlane(tmp_path / "state", apiserver_port=port).start()
    assert sorted(p.name for p in (tmp_path / "state" / "controlplane").iterdir()) == ["logs"]


# -- the running control plane --------------------------------------------------------------------

def test_server_is_the_pinned_version(kubectl: Any) -> None:
    versions = json.loads(kubectl("version", "-o", "json").stdout)
    assert versions["serverVersion"]["gitVersion"] == VERSIONS.kubernetes == "v1.37.2"
    assert versions["clientVersion"]["gitVersion"] == VERSIONS.kubernetes


def test_status_reports_every_component_and_its_start_time(cp: ControlPlane) -> None:
    status = cp.status()
    assert status["running"] and status["api_url"] == cp.api_url
    assert status["versions"] == {"kubernetes": VERSIONS.kubernetes, "etcd": VERSIONS.etcd}
    for name in COMPONENTS:
        component = status["components"][name]
        assert component["running"] and process_alive(component["pid"]), name
        assert not is_port_free(component["port"]), name
        assert status["start_seconds"][name] > 0
    assert status["rss_bytes"] > 100 * 2**20
    # A fresh instance on the same state directory sees the same (the creating process may be gone).
    fresh = ControlPlane(cp.state_dir).status()
    assert fresh["running"] and fresh["api_url"] == cp.api_url
    assert {n: (c["pid"], c["port"]) for n, c in fresh["components"].items()} == \
        {n: (c["pid"], c["port"]) for n, c in status["components"].items()}


def test_credentials_are_private_and_tokens_never_logged(cp: ControlPlane) -> None:
    assert cp.kubeconfig.stat().st_mode & 0o777 == 0o600
    assert cp.token_file.stat().st_mode & 0o777 == 0o600
    assert cp.pki.dir.stat().st_mode & 0o777 == 0o700
    assert {p.stat().st_mode & 0o777 for p in cp.pki.dir.iterdir()} == {0o600}
    tokens = cp.tokens()
    assert set(tokens) == {"alice", "bob", "carol"} and len(set(tokens.values())) == 3
    logs = "".join(cp.log_path(name).read_text(errors="replace") for name in COMPONENTS)
    assert not any(token in logs for token in tokens.values())


@pytest.mark.parametrize("person", ["alice", "bob", "carol", "sandbox-admin"])
def test_each_context_is_its_person(kubectl: Any, person: str) -> None:
    info = json.loads(kubectl("auth", "whoami", "-o", "json", context=person).stdout)["status"]["userInfo"]
    assert info["username"] == person
    expected_group = PEOPLE_GROUPS.get(person, "system:masters")
    assert expected_group in info["groups"] and "system:authenticated" in info["groups"]


def test_viewer_reads_but_cannot_change_or_read_secrets(kubectl: Any, web: str) -> None:
    assert "web" in kubectl("get", "deployments", "-n", NAMESPACE, context="carol").stdout
    _forbidden(kubectl("patch", "deployment", web, "-n", NAMESPACE, "-p",
                       '{"metadata":{"annotations":{"veza.app/by":"carol"}}}', context="carol", check=False), "carol")
    _forbidden(kubectl("get", "secret", "veza-secrets", "-n", NAMESPACE, context="carol", check=False), "carol")
    # The identity guard reads kube-system's uid: every person may.
    assert kubectl("get", "namespace", "kube-system", "-o", "jsonpath={.metadata.uid}", context="carol").stdout


def test_oncall_changes_deployments_and_takes_leases_but_cannot_delete_a_namespace(kubectl: Any, web: str) -> None:
    patched = kubectl("patch", "deployment", web, "-n", NAMESPACE, "-o", "json", "-p",
                      '{"metadata":{"annotations":{"veza.app/by":"alice"}}}', context="alice")
    assert json.loads(patched.stdout)["metadata"]["annotations"]["veza.app/by"] == "alice"
    lease = ('{"apiVersion":"coordination.k8s.io/v1","kind":"Lease","metadata":{"name":"runbook-lock-web",'
             '"namespace":"veza-sandbox"},"spec":{"holderIdentity":"alice","leaseDurationSeconds":60}}')
    kubectl("create", "-f", "-", input=lease, context="alice")
    assert kubectl("get", "secret", "veza-secrets", "-n", NAMESPACE, context="alice").returncode == 0
    kubectl("create", "namespace", "vz-doomed")
    _forbidden(kubectl("delete", "namespace", "vz-doomed", context="alice", check=False), "alice")
    # Her rights stop at the Veza namespaces.
    assert kubectl("auth", "can-i", "patch", "deployments", "-n", "default", context="alice",
                   check=False).stdout.strip() == "no"
    assert kubectl("auth", "can-i", "create", "pods", "--subresource=eviction", "-n", NAMESPACE,
                   context="alice").stdout.strip() == "yes"


def test_approver_reads_deployments_but_not_secrets(kubectl: Any, web: str) -> None:
    assert "web" in kubectl("get", "deployments", "-n", NAMESPACE, context="bob").stdout
    _forbidden(kubectl("get", "secret", "veza-secrets", "-n", NAMESPACE, context="bob", check=False), "bob")
    _forbidden(kubectl("scale", "deployment", web, "-n", NAMESPACE, "--replicas=3", context="bob", check=False), "bob")


def test_controllers_and_scheduler_run(kubectl: Any, web: str) -> None:
    """The Deployment gets a ReplicaSet and 2 Pods, which the scheduler finds no node for."""
    deadline = time.monotonic() + 60
    pods: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        replica_sets = json.loads(kubectl("get", "replicasets", "-n", NAMESPACE, "-l", "app=web", "-o", "json").stdout)
        pods = json.loads(kubectl("get", "pods", "-n", NAMESPACE, "-l", "app=web", "-o", "json").stdout)["items"]
        unschedulable = [p for p in pods if any(c["type"] == "PodScheduled" and c.get("reason") == "Unschedulable"
                                               for c in p["status"].get("conditions") or [])]
        if replica_sets["items"] and len(pods) == 2 and len(unschedulable) == 2:
            break
        time.sleep(0.5)
    else:
        raise AssertionError(f"no ReplicaSet with 2 unschedulable pods after 60 s: {pods}")
    owner = replica_sets["items"][0]["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"]) == ("Deployment", "web")
    assert {p["status"]["phase"] for p in pods} == {"Pending"}


def test_python_client_works_with_the_kubeconfig(cp: ControlPlane, web: str) -> None:
    from kubernetes import client, config
    from kubernetes.client.exceptions import ApiException

    api = config.new_client_from_config(config_file=str(cp.kubeconfig), context="alice")
    try:
        assert client.CoreV1Api(api).read_namespace("kube-system").metadata.uid
        assert client.AppsV1Api(api).read_namespaced_deployment("web", NAMESPACE).spec.replicas == 2
    finally:
        api.close()
    api = config.new_client_from_config(config_file=str(cp.kubeconfig), context="carol")
    try:
        with pytest.raises(ApiException) as denied:
            client.CoreV1Api(api).read_namespaced_secret("veza-secrets", NAMESPACE)
        assert denied.value.status == 403
    finally:
        api.close()


def test_a_kubeconfig_for_another_address_and_context(cp: ControlPlane, kubectl_binary: str, tmp_path: Path) -> None:
    path = cp.write_kubeconfig(tmp_path / "kubeconfig", server=cp.api_url.replace("127.0.0.1", "localhost"),
                               current_context="carol")
    assert path.stat().st_mode & 0o777 == 0o600
    whoami = _kubectl(kubectl_binary, path, "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
    assert whoami.stdout == "carol"


def test_a_second_start_on_a_running_state_dir_is_refused(cp: ControlPlane) -> None:
    before = {name: c["pid"] for name, c in cp.status()["components"].items()}
    with pytest.raises(StaleState, match=r"stop them first"):
        ControlPlane(cp.state_dir).start()
    assert {name: c["pid"] for name, c in cp.status()["components"].items()} == before
    assert all(process_alive(pid) for pid in before.values())


def _assert_nothing_left(status: dict[str, Any], plane: ControlPlane, netns: str | None = None) -> None:
    pids = [c["pid"] for c in status["components"].values()]
    assert all(pid for pid in pids), status
    assert not [pid for pid in pids if process_alive(pid)]
    bound = [(str(h), int(p)) for h, p in status["bound"]]
    assert len(bound) == 5
    still = Network(netns).run(lambda: [(h, p) for h, p in bound if not is_port_free(p, h)])
    assert not still, f"still bound: {still}"
    assert not (plane.home / "etcd").exists() and not plane.kubeconfig.exists() and not plane.token_file.exists()
    assert not plane.pki.dir.exists()
    assert not plane.status()["running"]


def test_stop_from_a_fresh_instance_leaves_no_process_and_no_port(cp: ControlPlane) -> None:
    """Last test of the shared control plane: stop it as `sandbox down` in another process would."""
    status = cp.status()
    started = time.monotonic()
    stopped = ControlPlane(cp.state_dir).stop()
    assert sorted(stopped) == sorted(COMPONENTS)
    assert time.monotonic() - started < 15  # no component waits out its SIGKILL grace
    _assert_nothing_left(status, cp)
    assert cp.log_path("kube-apiserver").exists()  # the logs stay, for a post-mortem
    assert ControlPlane(cp.state_dir).stop() == []  # idempotent


# -- a second control plane: in a network namespace (when allowed), killed with SIGKILL ---------------

@pytest.fixture(scope="module")
def throwaway_netns() -> Iterator[tuple[str | None, str]]:
    """(name, "") of a network namespace made for this module, or (None, why not)."""
    if os.geteuid() != 0 or not shutil.which("ip"):
        yield None, "making a network namespace needs root and iproute2's ip"
        return
    name = f"vz-test-{secrets.token_hex(4)}"
    made = subprocess.run(["ip", "netns", "add", name], capture_output=True, text=True)
    if made.returncode != 0:
        yield None, f"`ip netns add` is not permitted here: {made.stderr.strip()}"
        return
    try:
        # As the sandbox's cluster network does: a non-loopback /32 on the namespace's lo.
        subprocess.run(["ip", "-n", name, "addr", "add", f"{INSIDE_ADDRESS}/32", "dev", "lo"], check=True)
        yield name, ""
    finally:
        subprocess.run(["ip", "netns", "del", name], capture_output=True)


@pytest.fixture(scope="module")
def second(kubectl_binary: str, throwaway_netns: tuple[str | None, str]) -> Iterator[ControlPlane]:
    state = Path(tempfile.mkdtemp(prefix="vz-cp-test-"))
    netns = throwaway_netns[0]
    plane = ControlPlane(state, netns=netns, host=INSIDE_ADDRESS if netns else "127.0.0.1")
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        shutil.rmtree(state, ignore_errors=True)


def test_netns_variant_runs_inside_the_namespace(second: ControlPlane, kubectl_binary: str,
                                                  throwaway_netns: tuple[str | None, str]) -> None:
    netns, why_not = throwaway_netns
    if netns is None:
        pytest.skip(why_not)
    status = second.status()
    assert status["netns"] == netns and status["running"]
    namespace_inode = os.stat(f"/run/netns/{netns}").st_ino
    for name, component in status["components"].items():
        assert os.stat(f"/proc/{component['pid']}/ns/net").st_ino == namespace_inode, name
    assert os.stat("/proc/self/ns/net").st_ino != namespace_inode
    whoami = _kubectl(kubectl_binary, second.kubeconfig, "auth", "whoami", "-o", "json", context="alice", netns=netns)
    assert json.loads(whoami.stdout)["status"]["userInfo"]["username"] == "alice"
    assert _kubectl(kubectl_binary, second.kubeconfig, "get", "--raw", "/readyz", netns=netns).stdout == "ok"
    # Not loopback: the `kubernetes` Service has the apiserver as its endpoint, as in a real cluster.
    slice_ = json.loads(_kubectl(kubectl_binary, second.kubeconfig, "get", "endpointslice", "kubernetes", "-o", "json",
                                 netns=netns).stdout)
    assert slice_["endpoints"][0]["addresses"] == [INSIDE_ADDRESS]
    assert second.api_url == f"https://{INSIDE_ADDRESS}:{status['ports']['apiserver']}"


def test_stop_after_kill_9_of_everything_cleans_up(second: ControlPlane,
                                                  throwaway_netns: tuple[str | None, str]) -> None:
    status = second.status()
    assert status["running"]
    for component in status["components"].values():
        os.kill(component["pid"], signal.SIGKILL)
    deadline = time.monotonic() + 10
    while any(process_alive(c["pid"]) for c in status["components"].values()) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not ControlPlane(second.state_dir).status()["running"]
    assert ControlPlane(second.state_dir).stop() == []  # nothing was left to stop, but files and ports are checked
    _assert_nothing_left(status, second, throwaway_netns[0])
