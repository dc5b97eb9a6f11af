"""kubectl rollout (status, history, undo, pause/resume), set image and scale against the sandbox.

These need the Deployment/ReplicaSet controllers (runbooks_sandbox.models.controllers), which
the ApiServer starts by default, and the instant pod runtime, which makes pods ready.
"""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from runbooks_sandbox.apiserver import ApiServer
from runbooks_sandbox.models.instant_runtime import InstantRuntime

pytestmark = pytest.mark.sandbox

IMAGE = "registry.veza.app/veza-backend-api"
DEPLOYMENT = """\
apiVersion: apps/v1
kind: Deployment
metadata: {name: api, labels: {app: api}}
spec:
  replicas: 3
  progressDeadlineSeconds: DEADLINE
  strategy: {type: RollingUpdate, rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  selector: {matchLabels: {app: api}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "IMAGE:1.0.0", ports: [{containerPort: 8080}]}]
""".replace("IMAGE", IMAGE)


def manifest(deadline: int) -> str:
    return DEPLOYMENT.replace("DEADLINE", str(deadline))


def deploy(kubectl, deadline: int = 600) -> None:  # type: ignore[no-untyped-def]
    kubectl("apply", "-f", "-", input=manifest(deadline))
    kubectl("rollout", "status", "deploy/api", "--timeout=30s")


def revisions(kubectl) -> list[tuple[str, str]]:  # type: ignore[no-untyped-def]
    lines = kubectl("rollout", "history", "deploy/api").stdout.splitlines()
    rows = [line.split(None, 1) for line in lines[2:] if line.strip()]
    return [(row[0], row[1].strip() if len(row) > 1 else "") for row in rows]


def image_of(kubectl) -> str:  # type: ignore[no-untyped-def]
    return kubectl("get", "deploy", "api", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout


def test_set_image_history_undo_and_reused_revision(kubectl) -> None:
    deploy(kubectl)
    kubectl("set", "image", "deploy/api", f"api={IMAGE}:1.1.0")
    kubectl("annotate", "deploy/api", "kubernetes.io/change-cause=release 1.1.0")
    status = kubectl("rollout", "status", "deploy/api", "--timeout=30s").stdout
    assert 'deployment "api" successfully rolled out' in status
    assert revisions(kubectl) == [("1", "<none>"), ("2", "release 1.1.0")]
    ready = kubectl("get", "deploy", "api", "-o", "jsonpath={.status.readyReplicas}/{.status.updatedReplicas}").stdout
    assert ready == "3/3"

    assert "rolled back" in kubectl("rollout", "undo", "deploy/api").stdout
    kubectl("rollout", "status", "deploy/api", "--timeout=30s")
    assert image_of(kubectl) == f"{IMAGE}:1.0.0"
    assert [r for r, _ in revisions(kubectl)] == ["2", "3"], "the reused revision 1 becomes 3"

    reused = kubectl("rollout", "undo", "deploy/api", "--to-revision=1", check=False)
    assert reused.returncode != 0 and "unable to find specified revision 1" in reused.stderr
    kubectl("rollout", "undo", "deploy/api", "--to-revision=2")
    kubectl("rollout", "status", "deploy/api", "--timeout=30s")
    assert image_of(kubectl) == f"{IMAGE}:1.1.0"
    history = kubectl("get", "rs", "-l", "app=api", "-o",
                      "jsonpath={range .items[*]}{.metadata.annotations.deployment\\.kubernetes\\.io/revision}"
                      "={.metadata.annotations.deployment\\.kubernetes\\.io/revision-history} {end}").stdout
    assert sorted(history.split()) == ["3=1", "4=2"], "revision-history records the reused number"


def test_scale_and_pods_follow(kubectl) -> None:
    deploy(kubectl)
    kubectl("scale", "deploy/api", "--replicas=5")
    kubectl("rollout", "status", "deploy/api", "--timeout=30s")
    pods = kubectl("get", "po", "-l", "app=api", "-o", "name").stdout.split()
    assert len(pods) == 5
    wide = kubectl("get", "deploy", "api").stdout.splitlines()[1].split()
    assert wide[1:4] == ["5/5", "5", "5"]


def test_pause_holds_the_rollout_and_resume_releases_it(kubectl) -> None:
    deploy(kubectl)
    kubectl("rollout", "pause", "deploy/api")
    kubectl("set", "image", "deploy/api", f"api={IMAGE}:2.0.0")
    replicasets = kubectl("get", "rs", "-l", "app=api", "-o", "name").stdout.split()
    assert len(replicasets) == 1, "a paused deployment is not rolled"
    kubectl("rollout", "resume", "deploy/api")
    kubectl("rollout", "status", "deploy/api", "--timeout=30s")
    assert len(kubectl("get", "rs", "-l", "app=api", "-o", "name").stdout.split()) == 2


@pytest.fixture
def unready_cluster(tmp_path: Path, kubectl_command: list[str]):  # type: ignore[no-untyped-def]
    """A second server whose pods never become ready, and a kubectl for it."""
    server = ApiServer(port=0, kubeconfig=tmp_path / "config", runtime=InstantRuntime(ready_after=None))
    server.start()

    def run(*args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        command = [kubectl_command[0], "--kubeconfig", str(server.kubeconfig), "--cache-dir",
                   str(tmp_path / "cache"), *args]
        result = subprocess.run(command, input=input, capture_output=True, text=True, timeout=60)
        assert not check or result.returncode == 0, result.stderr
        return result

    yield run
    server.stop()


def test_rollout_status_fails_on_progress_deadline(unready_cluster) -> None:
    unready_cluster("apply", "-f", "-", input=manifest(1))
    status = unready_cluster("rollout", "status", "deploy/api", "--timeout=30s", check=False)
    assert status.returncode != 0
    assert 'deployment "api" exceeded its progress deadline' in status.stderr
