"""`runbook sandbox up|status|traffic|fault|down`: the whole local Veza platform, through real clients.

One sandbox is started for the module with the real command line (in a temporary state
directory) and torn down by the last test, which checks that nothing is left running or bound.
Everything is checked the way an operator would: kubectl, hvac, psycopg, Prometheus' HTTP API
and `runbook sandbox traffic`.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import hvac
import psycopg
import pytest
import requests

from runbooks_sandbox.servers.datadir import server_data_dir
from runbooks_sandbox.servers.ports import is_port_free, process_alive

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
RUNBOOK = [sys.executable, "-m", "runbooks_lib.cli"]
ENV_NAMES = ("KUBECONFIG", "CLUSTER_UID", "VAULT_ADDR", "VAULT_TOKEN", "PROMETHEUS_URL", "PG_PRIMARY_DSN",
             "PG_STANDBY_DSN", "REDIS_URL", "TRAFFIC_URL", "NAMESPACE", "NOTIFY_URL")


def runbook(*args: str, check: bool = True, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RUNBOOKS_HOME": str(REPO)}
    result = subprocess.run([*RUNBOOK, *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO)
    if check and result.returncode != 0:
        raise AssertionError(f"runbook {' '.join(args)} exited {result.returncode}:\n{result.stdout}\n{result.stderr}")
    return result


def _state_dir(prefix: str) -> Path:
    # Private (mode 0700), as a checkout in root's home is: user postgres cannot traverse it, so
    # the sandbox keeps the database's files elsewhere (runbooks_sandbox.servers.datadir).
    return Path(tempfile.mkdtemp(prefix=prefix))


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    path = _state_dir("veza-stack-")
    up = runbook("sandbox", "up", "--state-dir", str(path), check=False)
    try:
        assert up.returncode == 0, f"sandbox up failed:\n{up.stdout}\n{up.stderr}"
        yield path
    finally:
        runbook("sandbox", "down", "--state-dir", str(path), check=False)
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
def kubectl(env: dict[str, str], tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("kubectl-cache")  # discovery is cached per host:port

    def run(*args: str) -> str:
        result = subprocess.run(["kubectl", "--kubeconfig", env["KUBECONFIG"], "--cache-dir", str(cache), *args],
                                capture_output=True, text=True, timeout=150)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    return run


def _pods(kubectl) -> list[dict]:
    return json.loads(kubectl("get", "pods", "-o", "json"))["items"]


def test_env_file_is_private_and_feeds_the_sandbox_profile(state_dir: Path, env: dict[str, str]) -> None:
    assert (state_dir / "env").stat().st_mode & 0o777 == 0o600
    assert set(ENV_NAMES) <= set(env)
    assert env["NAMESPACE"] == "veza-sandbox"
    # Every ${sandbox:NAME} of parameters/sandbox.yaml resolves from it.
    code = ("from runbooks_lib.config.profiles import load_profile; p = load_profile('sandbox'); "
            "print(p.cluster.namespace, p.prometheus.url)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "RUNBOOKS_HOME": str(REPO),
                              "RUNBOOKS_SANDBOX_ENV": str(state_dir / "env")}).stdout.split()
    assert out == ["veza-sandbox", env["PROMETHEUS_URL"]]


def _catalog_replicas() -> dict[str, int]:
    import yaml

    services = yaml.safe_load((REPO / "parameters" / "services.yaml").read_text())["services"]
    return {name: int(spec["replicas"]) for name, spec in services.items()}


def test_kubectl_lists_the_veza_pods_with_their_ips(kubectl) -> None:
    table = kubectl("get", "pods", "-o", "wide")
    pods = _pods(kubectl)
    apps = [p["metadata"]["labels"]["app"] for p in pods]
    # The catalog's shape: as many pods of each service as parameters/services.yaml says.
    assert {app: apps.count(app) for app in set(apps)} == _catalog_replicas()
    for pod in pods:
        ip = pod["status"]["podIP"]
        assert ip.startswith("127.") and ip != "127.0.0.1"
        assert pod["status"]["phase"] == "Running"
        assert pod["metadata"]["name"] in table and ip in table
    # Each pod answers on its own IP and container port, as itself.
    backend = next(p for p in pods if p["metadata"]["labels"]["app"] == "veza-backend-api")
    port = backend["spec"]["containers"][0]["ports"][0]["containerPort"]
    reply = requests.get(f"http://{backend['status']['podIP']}:{port}/version", timeout=3)
    assert reply.ok and "veza-backend-api" in reply.text


def test_hvac_reads_the_seeded_secret_which_the_cluster_secret_mirrors(env: dict[str, str], kubectl) -> None:
    client = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"])
    secret = client.secrets.kv.v2.read_secret_version(
        path="veza/sandbox", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
    assert secret["database_url"] == env["PG_PRIMARY_DSN"]
    synced = json.loads(kubectl("get", "secret", "veza-secrets", "-o", "json"))["data"]
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


def test_status_says_what_runs_where(state_dir: Path) -> None:
    info = json.loads(runbook("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout)
    assert info["running"] is True
    assert {"supervisor", "openbao", "prometheus", "postgres_primary", "postgres_standby", "redis"} <= set(info["components"])
    assert all(part["alive"] for part in info["components"].values())
    assert {name: d["ready"] for name, d in info["deployments"].items()} == _catalog_replicas()
    # The memory cost: every component and every app's pods, adding up to the total.
    memory = info["memory"]
    assert set(memory["components"]) == set(info["components"])
    assert memory["by_app"]["veza-chat-server"]["pods"] == _catalog_replicas()["veza-chat-server"]
    assert all(entry["mb"] > 5 for entry in memory["by_app"].values())
    assert memory["total_mb"] == pytest.approx(sum(memory["components"].values()) + memory["pods_mb"], abs=0.5)
    text = runbook("sandbox", "status", "--state-dir", str(state_dir)).stdout
    assert "memory (RSS):" in text and "pods of veza-frontend" in text


def test_up_again_says_it_already_runs(state_dir: Path) -> None:
    again = runbook("sandbox", "up", "--state-dir", str(state_dir))
    assert "already runs" in again.stderr


def test_rolling_update_under_load_loses_no_request(state_dir: Path, kubectl) -> None:
    since = datetime.now(timezone.utc).isoformat()
    kubectl("set", "image", "deployment/veza-backend-api",
            "veza-backend-api=registry.veza.app/veza-backend-api:v1.6.0")
    kubectl("rollout", "status", "deployment/veza-backend-api", "--timeout=120s")
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


def test_kubectl_logs_and_events(kubectl) -> None:
    pod = next(p["metadata"]["name"] for p in _pods(kubectl) if p["metadata"]["labels"]["app"] == "veza-frontend")
    assert kubectl("logs", pod).strip()
    events = kubectl("get", "events")
    assert "ScalingReplicaSet" in events and "Started" in events


def test_the_guides_ingress_and_backend_hpa_are_applied(kubectl) -> None:
    hpa = json.loads(kubectl("get", "hpa", "veza-backend-hpa", "-o", "json"))
    spec = hpa["spec"]
    assert (spec["minReplicas"], spec["maxReplicas"], spec["scaleTargetRef"]["name"]) == (3, 10, "veza-backend-api")
    ingress = json.loads(kubectl("get", "ingress", "veza-ingress", "-o", "json"))
    hosts = {r["host"]: r["http"]["paths"][0]["backend"]["service"]["name"] for r in ingress["spec"]["rules"]}
    assert hosts == {"api.veza.app": "veza-backend-api", "veza.app": "veza-frontend"}
    assert "default" in kubectl("get", "serviceaccounts")


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


def _wait_for(predicate, timeout: float = 15.0, what: str = "condition"):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.25)
    pytest.fail(f"timed out waiting for {what}")


def test_redis_backs_the_backend_and_an_outage_shows_everywhere(state_dir: Path, env: dict[str, str],
                                                                   kubectl) -> None:
    import redis

    from runbooks_lib.platform.redis import ping_redis

    # The real redis-server holds the backend's sessions (the load generator signs "users" in).
    client = redis.Redis.from_url(env["REDIS_URL"], socket_timeout=2)
    assert client.ping() and client.keys("veza:session:*")
    synced = json.loads(kubectl("get", "secret", "veza-secrets", "-o", "json"))["data"]["redis-url"]
    assert base64.b64decode(synced).decode() == env["REDIS_URL"]
    # Prometheus scrapes the Redis exporter and the backend's Redis operations.
    _wait_for(lambda: _prometheus_value(env, 'redis_up{job="redis"}') == 1, what="redis_up == 1")
    _wait_for(lambda: (_prometheus_value(env, 'sum(veza_redis_operations_total{job="veza-backend-api",outcome="ok"})')
                       or 0) > 0, what="backend redis operations")
    assert ping_redis(env["REDIS_URL"]).reachable

    since = datetime.now(timezone.utc).isoformat()
    runbook("sandbox", "fault", "redis", "--down", "--state-dir", str(state_dir))
    try:
        down = ping_redis(env["REDIS_URL"], timeout_s=0.5)
        assert not down.reachable and down.error and "@" not in down.error
        backend = next(p for p in _pods(kubectl) if p["metadata"]["labels"]["app"] == "veza-backend-api")
        port = backend["spec"]["containers"][0]["ports"][0]["containerPort"]
        reply = requests.get(f"http://{backend['status']['podIP']}:{port}/api/v1/users/me", timeout=3)
        assert reply.status_code == 503
        assert requests.get(f"http://{backend['status']['podIP']}:{port}/api/v1/playlists", timeout=3).ok
        _wait_for(lambda: _prometheus_value(env, 'redis_up{job="redis"}') == 0, what="redis_up == 0")
        status = json.loads(runbook("sandbox", "status", "--json", "--state-dir", str(state_dir)).stdout)
        assert status["components"]["redis"]["fault"] == "stopped"
    finally:
        runbook("sandbox", "fault", "redis", "--clear", "--state-dir", str(state_dir))
    failed = json.loads(runbook("sandbox", "traffic", "--json", "--since", since,
                                "--state-dir", str(state_dir)).stdout)["veza-backend-api"]["failed"]
    assert failed > 0  # the load generator saw the outage
    assert ping_redis(env["REDIS_URL"]).reachable  # same port and password again
    assert requests.get(f"http://{backend['status']['podIP']}:{port}/api/v1/users/me", timeout=3).ok


def test_webhook_sink_keeps_what_it_receives_and_flags_token_shapes(state_dir: Path, env: dict[str, str]) -> None:
    url = env["NOTIFY_URL"]
    assert requests.post(url, json={"text": "[P3] sandbox/veza-frontend: typo — status: declared"}, timeout=5).text == "ok"
    requests.post(url, json={"text": "leaked hvs.CAESIJ0123456789abcdefghijklmnop"}, timeout=5)
    received = json.loads(runbook("sandbox", "notifications", "--json", "--state-dir", str(state_dir)).stdout)
    assert [m["text"][:4] for m in received[-2:]] == ["[P3]", "leak"]
    assert received[-2]["secret_shapes"] == [] and received[-1]["secret_shapes"] == ["Vault service token"]
    shown = runbook("sandbox", "notifications", "--state-dir", str(state_dir)).stdout
    assert "status: declared" in shown and "[TOKEN SHAPES: Vault service token]" in shown


def test_down_leaves_no_process_and_no_port(state_dir: Path, kubectl) -> None:
    pods = _pods(kubectl)
    services = json.loads(kubectl("get", "services", "-o", "json"))["items"]
    addresses = [(p["status"]["podIP"], c["ports"][0]["containerPort"]) for p in pods for c in p["spec"]["containers"]]
    addresses += [(s["spec"]["clusterIP"], s["spec"]["ports"][0]["port"]) for s in services]
    status = json.loads(runbook("sandbox", "status", "--state-dir", str(state_dir), "--json").stdout)
    pids = [part["pid"] for part in status["components"].values()]
    for part in status["components"].values():
        for key in ("port",):
            if part.get(key):
                addresses.append(("127.0.0.1", part[key]))
    server_files = server_data_dir(state_dir)
    assert server_files.is_dir() or os.geteuid() != 0  # as root: the database's files, outside the state dir
    runbook("sandbox", "down", "--state-dir", str(state_dir))
    assert [pid for pid in pids if process_alive(pid)] == []
    assert [a for a in addresses if not is_port_free(a[1], a[0])] == []
    assert not (state_dir / "env").exists()
    assert server_files == state_dir or not server_files.exists()
    assert "nothing was running" in runbook("sandbox", "down", "--state-dir", str(state_dir)).stdout


def test_a_crashed_sandbox_is_detected_and_down_cleans_it() -> None:
    path = _state_dir("veza-stale-")
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


def test_a_missing_debian_package_is_named_with_the_command_that_installs_it() -> None:
    path = _state_dir("veza-nopkg-")
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


def test_after_a_supervisor_crash_up_refuses_and_down_stops_the_orphans() -> None:
    path = _state_dir("veza-crash-")
    try:
        runbook("sandbox", "up", "--state-dir", str(path))
        status = json.loads(runbook("sandbox", "status", "--json", "--state-dir", str(path)).stdout)
        pod_pids = list(status["pods"].values())
        assert len(pod_pids) == sum(_catalog_replicas().values())
        os.kill(status["components"]["supervisor"]["pid"], 9)  # its pods live on, orphaned
        time.sleep(0.3)
        assert all(process_alive(pid) for pid in pod_pids)
        refused = runbook("sandbox", "up", "--state-dir", str(path), check=False)
        assert refused.returncode == 1 and "runbook sandbox down" in refused.stderr
        runbook("sandbox", "down", "--state-dir", str(path))
        survivors = [p for p in [*pod_pids, *(c["pid"] for c in status["components"].values())] if process_alive(p)]
        assert survivors == []
    finally:
        runbook("sandbox", "down", "--state-dir", str(path), check=False)
        shutil.rmtree(path, ignore_errors=True)
