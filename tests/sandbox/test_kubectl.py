"""kubectl 1.32 (unmodified, fresh --cache-dir) against the sandbox API server.

These need no controllers: ReplicaSets and pods are applied directly where a test needs them.
The rollout commands, which need the Deployment controller, are in test_kubectl_rollout.py.
"""
from __future__ import annotations

import base64
import json
import subprocess
import time

import pytest

pytestmark = pytest.mark.sandbox

APP = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web, version: blue}}
    spec:
      containers:
      - name: web
        image: registry.veza.app/veza-frontend:1.0.0
        ports: [{containerPort: 80}]
        env: [{name: MODE, value: "blue"}]
---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector: {app: web, version: blue}
  ports: [{port: 80, targetPort: 80}]
"""

REPLICASET = """\
apiVersion: apps/v1
kind: ReplicaSet
metadata: {name: cache}
spec:
  replicas: 1
  selector: {matchLabels: {app: cache}}
  template:
    metadata: {labels: {app: cache}}
    spec:
      containers: [{name: redis, image: redis:7}]
"""


def header(output: str) -> list[str]:
    return output.splitlines()[0].split()


def test_get_prints_real_columns_and_wide_shows_pod_ips(kubectl) -> None:
    kubectl("apply", "-f", "-", input=APP)
    kubectl("apply", "-f", "-", input=REPLICASET)
    kubectl("run", "solo", "--image=registry.veza.app/veza-backend-api:1.0.0", "--labels=app=solo")
    assert header(kubectl("get", "deploy").stdout) == ["NAME", "READY", "UP-TO-DATE", "AVAILABLE", "AGE"]
    assert header(kubectl("get", "rs").stdout) == ["NAME", "DESIRED", "CURRENT", "READY", "AGE"]
    assert header(kubectl("get", "svc").stdout) == ["NAME", "TYPE", "CLUSTER-IP", "EXTERNAL-IP", "PORT(S)", "AGE"]
    deadline = time.monotonic() + 10
    while "Running" not in (pods := kubectl("get", "po", "solo", "-o", "wide").stdout) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert header(pods)[:7] == ["NAME", "READY", "STATUS", "RESTARTS", "AGE", "IP", "NODE"]
    ip = kubectl("get", "po", "solo", "-o", "jsonpath={.status.podIP}").stdout
    assert ip.startswith("127.") and ip in pods
    combined = kubectl("get", "deploy,rs,po,svc", "-o", "wide").stdout
    for expected in ("deployment.apps/web", "replicaset.apps/cache", "pod/solo", "service/web",
                     "registry.veza.app/veza-frontend:1.0.0", "app=web,version=blue", "80/TCP"):
        assert expected in combined


def test_apply_twice_is_unchanged_and_an_edit_is_configured(kubectl) -> None:
    first = kubectl("apply", "-f", "-", input=APP).stdout
    assert "deployment.apps/web created" in first and "service/web created" in first
    second = kubectl("apply", "-f", "-", input=APP).stdout
    assert "deployment.apps/web unchanged" in second and "service/web unchanged" in second
    edited = kubectl("apply", "-f", "-", input=APP.replace("veza-frontend:1.0.0", "veza-frontend:1.1.0")).stdout
    assert "deployment.apps/web configured" in edited and "service/web unchanged" in edited
    image = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].image}").stdout
    assert image == "registry.veza.app/veza-frontend:1.1.0"
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.generation}").stdout == "2"


def test_patch_service_selector(kubectl) -> None:
    kubectl("apply", "-f", "-", input=APP)
    assert "service/web patched" in kubectl("patch", "svc", "web", "-p", '{"spec":{"selector":{"version":"green"}}}').stdout
    selector = json.loads(kubectl("get", "svc", "web", "-o", "jsonpath={.spec.selector}").stdout)
    assert selector == {"app": "web", "version": "green"}


def test_create_secret_generic_and_configmap(kubectl) -> None:
    assert "secret/db created" in kubectl("create", "secret", "generic", "db", "--from-literal=password=s3cret").stdout
    data = kubectl("get", "secret", "db", "-o", "jsonpath={.data.password}").stdout
    assert base64.b64decode(data) == b"s3cret"
    assert kubectl("get", "secret", "db", "-o", "jsonpath={.type}").stdout == "Opaque"
    kubectl("create", "configmap", "settings", "--from-literal=LOG_LEVEL=debug")
    assert kubectl("get", "cm", "settings", "-o", "jsonpath={.data.LOG_LEVEL}").stdout == "debug"


def test_scale_and_delete(kubectl) -> None:
    kubectl("apply", "-f", "-", input=APP)
    assert "scaled" in kubectl("scale", "deploy", "web", "--replicas=4").stdout
    assert kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.replicas}").stdout == "4"
    assert 'deployment.apps "web" deleted' in kubectl("delete", "deploy", "web").stdout
    missing = kubectl("get", "deploy", "web", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_dry_run_server_changes_nothing(kubectl) -> None:
    assert "(server dry run)" in kubectl("apply", "-f", "-", "--dry-run=server", input=APP).stdout
    assert kubectl("get", "deploy,svc", "-o", "name").stdout == ""
    kubectl("apply", "-f", "-", input=APP)
    spec_of = lambda: kubectl("get", "deploy", "web", "-o", "jsonpath={.metadata.generation} {.spec}").stdout
    before = spec_of()
    kubectl("scale", "deploy", "web", "--replicas=5", "--dry-run=server")
    kubectl("set", "image", "deploy/web", "web=registry.veza.app/veza-frontend:9.9.9", "--dry-run=server")
    kubectl("delete", "deploy", "web", "--dry-run=server")
    kubectl("create", "secret", "generic", "dry", "--from-literal=a=b", "--dry-run=server")
    assert spec_of() == before
    assert kubectl("get", "secret", "dry", check=False).returncode != 0


def test_get_watch_streams_rows(kubectl, kubectl_command, namespace: str) -> None:
    command = kubectl_command + ["-n", namespace, "get", "configmaps", "-w"]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True) as watcher:
        try:
            time.sleep(1.0)  # let the watch start before the change
            kubectl("create", "configmap", "live", "--from-literal=a=b")
            lines = [watcher.stdout.readline() for _ in range(2)]  # type: ignore[union-attr]
        finally:
            watcher.terminate()
            watcher.wait(timeout=10)
    assert lines[0].split()[:3] == ["NAME", "DATA", "AGE"]
    assert lines[1].split()[:2] == ["live", "1"]


def test_namespaces_logs_and_discovery(kubectl) -> None:
    names = kubectl("get", "ns", "-o", "name", namespaced=False).stdout.split()
    assert {"namespace/default", "namespace/kube-system"} <= set(names)
    resources = kubectl("api-resources", namespaced=False).stdout
    for line in ("deployments ", "deploy", "virtualservices", "leases"):
        assert line in resources
    kubectl("run", "logger", "--image=registry.veza.app/veza-backend-api:1.0.0")
    assert kubectl("logs", "logger").returncode == 0


def test_server_side_apply_creates_then_updates(kubectl) -> None:
    assert "serverside-applied" in kubectl("apply", "--server-side", "-f", "-", input=APP).stdout
    kubectl("apply", "--server-side", "-f", "-", input=APP.replace('value: "blue"', 'value: "green"'))
    env = kubectl("get", "deploy", "web", "-o", "jsonpath={.spec.template.spec.containers[0].env[0].value}").stdout
    assert env == "green"


def test_deleting_an_owner_collects_its_dependents(kubectl) -> None:
    kubectl("apply", "-f", "-", input=REPLICASET)
    uid = kubectl("get", "rs", "cache", "-o", "jsonpath={.metadata.uid}").stdout
    pod = f"""{{"apiVersion": "v1", "kind": "Pod", "metadata": {{"name": "cache-x", "ownerReferences":
        [{{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "cache", "uid": "{uid}", "controller": true}}]}},
        "spec": {{"containers": [{{"name": "redis", "image": "redis:7"}}]}}}}"""
    kubectl("apply", "-f", "-", input=pod)
    kubectl("delete", "rs", "cache")  # background: the garbage collector follows a moment later
    deadline = time.monotonic() + 10
    while kubectl("get", "po", "cache-x", check=False).returncode == 0:
        assert time.monotonic() < deadline, "the dependent pod was never collected"
        time.sleep(0.1)
