"""The node agent (runbooks_sandbox.node) against the real control plane in the cluster network.

One SandboxCluster for the module (network namespace, forwarder, etcd, kube-apiserver,
controller manager, scheduler) and one node agent process with two nodes; the built kubectl
talks to the API server from the host as sandbox-admin, as a person would. Tests run in file
order: the later ones stop the agent, then kill -9 a second agent before the cluster stops.
Skipped when the control plane is not built or network namespaces are not permitted.
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import http.client
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runbooks_sandbox.cluster import SandboxCluster
from runbooks_sandbox.controlplane import ControlPlaneNotBuilt, binaries, read_versions
from runbooks_sandbox.manifests import SECRET_KEYS, deployment, load_services, secret_from_vault
from runbooks_sandbox.node import AgentSettings, NodeAgentProcess
from runbooks_sandbox.servers.ports import process_alive

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(900)]

HOME = Path(__file__).resolve().parents[2]
NS = "veza-sandbox"
NODES = ("sandbox-node-1", "sandbox-node-2")
POD_RANGE = ipaddress.ip_network("10.244.0.0/16")
NODE_RANGE = ipaddress.ip_network("172.18.0.0/24")
GRACE_PERIOD_S = 50  # the node lifecycle controller's --node-monitor-grace-period default (v1.32+)


class Sandbox:
    def __init__(self, state: Path, cluster: SandboxCluster, agent: NodeAgentProcess, kubectl: str) -> None:
        self.state, self.cluster, self.agent, self.kubectl_binary = state, cluster, agent, kubectl
        self.agent_started = time.monotonic()
        self.repository, specs = load_services(HOME)
        self.backend = next(s for s in specs if s.name == "veza-backend-api")

    def kubectl(self, *args: str, input: str | None = None, check: bool = True,
                timeout: float = 120) -> subprocess.CompletedProcess[str]:
        command = [self.kubectl_binary, "--kubeconfig", str(self.cluster.kubeconfig), "--context", "sandbox-admin",
                   "--cache-dir", str(self.state / ".kube-cache"), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=timeout,
                                env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
        if check and result.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} failed: {result.stdout}{result.stderr}")
        return result

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def apply(self, *objects: dict[str, Any]) -> None:
        self.kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List", "items": list(objects)}))

    def wait_for(self, what: str, check: Any, timeout: float = 90.0, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            last = check()
            if last:
                return last
            time.sleep(every)
        raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")

    def image(self, version: str) -> str:
        return f"{self.repository}/{self.backend.name}:{version}"


def _workload_pids(state: Path) -> list[int]:
    """Every workload process of this sandbox (its fault file lives under the state directory)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"runbooks_sandbox.workload" in cmdline and any(str(state).encode() in part for part in cmdline):
                if process_alive(int(entry.name)):
                    found.append(int(entry.name))
    return found


def _pid_of(state: Path, pod_ip: str) -> int:
    """The workload process listening on ``pod_ip``."""
    for pid in _workload_pids(state):
        words = Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
        if words[words.index("--host") + 1] == pod_ip:
            return pid
    raise AssertionError(f"no workload process on {pod_ip}")


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    try:
        kubectl = binaries().kubectl
    except ControlPlaneNotBuilt as e:
        pytest.skip(f"control plane not built: {e}")
    if os.geteuid() != 0:
        pytest.skip("the cluster network needs root (ip netns add)")
    state = Path(tempfile.mkdtemp(prefix="vz-node-test-"))
    cluster = SandboxCluster(state)
    agent = NodeAgentProcess(state)
    try:
        cluster.start(host_ports={})
        agent.start(AgentSettings(nodes=NODES))
        yield Sandbox(state, cluster, agent, kubectl)
    finally:
        agent.stop()
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


def _get(host: str, port: int, path: str) -> bytes:
    """GET http://host:port/path (run inside the cluster network)."""
    connection = http.client.HTTPConnection(host, port, timeout=5)
    try:
        connection.request("GET", path)
        return connection.getresponse().read()
    finally:
        connection.close()


def _ready(node: dict[str, Any]) -> bool:
    return any(c["type"] == "Ready" and c["status"] == "True" for c in node["status"].get("conditions") or [])


def _container_status(pod: dict[str, Any]) -> dict[str, Any]:
    return ((pod.get("status") or {}).get("containerStatuses") or [{}])[0]


# -- nodes ------------------------------------------------------------------------------------------

def test_two_nodes_register_ready_with_addresses_version_and_leases(sandbox: Sandbox) -> None:
    # A new Node gets node.kubernetes.io/not-ready:NoSchedule from the TaintNodesByCondition
    # admission plugin; the node lifecycle controller lifts it once it sees Ready=True (~5 s).
    sandbox.wait_for("both nodes untainted", lambda: all(
        not n["spec"].get("taints") for n in sandbox.json("get", "nodes")["items"]), timeout=60)
    nodes = {n["metadata"]["name"]: n for n in sandbox.json("get", "nodes")["items"]}
    assert sorted(nodes) == list(NODES)
    for node in nodes.values():
        assert _ready(node)
        status = node["status"]
        assert status["nodeInfo"]["kubeletVersion"] == read_versions().kubernetes
        internal = [a["address"] for a in status["addresses"] if a["type"] == "InternalIP"]
        assert len(internal) == 1 and ipaddress.ip_address(internal[0]) in NODE_RANGE
        assert status["daemonEndpoints"]["kubeletEndpoint"]["Port"] == 10250
        assert status["allocatable"]["pods"] == "110" and status["capacity"]["cpu"]
        assert not node["spec"].get("taints")
    leases = sandbox.json("get", "leases", "-n", "kube-node-lease")["items"]
    assert sorted(lease["metadata"]["name"] for lease in leases) == list(NODES)
    assert all(lease["spec"]["holderIdentity"] in NODES for lease in leases)


# -- a Deployment of the Veza workload ----------------------------------------------------------------

def test_deployment_gets_running_ready_pods_on_pod_range_addresses(sandbox: Sandbox) -> None:
    secret = secret_from_vault({key: ("postgresql://veza@127.0.0.1:1/veza" if key == "database_url" else f"not-{key}")
                                for key in SECRET_KEYS.values()})
    began = time.monotonic()
    sandbox.apply(secret, deployment(sandbox.backend, sandbox.repository, replicas=2))
    sandbox.kubectl("rollout", "status", f"deployment/{sandbox.backend.name}", "-n", NS, "--timeout=120s", timeout=150)
    print(f"\ndeployment of 2 available in {time.monotonic() - began:.1f} s")
    pods = sandbox.json("get", "pods", "-n", NS, "-l", f"app={sandbox.backend.name}")["items"]
    assert len(pods) == 2
    nodes = {n["metadata"]["name"]: n for n in sandbox.json("get", "nodes")["items"]}
    for pod in pods:
        status = pod["status"]
        assert status["phase"] == "Running"
        conditions = {c["type"]: c["status"] for c in status["conditions"]}
        assert conditions == {**conditions, "PodScheduled": "True", "Initialized": "True",
                              "ContainersReady": "True", "Ready": "True"}
        assert ipaddress.ip_address(status["podIP"]) in POD_RANGE and status["podIPs"] == [{"ip": status["podIP"]}]
        node = nodes[pod["spec"]["nodeName"]]
        assert status["hostIP"] in [a["address"] for a in node["status"]["addresses"]]
        container = _container_status(pod)
        assert container["ready"] and container["started"] and "running" in container["state"]
        # The process listens on the pod's own address, inside the cluster network.
        body = sandbox.cluster.network.call(_get, status["podIP"], sandbox.backend.port, "/version")
        assert json.loads(body)["pod"] == pod["metadata"]["name"]
    # The Secret's keys reached the environment (valueFrom secretKeyRef, through the Node authorizer).
    pid = next(p for p in _workload_pids(sandbox.state))
    environ = dict(item.split(b"=", 1) for item in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0") if b"=" in item)
    assert environ[b"JWT_SECRET"] == b"not-jwt_secret"
    rss = [int(line.split()[1]) for p in _workload_pids(sandbox.state)
           for line in Path(f"/proc/{p}/status").read_text().splitlines() if line.startswith("VmRSS:")]
    print(f"workload RSS per pod: {', '.join(f'{kb / 1024:.0f} MiB' for kb in rss)}")


def _backend_pods(sandbox: Sandbox) -> list[dict[str, Any]]:
    return [p for p in sandbox.json("get", "pods", "-n", NS, "-l", f"app={sandbox.backend.name}")["items"]
            if not p["metadata"].get("deletionTimestamp")]


def test_kubectl_logs_and_logs_follow_go_through_the_api_server(sandbox: Sandbox) -> None:
    pod = _backend_pods(sandbox)[0]["metadata"]["name"]
    out = sandbox.kubectl("logs", "-n", NS, pod).stdout
    assert f"pod={pod} listening on http://" in out
    assert sandbox.kubectl("logs", "-n", NS, pod, "--timestamps", "--tail=1").stdout.startswith("20")
    command = [sandbox.kubectl_binary, "--kubeconfig", str(sandbox.cluster.kubeconfig), "--context", "sandbox-admin",
               "logs", "-f", "-n", NS, pod]
    follower = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert follower.stdout is not None
        first = follower.stdout.readline()
        assert "listening on http://" in first
        time.sleep(1)
        assert follower.poll() is None, "kubectl logs -f ended while the container runs"
    finally:
        follower.send_signal(signal.SIGINT)
        follower.wait(timeout=10)
    missing = sandbox.kubectl("logs", "-n", NS, pod, "--previous", check=False)
    assert missing.returncode != 0 and "previous terminated container" in missing.stderr


# -- pods that do not start -------------------------------------------------------------------------

def _bare_pod(name: str, image: str, **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": NS, "labels": {"test": name}},
            "spec": {"containers": [{"name": "app", "image": image, "ports": [{"containerPort": 8080}]}], **spec}}


def test_an_image_not_in_the_catalog_is_err_image_pull_then_image_pull_back_off(sandbox: Sandbox) -> None:
    sandbox.apply(_bare_pod("no-such-tag", sandbox.image("v9.9.9")))
    seen: set[str] = set()

    def back_off() -> bool:
        waiting = _container_status(sandbox.json("get", "pod", "-n", NS, "no-such-tag")).get("state", {}).get("waiting")
        if waiting:
            seen.add(waiting["reason"])
        return "ImagePullBackOff" in seen

    sandbox.wait_for("ImagePullBackOff", back_off, timeout=60, every=0.2)
    assert seen <= {"ErrImagePull", "ImagePullBackOff", "ContainerCreating"}, seen
    pod = sandbox.json("get", "pod", "-n", NS, "no-such-tag")
    assert pod["status"]["phase"] == "Pending"
    sandbox.kubectl("delete", "pod", "-n", NS, "no-such-tag", "--wait=true", timeout=60)


def test_a_crashing_container_restarts_into_crash_loop_back_off(sandbox: Sandbox) -> None:
    sandbox.apply(_bare_pod("crasher", sandbox.image("v1.5.4-crash")))

    def crash_looping() -> dict[str, Any] | None:
        status = _container_status(sandbox.json("get", "pod", "-n", NS, "crasher"))
        waiting = status.get("state", {}).get("waiting") or {}
        return status if status.get("restartCount", 0) > 0 and waiting.get("reason") == "CrashLoopBackOff" else None

    status = sandbox.wait_for("CrashLoopBackOff", crash_looping, timeout=60, every=0.3)
    assert status["lastState"]["terminated"]["exitCode"] == 1 and not status["ready"]
    previous = sandbox.kubectl("logs", "-n", NS, "crasher", "--previous").stdout
    assert "panic: veza-backend-api v1.5.4-crash failed to start" in previous
    sandbox.kubectl("delete", "pod", "-n", NS, "crasher", "--wait=true", timeout=60)


# -- probes ---------------------------------------------------------------------------------------

def _probe(path: str, **times: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": 8080}, **times}


def test_a_startup_probe_holds_started_and_ready_back_and_config_maps_reach_the_environment(sandbox: Sandbox) -> None:
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "tuning", "namespace": NS},
              "data": {"mode": "careful"}}
    pod = _bare_pod("slow-start", sandbox.image("v1.5.0"))
    container = pod["spec"]["containers"][0]
    container["startupProbe"] = _probe("/health", initialDelaySeconds=30, periodSeconds=10)  # 3 s, then every 1 s
    container["env"] = [{"name": "MODE", "valueFrom": {"configMapKeyRef": {"name": "tuning", "key": "mode"}}}]
    sandbox.apply(config, pod)

    def status() -> dict[str, Any]:
        return _container_status(sandbox.json("get", "pod", "-n", NS, "slow-start"))

    early = sandbox.wait_for("the container running", lambda: (s := status()).get("state", {}).get("running") and s)
    assert early["started"] is False and early["ready"] is False
    later = sandbox.wait_for("started and ready", lambda: (s := status())["started"] and s["ready"] and s, timeout=30)
    assert later["restartCount"] == 0
    ip = sandbox.json("get", "pod", "-n", NS, "slow-start")["status"]["podIP"]
    pid = _pid_of(sandbox.state, ip)
    assert b"MODE=careful" in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    sandbox.kubectl("delete", "pod", "-n", NS, "slow-start", "--wait=true", timeout=60)


def test_a_failing_liveness_probe_restarts_the_container(sandbox: Sandbox) -> None:
    pod = _bare_pod("not-alive", sandbox.image("v1.5.0"))
    pod["spec"]["containers"][0]["livenessProbe"] = _probe("/no-such-path", periodSeconds=10, failureThreshold=2)
    sandbox.apply(pod)
    sandbox.wait_for("a restart", lambda: _container_status(sandbox.json("get", "pod", "-n", NS, "not-alive"))
                     .get("restartCount", 0) >= 1, timeout=60)
    messages = [e["message"] for e in sandbox.json("get", "events", "-n", NS, "--field-selector",
                                                   "involvedObject.name=not-alive")["items"]]
    assert any("failed liveness probe, will be restarted" in m for m in messages), messages
    sandbox.kubectl("delete", "pod", "-n", NS, "not-alive", "--wait=true", timeout=60)


def test_a_version_that_never_gets_ready_runs_but_stays_out_of_ready(sandbox: Sandbox) -> None:
    pod = _bare_pod("never-ready", sandbox.image("v1.5.3-noready"))
    pod["spec"]["containers"][0]["readinessProbe"] = _probe("/ready", periodSeconds=5)
    sandbox.apply(pod)
    sandbox.wait_for("Running", lambda: sandbox.json("get", "pod", "-n", NS, "never-ready")["status"]["phase"]
                     == "Running")
    time.sleep(3)  # six readiness periods
    status = sandbox.json("get", "pod", "-n", NS, "never-ready")["status"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "False" and ready["reason"] == "ContainersNotReady"
    assert _container_status({"status": status})["started"] is True
    sandbox.kubectl("delete", "pod", "-n", NS, "never-ready", "--wait=true", timeout=60)


# -- rollouts and deletion --------------------------------------------------------------------------

def test_a_rolling_update_to_another_catalog_version_completes(sandbox: Sandbox) -> None:
    name = sandbox.backend.name
    began = time.monotonic()
    sandbox.kubectl("set", "image", f"deployment/{name}", "-n", NS, f"{name}={sandbox.image('v1.6.0')}")
    sandbox.kubectl("rollout", "status", f"deployment/{name}", "-n", NS, "--timeout=150s", timeout=180)
    print(f"\nrolling update of 2 pods in {time.monotonic() - began:.1f} s")
    sandbox.wait_for("only v1.6.0 pods", lambda: [p["spec"]["containers"][0]["image"] for p in
                                                   sandbox.json("get", "pods", "-n", NS, "-l", f"app={name}")["items"]]
                     == [sandbox.image("v1.6.0")] * 2, timeout=60)


def test_deleting_a_pod_runs_it_down_gracefully_and_the_replicaset_replaces_it(sandbox: Sandbox) -> None:
    victim = _backend_pods(sandbox)[0]
    name, ip = victim["metadata"]["name"], victim["status"]["podIP"]
    pid = _pid_of(sandbox.state, ip)
    follower = subprocess.Popen([sandbox.kubectl_binary, "--kubeconfig", str(sandbox.cluster.kubeconfig),
                                 "--context", "sandbox-admin", "logs", "-f", "-n", NS, name],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1)  # the follow is open
    began = time.monotonic()
    sandbox.kubectl("delete", "pod", "-n", NS, name, "--wait=true", timeout=60)
    took = time.monotonic() - began
    print(f"\npod deletion (grace 30 s scaled to 3 s) took {took:.1f} s")
    assert not process_alive(pid)
    # SIGTERM, not SIGKILL: the workload drained, said so, and `kubectl logs -f` ended with it.
    out, _ = follower.communicate(timeout=10)
    assert "signal received: draining" in out, out
    reasons = [e["reason"] for e in sandbox.json("get", "events", "-n", NS, "--field-selector",
                                                 f"involvedObject.name={name}")["items"]]
    assert "Killing" in reasons
    sandbox.kubectl("rollout", "status", f"deployment/{sandbox.backend.name}", "-n", NS, "--timeout=90s", timeout=120)
    pods = _backend_pods(sandbox)
    assert len(pods) == 2 and name not in [p["metadata"]["name"] for p in pods]


def test_pre_stop_sleep_runs_before_the_signal(sandbox: Sandbox) -> None:
    pod = _bare_pod("pre-stop", sandbox.image("v1.5.0"), terminationGracePeriodSeconds=60)
    pod["spec"]["containers"][0]["lifecycle"] = {"preStop": {"sleep": {"seconds": 30}}}  # 3 s at time scale 0.1
    sandbox.apply(pod)
    sandbox.kubectl("wait", "--for=condition=Ready", "pod/pre-stop", "-n", NS, "--timeout=60s", timeout=90)
    began = time.monotonic()
    sandbox.kubectl("delete", "pod", "-n", NS, "pre-stop", "--wait=true", timeout=60)
    took = time.monotonic() - began
    assert 3.0 <= took < 6.0 + 5, f"deletion took {took:.1f} s; the preStop sleep is 3 s (scaled)"


def test_a_failing_pre_stop_http_get_is_reported_and_the_pod_still_goes(sandbox: Sandbox) -> None:
    pod = _bare_pod("pre-stop-http", sandbox.image("v1.5.0"))
    pod["spec"]["containers"][0]["lifecycle"] = {"preStop": {"httpGet": {"path": "/drain", "port": 9}}}
    sandbox.apply(pod)
    sandbox.kubectl("wait", "--for=condition=Ready", "pod/pre-stop-http", "-n", NS, "--timeout=60s", timeout=90)
    sandbox.kubectl("delete", "pod", "-n", NS, "pre-stop-http", "--wait=true", timeout=60)
    events = sandbox.json("get", "events", "-n", NS, "--field-selector", "involvedObject.name=pre-stop-http")["items"]
    failed = [e["message"] for e in events if e["reason"] == "FailedPreStopHook"]
    assert failed and "connection refused" in failed[0], failed


# -- the nodes stay Ready past the grace period ------------------------------------------------------

def test_nodes_are_still_ready_after_the_node_monitor_grace_period(sandbox: Sandbox) -> None:
    wait = GRACE_PERIOD_S + 5 - (time.monotonic() - sandbox.agent_started)
    if wait > 0:
        time.sleep(wait)
    print(f"\nnodes checked {time.monotonic() - sandbox.agent_started:.0f} s after the agent started")
    for node in sandbox.json("get", "nodes")["items"]:
        assert _ready(node), node["status"]["conditions"]
        assert not node["spec"].get("taints"), node["spec"]["taints"]


# -- the project's runner image: how a runbook runs on a schedule inside the cluster ------------------

def _runner_image() -> str:
    from runbooks_sandbox.runtime.runner_image import runner_tags

    return f"registry.veza.app/veza-runbooks:v{sorted(runner_tags() - {'latest'})[0].lstrip('v')}"


def test_a_cronjob_runs_the_projects_runner_image_as_a_pod(sandbox: Sandbox) -> None:
    """The real CronJob and Job controllers make the pod, the node agent runs the runner as a local process."""
    cronjob = {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": "nightly", "namespace": NS},
               "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"backoffLimit": 0, "template": {"spec": {
                   "restartPolicy": "Never",
                   "containers": [{"name": "task", "image": _runner_image(),
                                   "command": ["runbook", "records", "--help"]}]}}}}}}
    sandbox.apply(cronjob)
    try:
        assert "job.batch/by-hand created" in sandbox.kubectl("create", "job", "by-hand", "-n", NS,
                                                              "--from=cronjob/nightly").stdout
        sandbox.kubectl("wait", "-n", NS, "--for=condition=complete", "job/by-hand", "--timeout=90s", timeout=120)
        assert "Find, verify, seal and export run records" in sandbox.kubectl("logs", "-n", NS, "job/by-hand").stdout
    finally:
        sandbox.kubectl("delete", "cronjob,job", "-n", NS, "nightly", "by-hand", "--ignore-not-found", check=False)


def test_a_pod_running_a_shell_in_the_runner_image_fails_to_start_saying_why(sandbox: Sandbox, tmp_path: Path) -> None:
    """The runner image runs `runbook run|resume|records` and papermill only (tests/security/test_runner_image.py
    holds the rest of its rules): `sh -c` is a CreateContainerError, and nothing runs."""
    proof = tmp_path / "owned"
    pod = _bare_pod("shell", _runner_image(), restartPolicy="Never")
    pod["spec"]["containers"][0].update(command=["sh", "-c", f"touch {proof}"])
    sandbox.apply(pod)
    try:
        def refused() -> dict[str, Any] | None:
            waiting = _container_status(sandbox.json("get", "pod", "-n", NS, "shell")).get("state", {}).get("waiting")
            return waiting if waiting and waiting.get("reason") == "CreateContainerError" else None

        waiting = sandbox.wait_for("CreateContainerError", refused, timeout=60, every=0.3)
        assert 'exec: "sh"' in waiting["message"] and "runs only runbook run" in waiting["message"]
        events = sandbox.json("get", "events", "-n", NS, "--field-selector", "involvedObject.name=shell")["items"]
        assert any("runs only runbook run" in e["message"] for e in events if e.get("reason") == "Failed"), events
        assert not proof.exists()
    finally:
        sandbox.kubectl("delete", "pod", "-n", NS, "shell", "--wait=true", timeout=60, check=False)


# -- stopping ---------------------------------------------------------------------------------------

def test_stopping_the_agent_leaves_no_pod_process(sandbox: Sandbox) -> None:
    pods = _workload_pids(sandbox.state)
    assert pods
    agent_pid = sandbox.agent.pidfile.read()
    rss = next(int(line.split()[1]) for line in Path(f"/proc/{agent_pid}/status").read_text().splitlines()
               if line.startswith("VmRSS:"))
    print(f"\nagent RSS {rss / 1024:.0f} MiB with {len(pods)} pod processes")
    began = time.monotonic()
    assert sandbox.agent.stop()
    print(f"agent stopped in {time.monotonic() - began:.1f} s")
    assert _workload_pids(sandbox.state) == []


def test_after_kill_9_of_the_agent_the_cluster_stop_leaves_no_process(sandbox: Sandbox) -> None:
    sandbox.agent.start(AgentSettings(nodes=NODES))  # the same pods come back, on their addresses
    sandbox.wait_for("the workload running again", lambda: len(_workload_pids(sandbox.state)) >= 2, timeout=60)
    agent_pid = sandbox.agent.pidfile.read()
    assert agent_pid is not None
    os.kill(agent_pid, signal.SIGKILL)
    sandbox.wait_for("the agent gone", lambda: not process_alive(agent_pid), timeout=10)
    # The pods may outlive it for a while (until their next log write meets the dead agent's
    # pipe), or be gone already; either way, deleting the namespace leaves none.
    print(f"\n{len(_workload_pids(sandbox.state))} pod process(es) alive after kill -9 of the agent")
    sandbox.cluster.stop()
    assert _workload_pids(sandbox.state) == []
    assert not sandbox.cluster.network.exists()
