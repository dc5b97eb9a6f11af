"""`runbook sandbox up|status|traffic|fault|down`: the whole local Veza platform, through real clients.

One sandbox is started for the module with the real command line (in a temporary state
directory): the real apiserver behind the fault proxy, the node agent's two nodes, the supervisor
and Prometheus inside the cluster's network namespace. Everything is checked the way an operator
would: kubectl through the users' kubeconfig, hvac, psycopg, Prometheus' HTTP API, `runbook run`
and `runbook sandbox traffic|fault|status`; what only the cluster network reaches (pod IPs,
Service ClusterIPs) is asked from a process inside its namespace. The test that tears it down
checks that no network namespace, process or port is left; the tests after it need no sandbox,
or start (and stop) one of their own. Skipped (with the reason) when the control plane is not
built or the machine cannot make network namespaces.
"""
from __future__ import annotations

import base64
import ipaddress
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import hvac
import psycopg
import pytest
import requests

from runbooks_sandbox.controlplane import ControlPlaneNotBuilt, binaries
from runbooks_sandbox.network import ClusterNetwork
from runbooks_sandbox.servers.datadir import server_data_dir
from runbooks_sandbox.servers.ports import is_port_free, process_alive

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = [sys.executable, "-m", "runbooks_lib.cli"]
POD_RANGE = ipaddress.ip_network("10.244.0.0/16")  # ClusterNetwork's default pod range
ENV_NAMES = ("KUBECONFIG", "CLUSTER_UID", "VAULT_ADDR", "VAULT_TOKEN", "PROMETHEUS_URL", "PG_PRIMARY_DSN",
             "PG_STANDBY_DSN", "REDIS_URL", "TRAFFIC_URL", "NAMESPACE", "NOTIFY_URL", "CLUSTER_REACH")
# Records and journals of the module's runs: a fresh folder, so the checkout's outputs/ stays
# untouched and no earlier run's record makes a version "known bad".
RECORDS = tempfile.mkdtemp(prefix="vz-stack-records-")
UP_BUDGET_S = 60.0  # the issue asks ≤ 30 s on 2 cores; measured ~20 s; room for a busy machine


def runbook(*args: str, check: bool = True, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*RUNBOOK, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                            env={**os.environ, "RUNBOOKS_HOME": str(REPO), "RUNBOOKS_RECORDS_URL": RECORDS, **env})
    if check and result.returncode != 0:
        raise AssertionError(f"runbook {' '.join(args)} exited {result.returncode}:\n{result.stdout[-3000:]}\n"
                             f"{result.stderr[-3000:]}")
    return result


def _state_dir(prefix: str) -> Path:
    # Private (mode 0700), as a checkout in root's home is: user postgres cannot traverse it, so
    # the sandbox keeps the database's files elsewhere (runbooks_sandbox.servers.datadir).
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="module")
def kubectl_binary() -> str:
    try:
        return binaries().kubectl
    except ControlPlaneNotBuilt as e:
        pytest.skip(f"control plane not built: {e}")
    raise AssertionError("unreachable")


def _needs_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("the cluster network needs root (ip netns add)")


@pytest.fixture(scope="module")
def state_dir(kubectl_binary: str) -> Iterator[Path]:
    _needs_root()
    path = _state_dir("vz-stack-")
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


def _read_env(state_dir: Path) -> dict[str, str]:
    values = {}
    for line in (state_dir / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            values[key] = value.strip("'")
    return values


@pytest.fixture(scope="module")
def env(state_dir: Path) -> dict[str, str]:
    return _read_env(state_dir)


@pytest.fixture(scope="module")
def kubectl(env: dict[str, str], kubectl_binary: str, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("kubectl-cache")  # discovery is cached per host:port

    def run(*args: str, input: str | None = None) -> str:
        result = subprocess.run([kubectl_binary, "--kubeconfig", env["KUBECONFIG"], "--cache-dir", str(cache), *args],
                                input=input, capture_output=True, text=True, timeout=150)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    return run


def _pods(kubectl, namespace: str = "veza-sandbox") -> list[dict]:
    return [p for p in json.loads(kubectl("get", "pods", "-n", namespace, "-o", "json"))["items"]
            if not p["metadata"].get("deletionTimestamp")]


# What only the cluster network reaches (pod IPs, ClusterIPs): GETs sent from inside its namespace.
_INSIDE = """
import http.client, json, sys
host, port, path, count, headers = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4]), json.loads(sys.argv[5])
connection, answers = http.client.HTTPConnection(host, port, timeout=10), []
for _ in range(count):
    connection.request("GET", path, headers=headers)
    response = connection.getresponse()
    body = response.read().decode("utf-8", "replace")
    answers.append([response.status, body, response.getheader("X-Veza-Upstream") or ""])
print(json.dumps(answers))
"""


def _get_inside(state_dir: Path, host: str, port: int, path: str, count: int = 1,
                headers: dict[str, str] | None = None) -> list[tuple[int, str, str]]:
    """``count`` GETs over one kept-alive connection from inside the cluster network: (status, body, upstream)."""
    argv = ClusterNetwork(state_dir).exec_argv([sys.executable, "-c", _INSIDE, host, str(port), path, str(count),
                                                json.dumps(headers or {})])
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return [tuple(answer) for answer in json.loads(out.stdout)]  # type: ignore[misc]


def _catalog_replicas() -> dict[str, int]:
    import yaml

    services = yaml.safe_load((REPO / "parameters" / "services.yaml").read_text())["services"]
    return {name: int(spec["replicas"]) for name, spec in services.items()}


def _wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


# -- what `up` made -------------------------------------------------------------------------------

def test_env_file_is_private_and_feeds_the_sandbox_profile(state_dir: Path, env: dict[str, str]) -> None:
    assert (state_dir / "env").stat().st_mode & 0o777 == 0o600
    assert set(ENV_NAMES) <= set(env)
    assert env["NAMESPACE"] == "veza-sandbox" and env["CLUSTER_REACH"] == "apiserver"
    # Every ${sandbox:NAME} of parameters/sandbox.yaml resolves from it.
    code = ("from runbooks_lib.config.profiles import load_profile; p = load_profile('sandbox'); "
            "print(p.cluster.namespace, p.prometheus.url, p.cluster.reach)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "RUNBOOKS_HOME": str(REPO),
                              "RUNBOOKS_SANDBOX_ENV": str(state_dir / "env")}).stdout.split()
    assert out == ["veza-sandbox", env["PROMETHEUS_URL"], "apiserver"]


def test_the_users_kubeconfig_is_the_fault_proxy_in_front_of_the_real_apiserver(
        state_dir: Path, env: dict[str, str], kubectl) -> None:
    status = json.loads((state_dir / "faultproxy" / "status.json").read_text())
    assert env["KUBECONFIG"] == str(state_dir / "faultproxy" / "kubeconfig")
    assert f"127.0.0.1:{status['port']}" in kubectl("config", "view", "--minify", "-o",
                                                    "jsonpath={.clusters[0].cluster.server}")
    version = json.loads(kubectl("version", "-o", "json"))["serverVersion"]["gitVersion"]
    assert version == binaries().versions.kubernetes
    nodes = json.loads(kubectl("get", "nodes", "-o", "json"))["items"]
    assert sorted(n["metadata"]["name"] for n in nodes) == ["sandbox-node-1", "sandbox-node-2"]


def test_every_pod_of_the_catalog_runs_ready_on_a_pod_range_address(state_dir: Path, kubectl) -> None:
    pods = _pods(kubectl)
    apps = [p["metadata"]["labels"]["app"] for p in pods]
    # The catalog's shape: as many pods of each service as parameters/services.yaml says.
    assert {app: apps.count(app) for app in set(apps)} == _catalog_replicas()
    wide = kubectl("get", "pods", "-n", "veza-sandbox", "-o", "wide")
    for pod in pods:
        name, ip = pod["metadata"]["name"], pod["status"]["podIP"]
        assert pod["status"]["phase"] == "Running", name
        assert any(c["type"] == "Ready" and c["status"] == "True" for c in pod["status"]["conditions"]), name
        assert ipaddress.ip_address(ip) in POD_RANGE, name
        assert pod["spec"]["nodeName"].startswith("sandbox-node-"), name
        assert name in wide and ip in wide
    # Each pod answers on its own IP and container port, as itself.
    backend = next(p for p in pods if p["metadata"]["labels"]["app"] == "veza-backend-api")
    port = backend["spec"]["containers"][0]["ports"][0]["containerPort"]
    [(status, body, _)] = _get_inside(state_dir, backend["status"]["podIP"], port, "/version")
    assert status == 200 and json.loads(body)["pod"] == backend["metadata"]["name"]


def test_hvac_reads_the_seeded_secret_which_the_cluster_secret_mirrors(env: dict[str, str], kubectl) -> None:
    client = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
    secret = client.secrets.kv.v2.read_secret_version(
        path="veza/sandbox", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
    assert secret["database_url"] == env["PG_PRIMARY_DSN"]
    synced = json.loads(kubectl("get", "secret", "veza-secrets", "-n", "veza-sandbox", "-o", "json"))["data"]
    assert set(synced) == {"database-url", "redis-url", "jwt-secret", "stripe-api-key"}
    assert base64.b64decode(synced["jwt-secret"]).decode() == secret["jwt_secret"]


def test_the_standby_replicates_the_primary(env: dict[str, str]) -> None:
    marker = f"stack-test-{time.time_ns()}"
    with psycopg.connect(env["PG_PRIMARY_DSN"], autocommit=True) as primary:
        primary.execute("CREATE TABLE IF NOT EXISTS stack_probe (note text)")
        primary.execute("INSERT INTO stack_probe VALUES (%s)", (marker,))
    deadline = time.monotonic() + 10
    with psycopg.connect(env["PG_STANDBY_DSN"], autocommit=True) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone()[0] is True
        while time.monotonic() < deadline:
            if standby.execute("SELECT to_regclass('stack_probe')").fetchone()[0] and \
                    standby.execute("SELECT count(*) FROM stack_probe WHERE note = %s", (marker,)).fetchone()[0]:
                return
            time.sleep(0.1)
    pytest.fail("the row written on the primary never reached the standby")


def test_prometheus_has_samples_for_every_pod(env: dict[str, str], kubectl) -> None:
    names = {p["metadata"]["name"] for p in _pods(kubectl)}
    reply = requests.get(f"{env['PROMETHEUS_URL']}/api/v1/query",
                         params={"query": 'up{namespace="veza-sandbox"} == 1'}, timeout=5).json()
    up = {series["metric"]["pod"]: series["metric"]["job"] for series in reply["data"]["result"]}
    assert names <= set(up)
    assert up[next(n for n in names if n.startswith("veza-backend-api"))] == "veza-backend-api"


def test_status_names_the_versions_components_and_memory(state_dir: Path) -> None:
    info = json.loads(runbook("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout)
    assert info["running"] is True
    assert {"supervisor", "openbao", "prometheus", "postgres_primary", "postgres_standby", "redis", "faultproxy",
            "node_agent"} <= set(info["components"])
    assert all(part["alive"] for part in info["components"].values())
    assert {name: d["ready"] for name, d in info["deployments"].items()} == _catalog_replicas()
    kube = info["kubernetes"]
    assert kube["versions"]["kubernetes"] == binaries().versions.kubernetes
    for name in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "fault-proxy",
                 "node-agent", "forwarder"):
        assert kube["components"][name]["pid"], name
    # The memory cost: every component (the control plane's too) and every app's pods, adding up to the total.
    memory = info["memory"]
    assert set(info["components"]) | {"etcd", "kube-apiserver"} <= set(memory["components"])
    assert memory["by_app"]["veza-chat-server"]["pods"] == _catalog_replicas()["veza-chat-server"]
    assert all(entry["mb"] > 5 for entry in memory["by_app"].values())
    assert memory["total_mb"] == pytest.approx(sum(memory["components"].values()) + memory["pods_mb"], abs=0.5)
    text = runbook("sandbox", "status", "--state-dir", str(state_dir)).stdout
    assert "memory (RSS):" in text and "pods of veza-frontend" in text and "real control plane" in text


def test_up_again_says_it_already_runs(state_dir: Path) -> None:
    again = runbook("sandbox", "up", "--state-dir", str(state_dir))
    assert "already runs" in again.stderr


def test_the_guides_ingress_and_backend_hpa_are_applied(kubectl) -> None:
    hpa = json.loads(kubectl("get", "hpa", "veza-backend-hpa", "-n", "veza-sandbox", "-o", "json"))
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"], spec["scaleTargetRef"]["name"]) == (3, 10, "veza-backend-api")
    ingress = json.loads(kubectl("get", "ingress", "veza-ingress", "-n", "veza-sandbox", "-o", "json"))
    hosts = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["spec"]["rules"]}
    assert hosts == {"api.veza.app": "veza-backend-api", "veza.app": "veza-frontend"}
    assert "default" in kubectl("get", "serviceaccounts", "-n", "veza-sandbox")


# -- the runbooks, traffic and the Service proxy ----------------------------------------------------

def test_the_health_check_passes_through_the_api_servers_proxy(state_dir: Path) -> None:
    result = runbook("run", "notebooks/health_check.ipynb", "--env", "sandbox",
                     RUNBOOKS_SANDBOX_ENV=str(state_dir / "env"))
    assert "outcome: succeeded" in result.stdout


def test_rolling_update_under_load_loses_no_request(state_dir: Path, kubectl) -> None:
    since = datetime.now(timezone.utc).isoformat()
    kubectl("set", "image", "-n", "veza-sandbox", "deployment/veza-backend-api",
            "veza-backend-api=registry.veza.app/veza-backend-api:v1.6.0")
    kubectl("rollout", "status", "-n", "veza-sandbox", "deployment/veza-backend-api", "--timeout=120s")
    time.sleep(1.0)  # requests sent during the last pod switch are answered
    report = json.loads(runbook("sandbox", "traffic", "--json", "--since", since,
                                "--state-dir", str(state_dir)).stdout)
    backend = report["veza-backend-api"]
    assert backend["requests"] > 20
    assert backend["failed"] == 0, backend
    assert {"v1.5.0", "v1.6.0"} <= set(backend["by_version"])
    images = {p["spec"]["containers"][0]["image"] for p in _pods(kubectl)
              if p["metadata"]["labels"]["app"] == "veza-backend-api"}
    assert images == {"registry.veza.app/veza-backend-api:v1.6.0"}


def test_a_deploy_rolls_out_with_no_failed_request(state_dir: Path) -> None:
    result = runbook("run", "notebooks/deploy.ipynb", "--env", "sandbox", "-p", "service", "veza-backend-api",
                     "-p", "version", "v1.4.0", RUNBOOKS_SANDBOX_ENV=str(state_dir / "env"))
    assert "outcome: succeeded" in result.stdout
    assert "0 failed of" in result.stdout


def test_kubectl_logs_and_events(kubectl) -> None:
    pod = next(p["metadata"]["name"] for p in _pods(kubectl) if p["metadata"]["labels"]["app"] == "veza-frontend")
    assert kubectl("logs", "-n", "veza-sandbox", pod).strip()
    events = kubectl("get", "events", "-n", "veza-sandbox")
    assert "ScalingReplicaSet" in events and "Started" in events


def _proxy_test_objects(namespace: str) -> list[dict[str, Any]]:
    """The guide's canary in a namespace of its own: stable (2 pods) and canary (1 pod) Deployments
    behind one Service, with the Istio subsets."""
    def deployment(track: str, replicas: int, version: str) -> dict[str, Any]:
        labels = {"app": "api", "track": track}
        return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"api-{track}", "namespace": namespace},
                "spec": {"replicas": replicas, "selector": {"matchLabels": labels}, "template": {
                    "metadata": {"labels": labels}, "spec": {"containers": [{
                        "name": "backend", "image": f"registry.veza.app/veza-backend-api:{version}",
                        "ports": [{"containerPort": 8080}],
                        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}, "periodSeconds": 5}}]}}}}

    return [
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}},
        deployment("stable", 2, "v1.4.0"), deployment("canary", 1, "v1.5.0"),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "api", "namespace": namespace},
         "spec": {"selector": {"app": "api"}, "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}},
        {"apiVersion": "networking.istio.io/v1beta1", "kind": "DestinationRule",
         "metadata": {"name": "api", "namespace": namespace},
         "spec": {"host": "api", "subsets": [{"name": "stable", "labels": {"track": "stable"}},
                                              {"name": "canary", "labels": {"track": "canary"}}]}},
    ]


def _virtual_service(namespace: str, stable: int, canary: int) -> dict[str, Any]:
    """k8s/canary/virtualservice.yaml from the guide, with the weights given."""
    def to(subset: str) -> dict[str, Any]:
        return {"host": "api", "subset": subset}
    return {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
            "metadata": {"name": "api", "namespace": namespace}, "spec": {"hosts": ["api"], "http": [
                {"match": [{"headers": {"canary": {"exact": "true"}}}], "route": [{"destination": to("canary")}]},
                {"route": [{"destination": to("stable"), "weight": stable},
                           {"destination": to("canary"), "weight": canary}]}]}}


def test_the_service_proxy_balances_per_request_and_follows_istio_weights(state_dir: Path, kubectl) -> None:
    namespace = "proxy-test"
    kubectl("apply", "-f", "-", input=json.dumps({"apiVersion": "v1", "kind": "List",
                                                  "items": _proxy_test_objects(namespace)}))
    try:
        for track in ("stable", "canary"):
            kubectl("rollout", "status", "-n", namespace, f"deployment/api-{track}", "--timeout=120s")
        service = json.loads(kubectl("get", "service", "api", "-n", namespace, "-o", "json"))["spec"]["clusterIP"]
        # Without a VirtualService: every ready pod, per request, over one kept-alive connection.
        answers = _get_inside(state_dir, service, 80, "/version", 300)
        assert {status for status, _, _ in answers} == {200}
        per_pod = Counter(upstream for _, _, upstream in answers)
        assert len(per_pod) == 3 and all(abs(n - 100) <= 30 for n in per_pod.values()), per_pod
        # The guide's 90/10 VirtualService: the weights hold per request; the canary header routes to the canary.
        kubectl("apply", "-f", "-", input=json.dumps(_virtual_service(namespace, 90, 10)))
        versions: Counter[str] = Counter()
        for _ in range(40):  # the proxy applies the VirtualService as soon as it hears of it
            versions = Counter(json.loads(body)["version"] for _, body, _ in
                               _get_inside(state_dir, service, 80, "/version", 1000))
            if abs(versions["v1.5.0"] - 100) <= 30:
                break
            time.sleep(0.25)
        assert abs(versions["v1.5.0"] - 100) <= 30 and sum(versions.values()) == 1000, versions
        headed = _get_inside(state_dir, service, 80, "/version", 50, headers={"canary": "true"})
        assert {json.loads(body)["version"] for _, body, _ in headed} == {"v1.5.0"}
    finally:
        kubectl("delete", "namespace", namespace, "--wait=false")


# -- faults -------------------------------------------------------------------------------------------

def test_injected_faults_reach_the_traffic_and_clear(state_dir: Path) -> None:
    since = datetime.now(timezone.utc).isoformat()
    runbook("sandbox", "fault", "veza-frontend", "--error-rate", "1", "--state-dir", str(state_dir))
    time.sleep(1.5)
    runbook("sandbox", "fault", "veza-frontend", "--clear", "--state-dir", str(state_dir))
    failed = json.loads(runbook("sandbox", "traffic", "--json", "--since", since,
                                "--state-dir", str(state_dir)).stdout)["veza-frontend"]["failed"]
    assert failed > 0
    time.sleep(1.0)
    cleared = datetime.now(timezone.utc).isoformat()
    time.sleep(1.0)
    after = json.loads(runbook("sandbox", "traffic", "--json", "--since", cleared,
                               "--state-dir", str(state_dir)).stdout)["veza-frontend"]
    assert after["requests"] > 0 and after["failed"] == 0


def _prometheus_value(env: dict[str, str], promql: str) -> float | None:
    result = requests.get(f"{env['PROMETHEUS_URL']}/api/v1/query", params={"query": promql}, timeout=5).json()
    values = result["data"]["result"]
    return float(values[0]["value"][1]) if values else None


def test_redis_backs_the_backend_and_an_outage_shows_everywhere(state_dir: Path, env: dict[str, str],
                                                                   kubectl) -> None:
    import redis

    from runbooks_lib.platform.redis import ping_redis

    # The real redis-server holds the backend's sessions (the load generator signs "users" in).
    client = redis.Redis.from_url(env["REDIS_URL"], socket_timeout=2)
    assert client.ping() and client.keys("veza:session:*")
    synced = json.loads(kubectl("get", "secret", "veza-secrets", "-n", "veza-sandbox", "-o", "json"))["data"]
    assert base64.b64decode(synced["redis-url"]).decode() == env["REDIS_URL"]
    # Prometheus scrapes the Redis exporter and the backend's Redis operations.
    _wait_for(lambda: _prometheus_value(env, 'redis_up{job="redis"}') == 1, what="redis_up == 1")
    _wait_for(lambda: (_prometheus_value(env, 'sum(veza_redis_operations_total{job="veza-backend-api",outcome="ok"})')
                       or 0) > 0, what="backend redis operations")
    assert ping_redis(env["REDIS_URL"]).reachable

    backend = next(p for p in _pods(kubectl) if p["metadata"]["labels"]["app"] == "veza-backend-api")
    ip, port = backend["status"]["podIP"], backend["spec"]["containers"][0]["ports"][0]["containerPort"]
    since = datetime.now(timezone.utc).isoformat()
    runbook("sandbox", "fault", "redis", "--down", "--state-dir", str(state_dir))
    try:
        down = ping_redis(env["REDIS_URL"], timeout_s=0.5)
        assert not down.reachable and down.error and "@" not in down.error
        assert _get_inside(state_dir, ip, port, "/api/v1/users/me")[0][0] == 503
        assert _get_inside(state_dir, ip, port, "/api/v1/playlists")[0][0] == 200
        _wait_for(lambda: _prometheus_value(env, 'redis_up{job="redis"}') == 0, what="redis_up == 0")
        status = json.loads(runbook("sandbox", "status", "--json", "--state-dir", str(state_dir)).stdout)
        assert status["components"]["redis"]["fault"] == "stopped"
    finally:
        runbook("sandbox", "fault", "redis", "--clear", "--state-dir", str(state_dir))
    failed = json.loads(runbook("sandbox", "traffic", "--json", "--since", since,
                                "--state-dir", str(state_dir)).stdout)["veza-backend-api"]["failed"]
    assert failed > 0  # the load generator saw the outage
    assert ping_redis(env["REDIS_URL"]).reachable  # same port and password again
    assert _get_inside(state_dir, ip, port, "/api/v1/users/me")[0][0] == 200


def test_webhook_sink_keeps_what_it_receives_and_flags_token_shapes(state_dir: Path, env: dict[str, str]) -> None:
    url = env["NOTIFY_URL"]
    assert requests.post(url, json={"text": "[P3] sandbox/veza-frontend: typo — status: declared"}, timeout=5).text == "ok"
    requests.post(url, json={"text": "leaked hvs.CAESIJ0123456789abcdefghijklmnop"}, timeout=5)
    received = json.loads(runbook("sandbox", "notifications", "--json", "--state-dir", str(state_dir)).stdout)
    assert [m["text"][:4] for m in received[-2:]] == ["[P3]", "leak"]
    assert received[-2]["secret_shapes"] == [] and received[-1]["secret_shapes"] == ["Vault service token"]
    shown = runbook("sandbox", "notifications", "--state-dir", str(state_dir)).stdout
    assert "status: declared" in shown and "[TOKEN SHAPES: Vault service token]" in shown


def test_api_faults_go_through_the_fault_proxy(state_dir: Path) -> None:
    said = runbook("sandbox", "fault", "apiserver", "--error-rate", "1.0", "--state-dir", str(state_dir)).stdout
    assert "100% of requests refused" in said
    from runbooks_sandbox.controlplane.faultproxy import FaultProxy

    assert FaultProxy(state_dir).faults()["error_rate"] == 1.0
    cleared = runbook("sandbox", "fault", "apiserver", "--clear", "--state-dir", str(state_dir)).stdout
    assert "cleared" in cleared
    assert FaultProxy(state_dir).faults()["error_rate"] == 0.0


# -- down, and what is left after it -----------------------------------------------------------------

def _left_behind(state_dir: Path, pids: list[int], ports: list[int], netns: str) -> list[str]:
    """What a sandbox left after `down`: its network namespace, processes, host ports, processes naming its files."""
    left = []
    if netns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout:
        left.append(f"network namespace {netns}")
    left += [f"pid {pid}" for pid in pids if process_alive(pid)]
    left += [f"port {port}" for port in ports if not is_port_free(port)]
    strays = subprocess.run(["ps", "-eo", "pid,args"], capture_output=True, text=True).stdout.splitlines()
    left += [f"process {line.strip()}" for line in strays if str(state_dir) in line]
    return left


def test_down_leaves_no_namespace_process_or_port(state_dir: Path, kubectl) -> None:
    status = json.loads(runbook("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout)
    pids = [int(part["pid"]) for part in status["components"].values() if part.get("pid")]
    pids += [int(part["pid"]) for part in status["kubernetes"]["components"].values() if part.get("pid")]
    pids += list(status["pods"].values())
    state = json.loads((state_dir / "sandbox.json").read_text())
    ports = [int(p["port"]) for p in state["components"].values() if isinstance(p, dict) and p.get("port")]
    netns = ClusterNetwork(state_dir).name
    server_files = server_data_dir(state_dir)
    assert server_files.is_dir()  # as root: the database's files, outside the state dir
    runbook("sandbox", "down", "--state-dir", str(state_dir), timeout=120)
    assert _left_behind(state_dir, pids, ports, netns) == []
    assert not (state_dir / "env").exists()
    assert server_files == state_dir or not server_files.exists()
    assert "nothing was running" in runbook("sandbox", "down", "--state-dir", str(state_dir)).stdout


def test_after_kill_9_of_the_supervisor_and_the_node_agent_up_refuses_and_down_stops_the_orphans(
        kubectl_binary: str) -> None:
    _needs_root()
    path = _state_dir("vz-crash-")
    netns = ClusterNetwork(path).name
    try:
        runbook("sandbox", "up", "--state-dir", str(path), timeout=240)
        status = json.loads(runbook("sandbox", "status", "--json", "--state-dir", str(path)).stdout)
        pods = status["pods"]
        assert len(pods) == sum(_catalog_replicas().values())
        pids = [int(p["pid"]) for p in status["components"].values() if p.get("pid")] + list(pods.values())
        for name in ("supervisor", "node_agent"):  # their pods live on, orphaned
            os.kill(status["components"][name]["pid"], signal.SIGKILL)
        time.sleep(0.3)
        assert all(process_alive(pid) for pid in pods.values())
        refused = runbook("sandbox", "up", "--state-dir", str(path), check=False)
        assert refused.returncode == 1 and "runbook sandbox down" in refused.stderr
        runbook("sandbox", "down", "--state-dir", str(path), timeout=120)
        assert _left_behind(path, pids, [], netns) == []
    finally:
        runbook("sandbox", "down", "--state-dir", str(path), check=False, timeout=120)
        shutil.rmtree(path, ignore_errors=True)


# -- refused before anything starts ---------------------------------------------------------------------

def test_a_crashed_sandbox_is_detected_and_down_cleans_it() -> None:
    path = _state_dir("vz-stale-")
    try:
        dead = subprocess.Popen(["true"])
        dead.wait()
        (path / "sandbox.json").write_text(json.dumps({"components": {"supervisor": {"pid": dead.pid}}}))
        (path / "env").write_text("export KUBECONFIG='/nowhere'\n")
        refused = runbook("sandbox", "up", "--state-dir", str(path), check=False)
        assert refused.returncode == 1
        assert "runbook sandbox down" in refused.stderr and "not stopped cleanly" in refused.stderr
        runbook("sandbox", "down", "--state-dir", str(path))
        assert not (path / "env").exists() and not (path / "sandbox.json").exists()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_sandbox_started_on_the_retired_home_made_kubernetes_is_refused_and_down_stops_it() -> None:
    path = _state_dir("vz-retired-")
    try:
        (path / "sandbox.json").write_text(json.dumps({"components": {}, "kubernetes": "home-made"}))
        for command in (("up",), ("status",), ("traffic",)):
            refused = runbook("sandbox", *command, "--state-dir", str(path), check=False)
            assert refused.returncode == 1, command
            assert "home-made Kubernetes, which this version no longer has" in refused.stderr
            assert f"runbook sandbox down --state-dir {path}" in refused.stderr
        runbook("sandbox", "down", "--state-dir", str(path))
        assert not (path / "sandbox.json").exists()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_a_missing_debian_package_is_named_with_the_command_that_installs_it() -> None:
    path = _state_dir("vz-nopkg-")
    try:
        # An empty PATH hides /usr/bin/prometheus (the interpreter is called by its full path).
        result = subprocess.run([*RUNBOOK, "sandbox", "up", "--state-dir", str(path)], capture_output=True,
                                text=True, timeout=60, cwd=REPO, env={**os.environ, "PATH": "", "RUNBOOKS_HOME": str(REPO)})
        assert result.returncode == 1
        assert "prometheus" in result.stderr and "make bootstrap" in result.stderr
        assert "apt-get install -y --no-upgrade prometheus redis-server" in result.stderr
        assert not (path / "sandbox.json").exists()
    finally:
        shutil.rmtree(path, ignore_errors=True)


def test_without_the_control_plane_built_up_names_make_controlplane_and_starts_nothing(tmp_path: Path) -> None:
    path = _state_dir("vz-nobin-")
    try:
        result = runbook("sandbox", "up", "--state-dir", str(path), check=False, timeout=60,
                         VEZA_CONTROLPLANE_CACHE=str(tmp_path / "empty-cache"))
        assert result.returncode == 1
        assert "is not built" in result.stderr and "make controlplane" in result.stderr
        assert "kube-apiserver is missing" in result.stderr
        assert {p.name for p in path.iterdir()} <= {".lock"}, "nothing started, nothing recorded"
    finally:
        shutil.rmtree(path, ignore_errors=True)
