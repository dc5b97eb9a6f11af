"""No client library's exception escapes a public runbooks_lib function (as kopf tests of its own).

Each public function or method that talks to a backend is called with that backend failing in
each way a backend fails: nothing listening, an HTTP 500, no answer within the client's timeout,
a dropped connection, and a 200 whose body is not JSON (sent as JSON, or as a proxy's HTML page). Only runbooks_lib.errors.RunbookError
subclasses may come out, each saying what failed; a timeout must be the client's own (the
library sets one), not the stub giving up.
"""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from runbooks_lib.errors import RunbookError

from ..kube_stub import HTTPStub, write_kubeconfig
from .conftest import SERVICE, Platform

CLIENT_TIMEOUT_S = 0.1  # every timeout the library sets is cut to this, so a test waits no longer
STUB_DELAY_S = 5.0  # a "timeout" answer comes this late (the stub gives up at once when the test ends)
FAILURES = ["refused", "http 500", "timeout", "dropped", "garbage", "html page"]


def cut_client_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    """Cut the timeouts the library gives requests (hvac, prometheus-api-client) and urllib3 (kubernetes).

    Only a timeout the library set is cut: a call made without one still waits for the stub.
    """
    import requests.adapters
    import urllib3

    send = requests.adapters.HTTPAdapter.send

    def quick_send(self: Any, request: Any, *args: Any, timeout: Any = None, **kwargs: Any) -> Any:
        return send(self, request, *args, timeout=None if timeout is None else CLIENT_TIMEOUT_S, **kwargs)

    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", quick_send)
    urlopen = urllib3.PoolManager.urlopen

    def quick_urlopen(self: Any, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        timeout = kwargs.get("timeout")
        if isinstance(timeout, urllib3.Timeout) and (timeout.total or timeout.connect_timeout or timeout.read_timeout):
            kwargs["timeout"] = CLIENT_TIMEOUT_S
        return urlopen(self, method, url, *args, **kwargs)

    monkeypatch.setattr(urllib3.PoolManager, "urlopen", quick_urlopen)


def _closed_port() -> str:
    with HTTPStub() as gone:
        return gone.url


def break_backend(stub: HTTPStub, failure: str, monkeypatch: pytest.MonkeyPatch) -> str | None:
    """Make ``stub`` fail as ``failure`` says; returns a dead URL to use instead for "refused"."""
    if failure == "timeout":
        cut_client_timeouts(monkeypatch)
    if failure == "refused":
        return _closed_port()
    if failure == "http 500":
        stub.fail(status=500)
    elif failure == "timeout":
        stub.fail(delay_s=STUB_DELAY_S, drop=True)
    elif failure == "dropped":
        stub.fail(drop=True)
    elif failure == "garbage":
        stub.fail(garbage=True)  # a body that is not JSON, sent as JSON
    elif failure == "html page":
        stub.fail(garbage=True, content_type="text/html")  # a proxy's 200 page
    return None


def assert_only_runbook_errors(call: Callable[[], Any], failure: str) -> None:
    began = time.monotonic()
    try:
        call()
    except RunbookError as e:
        assert str(e), "a project error says what failed"
    except Exception as e:  # noqa: BLE001 (this is the point of the test)
        pytest.fail(f"{type(e).__module__}.{type(e).__name__} escaped: {e}")
    if failure == "timeout":
        # The stub answers only after STUB_DELAY_S: ending well before means a client timeout fired.
        assert time.monotonic() - began < STUB_DELAY_S - 1, "the call waited for the server: no client timeout"


# -- Kubernetes ---------------------------------------------------------------------------------

def _kube_calls() -> dict[str, Callable[[Platform], Any]]:
    from runbooks_lib.platform import checks, rollout
    from runbooks_lib.procedures.judging import verdicts
    from runbooks_lib.procedures.deploy.release import DeployParams, DeployRun
    from runbooks_lib.run.cluster_identity import check_cluster_identity
    from runbooks_lib.procedures.health import HealthCheck
    from runbooks_lib.run.lock import DeployLock
    from runbooks_lib.procedures.rollback import RollbackParams, RollbackRun, roll_back

    params = DeployParams(service=SERVICE, version="v1.7.0")
    return {
        "Cluster.deployment": lambda p: p.cluster().deployment(SERVICE),
        "Cluster.deployments": lambda p: p.cluster().deployments(),
        "Cluster.service": lambda p: p.cluster().service(SERVICE),
        "Cluster.live_deployment": lambda p: p.cluster().live_deployment(SERVICE),
        "Cluster.deployment_state": lambda p: p.cluster().deployment_state(SERVICE),
        "Cluster.replica_sets": lambda p: p.cluster().replica_sets(),
        "Cluster.pod_states": lambda p: p.cluster().pod_states(),
        "Cluster.events": lambda p: p.cluster().events(),
        "Cluster.secret": lambda p: p.cluster().secret("veza-secrets"),
        "Cluster.secret_keys": lambda p: p.cluster().secret_keys("veza-secrets"),
        "Cluster.lease": lambda p: p.cluster().lease("l"),
        "Cluster.pod_log": lambda p: p.cluster().pod_log(f"{SERVICE}-h3-0"),
        "Cluster.patch_deployment": lambda p: p.cluster().patch_deployment(SERVICE, {"spec": {"replicas": 3}}, what="scale"),
        "Cluster.create_deployment": lambda p: p.cluster().create_deployment({"metadata": {"name": "x"}}),
        "Cluster.delete_deployment": lambda p: p.cluster().delete_deployment(SERVICE),
        "Cluster.patch_replica_set": lambda p: p.cluster().patch_replica_set(f"{SERVICE}-h1", {}, what="mark"),
        "Cluster.patch_service": lambda p: p.cluster().patch_service(SERVICE, {}, what="pin"),
        "Cluster.apply_secret": lambda p: p.cluster().apply_secret({"metadata": {"name": "s"}}, None),
        "Cluster.create_lease": lambda p: p.cluster().create_lease({"metadata": {"name": "l"}}),
        "Cluster.replace_lease": lambda p: p.cluster().replace_lease("l", {"metadata": {"name": "l"}}),
        "Cluster.delete_lease": lambda p: p.cluster().delete_lease("l", "1"),
        "guard.check_cluster_identity": lambda p: check_cluster_identity(p.profile),
        "rollout.history": lambda p: rollout.history(p.cluster(), SERVICE),
        "rollout.set_image": lambda p: rollout.set_image(p.cluster(), SERVICE, SERVICE, "img:v2"),
        "rollout.undo": lambda p: rollout.undo(p.cluster(), SERVICE),
        "rollout.wait_for_rollout": lambda p: rollout.wait_for_rollout(p.cluster(), SERVICE, 0.1, poll_s=0.01),
        "checks.service_url": lambda p: checks.service_url(p.cluster(), SERVICE),
        "checks.pod_checks": lambda p: checks.pod_checks(p.cluster(), SERVICE, p.profile.services.get(SERVICE)),
        "verdicts.annotate_replica_set": lambda p: verdicts.annotate_replica_set(p.cluster(), f"{SERVICE}-h1", "bad", "w", "r"),
        "DeployLock.acquire": lambda p: DeployLock(p.cluster(), SERVICE, "run-a").acquire(),
        "DeployLock.read": lambda p: DeployLock(p.cluster(), SERVICE, "run-a").read(),
        "roll_back": lambda p: roll_back(p.cluster(), SERVICE, timeout_s=0.1),
        "RollbackRun.history": lambda p: RollbackRun(p.ctx("rollback", service=SERVICE),
                                                     RollbackParams(service=SERVICE)).history(),
        "DeployRun.checklist": lambda p: DeployRun(p.ctx(**params.model_dump()), params).checklist(),
        "HealthCheck.workloads": lambda p: HealthCheck(p.ctx("health_check")).workloads(),
        "HealthCheck.events": lambda p: HealthCheck(p.ctx("health_check")).events(),
    }


# Every call goes through the one client kube.api_client makes, whose deadline is the same for all:
# the slow "timeout" case (the client retries a GET three times) runs for a few calls of each shape.
TIMED = {"Cluster.deployment", "Cluster.pod_states", "Cluster.patch_deployment", "Cluster.delete_lease",
         "guard.check_cluster_identity", "rollout.undo", "DeployLock.acquire", "DeployRun.checklist"}
KUBE_CASES = [(name, failure) for name in _kube_calls() for failure in FAILURES
              if failure != "timeout" or name in TIMED]


@pytest.mark.parametrize("name, failure", KUBE_CASES)
def test_a_failing_api_server(platform: Platform, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                              name: str, failure: str) -> None:
    dead = break_backend(platform.kube, failure, monkeypatch)
    if dead:
        platform.profile = platform.profile.model_copy(update={"cluster": platform.profile.cluster.model_copy(
            update={"kubeconfig": str(write_kubeconfig(dead, tmp_path / "dead-kubeconfig"))})})
    assert_only_runbook_errors(lambda: _kube_calls()[name](platform), failure)


# -- Prometheus ---------------------------------------------------------------------------------

def _prometheus_calls() -> dict[str, Callable[[Platform, str], Any]]:
    from runbooks_lib.procedures.health import HealthCheck
    from runbooks_lib.procedures.judging.judgement import judge_version
    from runbooks_lib.platform.metrics import Metrics
    from runbooks_lib.platform.signals import golden_signals, served_signals

    def health(p: Platform, url: str) -> HealthCheck:
        return HealthCheck(p.ctx("health_check"))

    return {
        "Metrics.query": lambda p, url: Metrics(url).query("up"),
        "Metrics.vector": lambda p, url: Metrics(url).vector("up"),
        "Metrics.range": lambda p, url: Metrics(url).range("up", minutes=1),
        "Metrics.alert_rules": lambda p, url: Metrics(url).alert_rules(),
        "signals.golden_signals": lambda p, url: golden_signals(Metrics(url), SERVICE),
        "Metrics.wait_for_targets": lambda p, url: Metrics(url).wait_for_targets('job="x"', 1, timeout_s=0.1),
        "Metrics.scraped_after": lambda p, url: Metrics(url).scraped_after('job="x"', 1, 0, timeout_s=0.1),
        "signals.served_signals": lambda p, url: served_signals(Metrics(url), SERVICE, 'job="x"', 5, "5 s"),
        "Metrics.is_online": lambda p, url: Metrics(url).is_online(),
        "HealthCheck.golden_signals": lambda p, url: health(p, url).golden_signals(),
        "HealthCheck.plot_golden_signals": lambda p, url: health(p, url).plot_golden_signals(minutes=1),
        "judgement.judge_version": lambda p, url: judge_version(
            p.ctx(), p.cluster(), SERVICE, "v1.6.0", observe_s=0, pod_label_selector=f"app={SERVICE}"),
    }


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("name", list(_prometheus_calls()))
def test_a_failing_prometheus(platform: Platform, monkeypatch: pytest.MonkeyPatch, name: str, failure: str) -> None:
    from runbooks_lib.config.profiles import PrometheusSettings

    url = break_backend(platform.prom, failure, monkeypatch) or platform.prom.url
    platform.profile = platform.profile.model_copy(update={"prometheus": PrometheusSettings(url=url)})
    assert_only_runbook_errors(lambda: _prometheus_calls()[name](platform, url), failure)


# -- Vault --------------------------------------------------------------------------------------

def _vault_calls() -> dict[str, Callable[[Platform], Any]]:
    from runbooks_lib.procedures.deploy.release import DeployParams, DeployRun
    from runbooks_lib.procedures.health import HealthCheck
    from runbooks_lib.platform.vault import Vault

    params = DeployParams(service=SERVICE, version="v1.7.0")
    return {
        "Vault.read": lambda p: Vault(p.profile.vault).read(),
        "Vault.write": lambda p: Vault(p.profile.vault).write({"k": "v"}),
        "Vault.health": lambda p: Vault(p.profile.vault).health(),
        "Vault.token_identity": lambda p: Vault(p.profile.vault).token_identity(),
        "HealthCheck.vault": lambda p: HealthCheck(p.ctx("health_check")).vault(),
        "HealthCheck.backups": _backups_health,
        "DeployRun.sync_secrets": lambda p: DeployRun(p.ctx(**params.model_dump()), params).sync_secrets(),
    }


def _backups_health(p: Platform) -> Any:
    """The health check's backup rows over a store holding one manifest: Vault is asked to vouch for it."""
    from runbooks_lib.procedures.dr.store import Manifest
    from runbooks_lib.procedures.health import HealthCheck

    from .conftest import make_ctx

    store = p.home / "backups"
    store.mkdir(exist_ok=True)
    manifest = Manifest(name="veza_db-x", database="veza_db", taken_at="2026-12-01T03:00:00+00:00",
                        finished_at="2026-12-01T03:00:01+00:00", source_lsn="0/1", source_time="2026-12-01T03:00:00+00:00",
                        size=1, plain_size=1, sha256="0" * 64, row_counts={}, marker="x", transit={}, tool_versions={},
                        duration_s=1.0, authentication="vault:v1:bm90LWEtbWFj")
    (store / "veza_db-x.manifest.json").write_text(manifest.to_json())
    profile = p.profile.model_copy(update={"backups": p.profile.backups.model_copy(update={"url": str(store)})})
    health = HealthCheck(make_ctx(profile, p.home, "health_check"))
    health.backups()
    assert [f.part for f in health.findings] == ["backups"], health.findings  # said, not raised
    return health.findings


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("name", list(_vault_calls()))
def test_a_failing_vault(platform: Platform, monkeypatch: pytest.MonkeyPatch, name: str, failure: str) -> None:
    dead = break_backend(platform.vault, failure, monkeypatch)
    if dead:
        platform.profile = platform.profile.model_copy(update={"vault": platform.profile.vault.model_copy(
            update={"address": dead})})
    assert_only_runbook_errors(lambda: _vault_calls()[name](platform), failure)


# -- the services' own HTTP endpoints and the load generator ------------------------------------

def _http_calls() -> dict[str, Callable[[Platform, str], Any]]:
    from runbooks_lib.platform import checks
    from runbooks_lib.platform import load_report as traffic
    from runbooks_lib.procedures.rollback import wait_until_serving

    def pointed(p: Platform, url: str) -> Platform:
        port = int(url.rsplit(":", 1)[1])
        p.kube.update("services", SERVICE, lambda s: s["spec"]["ports"][0].update(port=port))
        return p

    spec = lambda p, url: p.profile.services.get(SERVICE).model_copy(update={"port": int(url.rsplit(":", 1)[1])})  # noqa: E731
    return {
        "checks.smoke_checks": lambda p, url: checks.smoke_checks(url, spec(p, url), requests_per_route=2),
        "checks.serving_versions": lambda p, url: checks.serving_versions(url, samples=2),
        "checks.pod_checks": lambda p, url: checks.pod_checks(p.cluster(), SERVICE, spec(p, url)),
        "rollback.wait_until_serving": lambda p, url: wait_until_serving(pointed(p, url).cluster(), SERVICE, "v9", 0.1, samples=2),
        "traffic.failed_requests": lambda p, url: traffic.failed_requests(url + "/load", SERVICE, p.kube_started),
    }


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("name", list(_http_calls()))
def test_a_failing_service_endpoint(platform: Platform, monkeypatch: pytest.MonkeyPatch, name: str,
                                    failure: str) -> None:
    from datetime import datetime, timezone

    platform.kube_started = datetime.now(timezone.utc)  # type: ignore[attr-defined]
    url = break_backend(platform.app, failure, monkeypatch) or platform.app.url
    assert_only_runbook_errors(lambda: _http_calls()[name](platform, url), failure)


# -- PostgreSQL ---------------------------------------------------------------------------------

@pytest.fixture
def not_postgres() -> Iterator[str]:
    """A TCP server that answers a PostgreSQL client with bytes that are not the protocol."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(5)
    stop = threading.Event()

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                conn.recv(1024)
                conn.sendall(b"HTTP/1.1 500 Internal Server Error\r\n\r\n")

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield f"postgresql://u:pw-not-shown@127.0.0.1:{server.getsockname()[1]}/veza"
    stop.set()
    server.close()


@pytest.mark.parametrize("failure", ["refused", "garbage"])
def test_a_failing_database(not_postgres: str, failure: str) -> None:
    from runbooks_lib.platform.database import connect, replication_status

    dsn = not_postgres if failure == "garbage" else f"postgresql://u:pw-not-shown@{_closed_port()[7:]}/veza"
    status = replication_status(dsn, dsn)
    assert not status.primary_reachable and not status.standby_reachable
    with pytest.raises(RunbookError) as raised:
        connect(dsn)
    assert "pw-not-shown" not in str(raised.value)
