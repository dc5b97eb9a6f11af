"""`runbook sandbox up`: the sandbox on the real control plane, end to end.

One sandbox for the module, started with the real command line in a temporary state directory:
the real apiserver behind the fault proxy, the node agent's two nodes, the supervisor and
Prometheus inside the cluster's network namespace. Checked as an operator would: kubectl
through the users' kubeconfig, `runbook run` of the health check and of a deploy, `runbook
sandbox fault apiserver`, and the last test tears it down and checks that no network namespace,
process or port is left. Skipped (with the reason) when the control plane is not built or the
machine cannot make network namespaces.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runbooks_sandbox.controlplane import ControlPlaneNotBuilt, binaries
from runbooks_sandbox.network import ClusterNetwork
from runbooks_sandbox.servers.ports import is_port_free, process_alive

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = [sys.executable, "-m", "runbooks_lib.cli"]
POD_RANGE = ipaddress.ip_network("10.244.0.0/16")  # ClusterNetwork's default pod range
# Records and journals of the module's runs: a fresh folder, so the checkout's outputs/ stays
# untouched and no earlier run's record makes a version "known bad".
RECORDS = tempfile.mkdtemp(prefix="vz-real-stack-records-")
UP_BUDGET_S = 60.0  # the issue asks ≤ 30 s on 2 cores; measured ~20 s; room for a busy machine


def runbook(*args: str, check: bool = True, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*RUNBOOK, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                            env={**os.environ, "RUNBOOKS_HOME": str(REPO), "RUNBOOKS_RECORDS_URL": RECORDS, **env})
    if check and result.returncode != 0:
        raise AssertionError(f"runbook {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


@pytest.fixture(scope="module")
def kubectl_binary() -> str:
    try:
        return binaries().kubectl
    except ControlPlaneNotBuilt as e:
        pytest.skip(f"control plane not built: {e}")
    raise AssertionError("unreachable")


@pytest.fixture(scope="module")
def state_dir(kubectl_binary: str) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("the cluster network needs root (ip netns add)")
    path = Path(tempfile.mkdtemp(prefix="vz-real-stack-"))
    began = time.monotonic()
    up = runbook("sandbox", "up", "--state-dir", str(path), check=False, timeout=240)
    took = time.monotonic() - began
    try:
        assert up.returncode == 0, f"sandbox up failed:\n{up.stdout}\n{up.stderr}"
        print(f"sandbox up: {took:.1f} s")
        assert took < UP_BUDGET_S, f"sandbox up took {took:.1f} s"
        yield path
    finally:
        runbook("sandbox", "down", "--state-dir", str(path), check=False, timeout=120)
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def env(state_dir: Path) -> dict[str, str]:
    values = {}
    for line in (state_dir / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = value.strip("'")
    return values


@pytest.fixture(scope="module")
def kubectl(env: dict[str, str], kubectl_binary: str, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("kubectl-cache")

    def run(*args: str) -> str:
        result = subprocess.run([kubectl_binary, "--kubeconfig", env["KUBECONFIG"], "--cache-dir", str(cache), *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    return run


def test_the_users_kubeconfig_is_the_fault_proxy_in_front_of_the_real_apiserver(
        state_dir: Path, env: dict[str, str], kubectl) -> None:
    status = json.loads((state_dir / "faultproxy" / "status.json").read_text())
    assert env["KUBECONFIG"] == str(state_dir / "faultproxy" / "kubeconfig")
    assert f"127.0.0.1:{status['port']}" in kubectl("config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}")
    version = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert version == binaries().versions.kubernetes
    assert env["CLUSTER_REACH"] == "apiserver"
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["sandbox-node-1", "sandbox-node-2"]


def test_every_pod_runs_ready_on_a_pod_range_address(kubectl) -> None:
    pods = json.loads(kubectl("get", "pods", "-n", "veza-sandbox", "-o", "json"))["items"]
    assert len(pods) >= 9
    for pod in pods:
        name = pod["metadata"]["name"]
        assert pod["status"]["phase"] == "Running", name
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"]), name
        assert ipaddress.ip_address(pod["status"]["podIP"]) in POD_RANGE, name
        assert pod["spec"]["nodeName"].startswith("sandbox-node-"), name
    wide = kubectl("get", "pods", "-n", "veza-sandbox", "-o", "wide")
    assert "10.244." in wide


def test_status_names_the_versions_and_components(state_dir: Path) -> None:
    info = json.loads(runbook("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout)
    kube = info["kubernetes"]
    assert kube["versions"]["kubernetes"] == binaries().versions.kubernetes
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "fault-proxy",
                 "node-agent", "forwarder"):
        assert kube["components"][name]["pid"], name
    assert all(d["ready"] == d["replicas"] for d in info["deployments"].values())


def test_the_health_check_passes_through_the_api_servers_proxy(state_dir: Path) -> None:
    result = runbook("run", "notebooks/health_check.ipynb", "--env", "sandbox",
                     RUNBOOKS_SANDBOX_ENV=str(state_dir / "env"))
    assert "outcome: succeeded" in result.stdout


def test_a_deploy_rolls_out_with_no_failed_request(state_dir: Path) -> None:
    result = runbook("run", "notebooks/deploy.ipynb", "--env", "sandbox", "-p", "service", "veza-backend-api",
                     "-p", "version", "v1.4.0", RUNBOOKS_SANDBOX_ENV=str(state_dir / "env"))
    assert "outcome: succeeded" in result.stdout
    assert "0 failed of" in result.stdout


def test_api_faults_go_through_the_fault_proxy(state_dir: Path) -> None:
    said = runbook("sandbox", "fault", "apiserver", "--error-rate", "1.0", "--state-dir", str(state_dir)).stdout
    assert "100% of requests refused" in said
    from runbooks_sandbox.controlplane.faultproxy import FaultProxy

    assert FaultProxy(state_dir).faults()["error_rate"] == 1.0
    cleared = runbook("sandbox", "fault", "apiserver", "--clear", "--state-dir", str(state_dir)).stdout
    assert "cleared" in cleared
    assert FaultProxy(state_dir).faults()["error_rate"] == 0.0


def test_down_leaves_no_namespace_process_or_port(state_dir: Path) -> None:
    state = json.loads((state_dir / "sandbox.json").read_text())
    pids = [int(p["pid"]) for p in state["components"].values() if isinstance(p, dict) and p.get("pid")]
    ports = [int(p["port"]) for p in state["components"].values() if isinstance(p, dict) and p.get("port")]
    netns = ClusterNetwork(state_dir).name
    runbook("sandbox", "down", "--state-dir", str(state_dir), timeout=120)
    assert not ClusterNetwork(state_dir).exists()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert netns not in listed
    assert [pid for pid in pids if process_alive(pid)] == []
    assert [port for port in ports if not is_port_free(port)] == []
    strays = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert str(state_dir) not in strays
