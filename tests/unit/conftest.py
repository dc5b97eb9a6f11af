"""Fixtures for the library's unit tests: real clients against local stubs, no sandbox.

``platform`` is one namespace with the backend service: a Deployment at revision 3 (v1.6.0) with
its three ReplicaSets (v1.4.0, v1.5.0, v1.6.0), two ready pods answering on the app stub, and
its Service; Vault holds two secrets and Prometheus answers healthy golden signals.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from runbooks_lib.platform.cluster import Cluster
from runbooks_lib.run.context import RunContext
from runbooks_lib.platform.images import version_of_image
from runbooks_lib.config.profiles import Profile
from runbooks_lib.procedures.judging.verdicts import VERDICT_ANNOTATION

from ..kube_stub import KubeStub, Request, deployment, pod, replica_set, service
from .backends import AppStub, PrometheusStub, VaultStub

SERVICE = "veza-backend-api"
REPO = "registry.veza.app"
TOKEN = "dev-token-not-a-secret"


def image(version: str) -> str:
    return f"{REPO}/{SERVICE}:{version}"


@pytest.fixture
def kube() -> Iterator[KubeStub]:
    with KubeStub(namespace="veza") as stub:
        yield stub


@pytest.fixture
def app() -> Iterator[AppStub]:
    with AppStub("v1.6.0") as stub:
        yield stub


@pytest.fixture
def prom() -> Iterator[PrometheusStub]:
    with PrometheusStub() as stub:
        # The sequential verdict's looks: requests and 5xx counted since the window's start
        # (200 clean requests decide at the first look), each pod just scraped.
        stub.answer(r'code=~"5\.\."', 0)
        stub.answer(r"^\(sum \(http_requests_total", 200)
        stub.answer(r"^min\(timestamp\(up", 4_000_000_000)
        stub.answer(r"^count\(up", 2)
        stub.answer(r"^sum ?\(rate\(http_requests_total", 20.0)
        stub.answer(r"^1 - ", 1.0)
        stub.answer(r"histogram_quantile", 42.0)
        yield stub


@pytest.fixture
def vault() -> Iterator[VaultStub]:
    with VaultStub(TOKEN) as stub:
        stub.kv["veza/sandbox"] = {"database_url": "postgres://u:hunter2@db/veza", "jwt_secret": "s3cret-jwt"}
        stub.versions["veza/sandbox"] = 1
        yield stub


def profile_for(kubeconfig: Path, *, vault_url: str, prometheus_url: str, port: int, name: str = "sandbox",
                **extra: Any) -> Profile:
    return Profile.model_validate({
        "name": name,
        # Refused requests are sent again for half a second (api_retry), not the 20 s of a profile.
        "cluster": {"kubeconfig": str(kubeconfig), "context": "stub", "namespace": "veza",
                    "identity": {"expected": "uid-stub"}, "retry_for_s": 0.5,
                    "reach": "direct"},  # the stub pods answer on 127.0.0.1
        "vault": {"address": vault_url, "auth": {"method": "token", "token": TOKEN}, "path": f"secret/veza/{name}"},
        "prometheus": {"url": prometheus_url},
        "timeouts": {"rollout_s": 3, "rollback_s": 3, "health_s": 3},
        "services": {"image_repository": REPO, "services": {
            SERVICE: {"port": port, "replicas": 2, "smoke_routes": ["/api/v1/health"]}}},
        **extra,
    })


@pytest.fixture
def profile(tmp_path: Path, kube: KubeStub, vault: VaultStub, prom: PrometheusStub, app: AppStub) -> Profile:
    return profile_for(kube.write_kubeconfig(tmp_path / "kubeconfig"), vault_url=vault.url,
                       prometheus_url=prom.url, port=app.port)


@pytest.fixture(autouse=True)
def no_retry_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus-api-client retries a failed request with 0 + 2 + 4 s of backoff: keep the retries,
    skip the sleeping (these tests are about what comes out, not when)."""
    from urllib3.util.retry import Retry

    monkeypatch.setattr(Retry, "sleep", lambda self, response=None: None)


@pytest.fixture(autouse=True)
def records_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Records and journals under the test's own folder: never the checkout's outputs/."""
    monkeypatch.setenv("RUNBOOKS_HOME", str(tmp_path))
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "unit-test")
    return tmp_path


def make_ctx(profile: Profile, home: Path, runbook: str = "deploy", **params: Any) -> RunContext:
    ctx = RunContext(runbook, profile.name, profile, params, run_id="run-unit", home=home)
    ctx.cluster = {"server": "stub", "context": "stub", "identity": "uid-stub"}
    return ctx


@dataclass
class Platform:
    kube: KubeStub
    app: AppStub
    prom: PrometheusStub
    vault: VaultStub
    profile: Profile
    home: Path

    def cluster(self, dry_run: bool = False) -> Cluster:
        return Cluster(self.profile, dry_run=dry_run)

    def ctx(self, runbook: str = "deploy", **params: Any) -> RunContext:
        return make_ctx(self.profile, self.home, runbook, **params)

    def instant_controller(self, stuck: tuple[str, ...] = ()) -> None:
        """Every Deployment read is already rolled out (except ``stuck`` ones), and the Service
        answers /version with the version its selector now reaches: a controller with no delay."""
        def complete(request: Request) -> None:
            name = request.path.rsplit("/", 1)[-1]
            if request.method != "GET" or "/deployments/" not in request.path or name in stuck:
                return
            if self.kube.get("deployments", name) is None:
                return
            def done(dep: dict[str, Any]) -> None:
                replicas = dep["spec"].get("replicas", 1)
                dep["status"] = {"observedGeneration": dep["metadata"].get("generation", 1), "replicas": replicas,
                                 "updatedReplicas": replicas, "readyReplicas": replicas, "availableReplicas": replicas}
            self.kube.update("deployments", name, done)

        self.kube.hooks.append(complete)
        self.app.serving = self.serving_version

    def roll_forward(self, version: str) -> int:
        """As if a deploy of ``version`` had rolled out: a new revision, its ReplicaSet, its pods."""
        dep = self.kube.get("deployments", SERVICE)
        number = int(dep["metadata"]["annotations"]["deployment.kubernetes.io/revision"]) + 1

        def advance(d: dict[str, Any]) -> None:
            d["metadata"]["annotations"]["deployment.kubernetes.io/revision"] = str(number)
            d["spec"]["template"]["spec"]["containers"][0]["image"] = image(version)
            d["spec"]["template"]["metadata"]["labels"]["version"] = version

        dep = self.kube.update("deployments", SERVICE, advance)
        self.kube.add("replicasets", replica_set(dep, number, image(version), replicas=2, version_label=version))
        for key in [k for k in self.kube.objects if k[0] == "pods"]:
            del self.kube.objects[key]
        for i in range(2):
            self.kube.add("pods", pod(f"{SERVICE}-h{number}-{i}", image(version), labels={
                "app": SERVICE, "version": version, "pod-template-hash": f"h{number}"}))
        self.app.version = version
        return number

    def mark_verdict(self, revision: int, verdict: str, why: str) -> None:
        """As an earlier run leaves it: the verdict annotation on revision ``revision``'s ReplicaSet."""
        value = json.dumps({"verdict": verdict, "why": why, "run": "run-old", "at": "2026-12-01T10:00:00Z"})
        self.kube.update("replicasets", f"{SERVICE}-h{revision}",
                         lambda rs: rs["metadata"]["annotations"].update({VERDICT_ANNOTATION: value}))

    def serving_version(self) -> str | None:
        selector = (self.kube.get("services", SERVICE) or {}).get("spec", {}).get("selector") or {}
        for (plural, _, _), obj in list(self.kube.objects.items()):
            labels = obj["spec"]["template"]["metadata"].get("labels") or {} if plural == "deployments" else None
            if labels is not None and all(labels.get(k) == v for k, v in selector.items()):
                return version_of_image(obj["spec"]["template"]["spec"]["containers"][0]["image"])
        return None


def seed(kube: KubeStub, port: int, versions: tuple[str, ...] = ("v1.4.0", "v1.5.0", "v1.6.0")) -> None:
    """The service at its last version, with one ReplicaSet per version and two ready pods."""
    current = len(versions)
    dep = kube.add("deployments", deployment(SERVICE, image(versions[-1]), replicas=2, revision=current,
                                             labels={"app": SERVICE, "version": versions[-1]}))
    for number, version in enumerate(versions, 1):
        kube.add("replicasets", replica_set(dep, number, image(version), replicas=2 if number == current else 0,
                                            version_label=version))
    for i in range(2):
        kube.add("pods", pod(f"{SERVICE}-h{current}-{i}", image(versions[-1]),
                             labels={"app": SERVICE, "version": versions[-1], "pod-template-hash": f"h{current}"}))
    kube.add("services", service(SERVICE, port))


@pytest.fixture
def platform(kube: KubeStub, app: AppStub, prom: PrometheusStub, vault: VaultStub, profile: Profile,
             tmp_path: Path) -> Platform:
    seed(kube, app.port)
    return Platform(kube, app, prom, vault, profile, tmp_path)
