"""The sandbox's real backing servers: OpenBao, PostgreSQL 15 primary + standby, Prometheus.

Every test talks to the real server through a real client (hvac, psycopg, Prometheus's
HTTP API) and every server is stopped at the end, leaving no process and no port.
"""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import hvac
import psycopg
import pytest
from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from runbooks_sandbox.servers import (
    OpenBaoServer,
    PackageMissing,
    PortInUse,
    PostgresCluster,
    PrometheusServer,
    ServerError,
    StaleState,
)
from runbooks_sandbox.servers.datadir import SERVER_ROOT_VARIABLE, remove_server_data_dir, server_data_dir
from runbooks_sandbox.servers.openbao import SECRET_KEYS
from runbooks_sandbox.servers.ports import children_of, free_port, is_port_free, process_alive
from runbooks_sandbox.servers.veza_schema import SEED_COUNTS

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]

REPO = Path(__file__).resolve().parents[2]


def _state_dir() -> Path:
    # Not pytest's tmp_path: its root is mode 0700, which user postgres cannot traverse.
    path = Path(tempfile.mkdtemp(prefix="veza-servers-"))
    path.chmod(0o755)
    return path


@pytest.fixture(scope="module")
def state_dir() -> Iterator[Path]:
    path = _state_dir()
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="module")
def postgres(state_dir: Path) -> Iterator[PostgresCluster]:
    cluster = PostgresCluster(state_dir).start()
    yield cluster
    cluster.stop()


@pytest.fixture(scope="module")
def openbao(state_dir: Path, postgres: PostgresCluster) -> Iterator[OpenBaoServer]:
    server = OpenBaoServer(state_dir).start()
    server.seed(("sandbox", "staging"), database_urls={"sandbox": postgres.primary_dsn})
    yield server
    server.stop()


# -- OpenBao -------------------------------------------------------------------------------


def test_hvac_reads_the_seeded_secret(openbao: OpenBaoServer, postgres: PostgresCluster) -> None:
    client = hvac.Client(url=openbao.address, token=openbao.root_token)
    assert client.is_authenticated()
    sandbox = client.secrets.kv.v2.read_secret_version(
        path="veza/sandbox", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
    staging = client.secrets.kv.v2.read_secret_version(
        path="veza/staging", mount_point="secret", raise_on_deleted_version=True)["data"]["data"]
    assert set(sandbox) == set(staging) == set(SECRET_KEYS)
    assert sandbox["database_url"] == postgres.primary_dsn  # the real DSN, usable as is
    with psycopg.connect(sandbox["database_url"]) as conn:
        assert conn.execute("SELECT current_database()").fetchone() == ("veza_db",)
    assert sandbox["jwt_secret"] != staging["jwt_secret"]  # random per environment
    assert staging["stripe_api_key"].startswith("sk_test_")


def test_transit_encrypts_and_decrypts(openbao: OpenBaoServer) -> None:
    client = openbao.client()
    plaintext = "card-token-4242"
    import base64

    encoded = base64.b64encode(plaintext.encode()).decode()
    ciphertext = client.secrets.transit.encrypt_data(name="veza", plaintext=encoded)["data"]["ciphertext"]
    assert ciphertext.startswith("vault:v1:") and plaintext not in ciphertext
    decrypted = client.secrets.transit.decrypt_data(name="veza", ciphertext=ciphertext)["data"]["plaintext"]
    assert base64.b64decode(decrypted).decode() == plaintext


def test_openbao_refuses_a_wrong_token(openbao: OpenBaoServer) -> None:
    assert not hvac.Client(url=openbao.address, token="not-the-root-token").is_authenticated()


def test_openbao_status_reports_unsealed_without_token(openbao: OpenBaoServer) -> None:
    status = OpenBaoServer(openbao.state_dir).status()  # a fresh instance finds the running server
    assert status["running"] and status["sealed"] is False
    assert status["address"] == openbao.address
    assert openbao.root_token not in json.dumps(status)


# -- PostgreSQL ----------------------------------------------------------------------------


def test_veza_db_is_seeded(postgres: PostgresCluster) -> None:
    with psycopg.connect(postgres.primary_dsn) as conn:
        for table, rows in SEED_COUNTS.items():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone() == (rows,)
        orphan = conn.execute(
            "SELECT count(*) FROM playlist_tracks pt LEFT JOIN tracks t ON t.id = pt.track_id WHERE t.id IS NULL"
        ).fetchone()
        assert orphan == (0,)


def test_standby_replicates_a_row_written_on_the_primary(postgres: PostgresCluster) -> None:
    marker = f"drill-{random.randrange(10**9)}"
    with psycopg.connect(postgres.primary_dsn, autocommit=True) as conn:
        conn.execute("INSERT INTO users (email, username, display_name) VALUES (%s, %s, 'Drill')",
                     (f"{marker}@veza.test", marker))
    deadline = time.monotonic() + 10
    with psycopg.connect(postgres.standby_dsn, autocommit=True) as standby:
        assert standby.execute("SELECT pg_is_in_recovery()").fetchone() == (True,)
        while not standby.execute("SELECT 1 FROM users WHERE username = %s", (marker,)).fetchone():
            assert time.monotonic() < deadline, "row not replicated to the standby within 10 s"
            time.sleep(0.02)
        with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
            standby.execute("DELETE FROM users WHERE username = %s", (marker,))
    lag = postgres.replication_lag()
    assert lag.state == "streaming"
    assert lag.bytes is not None and lag.bytes >= 0
    assert lag.seconds is not None and 0 <= lag.seconds < 10


def test_postgres_status_names_both_roles(postgres: PostgresCluster) -> None:
    status = PostgresCluster(postgres.state_dir).status()
    assert status["primary"]["running"] and status["standby"]["running"]
    assert status["primary"]["dsn"] == postgres.primary_dsn
    assert status["replication"]["state"] == "streaming"


def test_standby_promotes_to_a_writable_primary() -> None:
    state = _state_dir()
    cluster = PostgresCluster(state, seed=False).start()
    try:
        cluster.promote_standby()
        with psycopg.connect(cluster.dsn("standby", "postgres"), autocommit=True) as conn:
            assert conn.execute("SELECT pg_is_in_recovery()").fetchone() == (False,)
            conn.execute("CREATE TABLE heartbeat (at timestamptz)")  # writable now
    finally:
        cluster.stop()
        shutil.rmtree(state, ignore_errors=True)


# -- Prometheus ----------------------------------------------------------------------------


class _Pod:
    """A stand-in for a Veza pod's /metrics on its own loopback IP, with live traffic."""

    def __init__(self, ip: str, error_ratio: float, latency_s: float) -> None:
        self.ip, self.port = ip, free_port(ip)
        registry = CollectorRegistry()
        self.requests = Counter("http_requests_total", "Requests", ["code", "method", "route"], registry=registry)
        self.duration = Histogram("http_request_duration_seconds", "Latency", ["route"], registry=registry)
        self.server, _ = start_http_server(self.port, ip, registry=registry)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._traffic, args=(error_ratio, latency_s), daemon=True)
        self._thread.start()

    def _traffic(self, error_ratio: float, latency_s: float) -> None:
        rng = random.Random(7)
        while not self._stop.is_set():
            code = "500" if rng.random() < error_ratio else "200"
            self.requests.labels(code, "GET", "/api/v1/tracks").inc()
            self.duration.labels("/api/v1/tracks").observe(latency_s)
            time.sleep(0.005)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.server.shutdown()
        self.server.server_close()


class _HttpSd:
    """The http_sd endpoint: pod target groups with ``__meta_kubernetes_pod_*`` labels."""

    def __init__(self, groups: list[dict[str, object]]) -> None:
        body = json.dumps(groups).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sd/pods"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def _pod_group(pod: _Pod, name: str, version: str, annotate_port: bool) -> dict[str, object]:
    labels = {
        "__meta_kubernetes_namespace": "veza-sandbox",
        "__meta_kubernetes_pod_name": name,
        "__meta_kubernetes_pod_ip": pod.ip,
        "__meta_kubernetes_pod_label_app": "veza-backend-api",
        "__meta_kubernetes_pod_label_version": version,
        "__meta_kubernetes_pod_phase": "Running",
    }
    if annotate_port:
        labels["__meta_kubernetes_pod_annotation_prometheus_io_port"] = str(pod.port)
    return {"targets": [f"{pod.ip}:{pod.port}"], "labels": labels}


@pytest.fixture(scope="module")
def scraped() -> Iterator[tuple[PrometheusServer, _Pod, _Pod]]:
    stable = _Pod("127.0.0.2", error_ratio=0.1, latency_s=0.7)  # 10 % 5xx, slow: both alerts
    canary = _Pod("127.0.0.3", error_ratio=0.0, latency_s=0.02)
    sd = _HttpSd([
        _pod_group(stable, "veza-backend-api-5d8f9-abcde", "1.4.2", annotate_port=False),
        # the second pod names its port by annotation; the first relies on metrics_port
        _pod_group(canary, "veza-backend-api-7c6b4-fghij", "1.5.0", annotate_port=True),
    ])
    state = _state_dir()
    server = PrometheusServer(state, sd_url=sd.url, metrics_port=stable.port).start()
    try:
        yield server, stable, canary
    finally:
        server.stop()
        sd.close()
        stable.close()
        canary.close()
        shutil.rmtree(state, ignore_errors=True)


def test_prometheus_scrapes_pods_found_through_http_sd(scraped: tuple[PrometheusServer, _Pod, _Pod]) -> None:
    prometheus, stable, canary = scraped
    up = prometheus.wait_for_targets_up(min_targets=2, timeout=30)
    by_pod = {target["pod"]: target for target in up}
    assert set(by_pod) == {"veza-backend-api-5d8f9-abcde", "veza-backend-api-7c6b4-fghij"}
    first, second = by_pod["veza-backend-api-5d8f9-abcde"], by_pod["veza-backend-api-7c6b4-fghij"]
    assert first["job"] == second["job"] == "veza-backend-api"  # app label → job
    assert first["namespace"] == "veza-sandbox" and first["version"] == "1.4.2"
    assert first["instance"] == f"{stable.ip}:{stable.port}"  # pod IP → __address__ with the port
    assert second["instance"] == f"{canary.ip}:{canary.port}"  # the annotation's port
    samples = prometheus.query('http_requests_total{job="veza-backend-api", route="/api/v1/tracks"}')
    assert {s["metric"]["version"] for s in samples} == {"1.4.2", "1.5.0"}
    assert all(float(s["value"][1]) > 0 for s in samples)


def test_prometheus_loads_and_evaluates_the_golden_signal_rules(
    scraped: tuple[PrometheusServer, _Pod, _Pod]
) -> None:
    prometheus, _, _ = scraped
    assert set(prometheus.rule_groups()) == {"veza-golden-signals", "veza-alerts"}
    prometheus.wait_for_targets_up(min_targets=2, timeout=30)
    deadline = time.monotonic() + 20
    while True:
        ratios = {s["metric"]["version"]: float(s["value"][1])
                  for s in prometheus.query("job_version:http_requests_errors:ratio_rate1m")}
        p99 = prometheus.query('job:http_request_duration_seconds:p99_1m{job="veza-backend-api"}')
        alerts = {a["labels"]["alertname"] for a in prometheus.api("alerts")["alerts"]}
        if len(ratios) == 2 and p99 and {"HighErrorRate", "HighLatencyP99"} <= alerts:
            break
        assert time.monotonic() < deadline, f"rules not evaluated: ratios={ratios} alerts={alerts}"
        time.sleep(0.5)
    assert 0.03 < ratios["1.4.2"] < 0.2 and ratios["1.5.0"] == 0.0
    assert float(p99[0]["value"][1]) > 0.5


def test_wait_for_targets_up_says_what_is_missing(scraped: tuple[PrometheusServer, _Pod, _Pod]) -> None:
    prometheus, _, _ = scraped
    with pytest.raises(ServerError, match="3 targets up"):
        prometheus.wait_for_targets_up(min_targets=3, timeout=0.5)


# -- lifecycle and clear failures ----------------------------------------------------------


def test_stop_leaves_no_process_and_no_port() -> None:
    state = _state_dir()
    sd = _HttpSd([])
    started: list[OpenBaoServer | PostgresCluster | PrometheusServer] = []
    try:
        bao = OpenBaoServer(state).start()
        pg = PostgresCluster(state, seed=False).start()
        prom = PrometheusServer(state, sd_url=sd.url).start()
        started += [bao, pg, prom]
        ports = [bao.port, bao.port + 1, pg.primary_port, pg.standby_port, prom.port]
        postmasters = [pg.status()[role]["pid"] for role in ("primary", "standby")]
        pids = [bao.status()["pid"], prom.status()["pid"], *postmasters]
        pids += [child for pid in postmasters for child in children_of(pid)]  # backends, walsender...
        assert all(not is_port_free(port) for port in ports)
        # Stop through fresh instances, as `runbook sandbox down` would from another process.
        for server in (OpenBaoServer(state), PostgresCluster(state), PrometheusServer(state)):
            server.stop()
        assert [pid for pid in pids if process_alive(pid)] == []
        assert [port for port in ports if not is_port_free(port)] == []
        assert not OpenBaoServer(state).status()["running"]
        assert not PrometheusServer(state).status()["running"]
    finally:
        # The starting instances too: stopping them again is a no-op that reaps their children.
        for server in (*started, OpenBaoServer(state), PostgresCluster(state), PrometheusServer(state)):
            server.stop()
        sd.close()
        shutil.rmtree(state, ignore_errors=True)


def test_a_taken_port_is_refused_with_a_clear_message() -> None:
    state = _state_dir()
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        taken = holder.getsockname()[1]
        with pytest.raises(PortInUse, match=f"127.0.0.1:{taken} is already in use"):
            PrometheusServer(state, sd_url="http://127.0.0.1:9/sd", port=taken).start()
        with pytest.raises(PortInUse):
            PostgresCluster(state, primary_port=taken).start()
    shutil.rmtree(state, ignore_errors=True)


def test_a_missing_package_names_it_and_the_install_command() -> None:
    state = _state_dir()
    with pytest.raises(PackageMissing, match=r"postgresql-15 .*apt-get install -y --no-upgrade postgresql-15"):
        PostgresCluster(state, bin_dir=Path("/nonexistent/postgresql/15/bin")).start()
    with pytest.raises(PackageMissing, match="apt-get install -y --no-upgrade prometheus"):
        PrometheusServer(state, sd_url="http://127.0.0.1:9/sd", binary="prometheus-not-installed").start()
    shutil.rmtree(state, ignore_errors=True)


def test_a_server_left_running_is_reported_not_started_twice() -> None:
    state = _state_dir()
    first = OpenBaoServer(state).start()
    try:
        with pytest.raises(StaleState, match=rf"pid {first.status()['pid']}.*runbook sandbox down"):
            OpenBaoServer(state).start()
    finally:
        first.stop()
    # Once stopped (or after a crash left only files), the state directory is reusable.
    OpenBaoServer(state).start().stop()
    shutil.rmtree(state, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, postgres runs as user postgres (runuser)")
def test_postgres_runs_from_a_state_dir_its_user_cannot_reach() -> None:
    """A checkout in root's home (mode 0700): the data lives where user postgres can reach it,
    and goes when the sandbox is removed."""
    private = Path(tempfile.mkdtemp(prefix="veza-private-"))  # mode 0700, like /root
    try:
        cluster = PostgresCluster(private / "sandbox", with_standby=False, seed=False).start()
        try:
            assert not cluster.home.is_relative_to(private)
            assert cluster.home.parent == server_data_dir(private / "sandbox")
            with psycopg.connect(cluster.dsn("primary", "postgres"), connect_timeout=5) as conn:
                assert conn.execute("SELECT 1").fetchone() == (1,)
        finally:
            cluster.stop()
        assert not server_data_dir(private / "sandbox").exists()
        assert not remove_server_data_dir(private / "sandbox")  # nothing left to remove
    finally:
        shutil.rmtree(private, ignore_errors=True)


@pytest.mark.skipif(os.geteuid() != 0, reason="as root, postgres runs as user postgres (runuser)")
def test_a_server_folder_postgres_cannot_reach_is_explained(monkeypatch: pytest.MonkeyPatch) -> None:
    private = Path(tempfile.mkdtemp(prefix="veza-private-"))  # mode 0700
    monkeypatch.setenv(SERVER_ROOT_VARIABLE, str(private / "servers"))
    try:
        with pytest.raises(ServerError, match=rf"cannot traverse {private}.*{SERVER_ROOT_VARIABLE}"):
            PostgresCluster(_state_dir() / "sandbox").start()
    finally:
        shutil.rmtree(private, ignore_errors=True)


def test_bootstrap_script_names_missing_packages_when_not_root() -> None:
    # A PATH with only `id`: prometheus and kubectl look missing; run as an unprivileged user.
    bin_dir = _state_dir()
    (bin_dir / "id").symlink_to(shutil.which("id") or "/usr/bin/id")
    runner = ["runuser", "-u", "nobody", "--"] if os.geteuid() == 0 else []
    try:
        result = subprocess.run([*runner, "/usr/bin/env", f"PATH={bin_dir}", "/bin/sh",
                                 str(REPO / "scripts/bootstrap-system.sh")], capture_output=True, text=True)
    finally:
        shutil.rmtree(bin_dir, ignore_errors=True)
    if os.geteuid() == 0 and "Permission denied" in result.stderr:
        pytest.skip("user nobody cannot read the repository")
    assert result.returncode == 1
    assert "prometheus" in result.stderr and "kubernetes-client" in result.stderr
    assert "apt-get install -y --no-upgrade" in result.stderr


def test_bootstrap_script_is_quick_when_everything_is_installed() -> None:
    if not (shutil.which("prometheus") and shutil.which("kubectl")
            and Path("/usr/lib/postgresql/15/bin/initdb").exists()):
        pytest.skip("not every package is installed here")
    started = time.monotonic()
    result = subprocess.run(["/bin/sh", str(REPO / "scripts/bootstrap-system.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert time.monotonic() - started < 1.0


def test_free_ports_are_chosen_below_the_range_outgoing_connections_take_theirs_from() -> None:
    """A port from the ephemeral range can be taken by any outgoing connection in the seconds
    before the server binds it; below it, only a listener can hold one."""
    from runbooks_sandbox.servers import ports

    ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    chosen = {free_port() for _ in range(20)}
    assert all(ports.LISTEN_PORTS_FROM <= port < ephemeral_low for port in chosen), chosen
    assert all(is_port_free(port) for port in chosen)


def test_a_port_held_by_a_listener_is_never_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooks_sandbox.servers import ports

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        held.listen()
        taken = held.getsockname()[1]
        # The only port left to draw below the ephemeral range is the held one: the kernel picks.
        monkeypatch.setattr(ports, "_listen_range", lambda: range(taken, taken + 1))
        port = free_port()
        assert port != taken and is_port_free(port)


def test_a_server_log_tail_is_its_last_lines_on_one_line(tmp_path: Path) -> None:
    from runbooks_sandbox.servers.ports import log_tail

    log = tmp_path / "server.log"
    log.write_text("starting\nFATAL:  could not bind IPv4 address\nHINT:  Is another postmaster running?\n\n")
    assert log_tail(log) == "starting | FATAL:  could not bind IPv4 address | HINT:  Is another postmaster running?"
    assert log_tail(log, 1) == "HINT:  Is another postmaster running?"
    assert log_tail(tmp_path / "none.log") == ""
