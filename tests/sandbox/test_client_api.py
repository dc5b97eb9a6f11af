"""The unmodified official kubernetes client against the sandbox API server, over HTTP."""
from __future__ import annotations

import threading
import time

import pytest
from kubernetes import client, watch
from kubernetes.client.rest import ApiException

from runbooks_sandbox.apiserver import ApiServer

pytestmark = pytest.mark.sandbox


def deployment_body(name: str = "api", image: str = "registry.veza.app/veza-backend-api:1.0.0") -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": 1, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": name, "image": image}]}}}}


def test_create_read_replace_patch_deployment(api_client, namespace: str) -> None:
    apps = client.AppsV1Api(api_client)
    created = apps.create_namespaced_deployment(namespace, deployment_body())
    assert created.metadata.uid and created.metadata.generation == 1
    read = apps.read_namespaced_deployment("api", namespace)
    assert read.spec.template.spec.containers[0].image.endswith(":1.0.0")

    while True:  # controllers write status meanwhile: read-modify-replace until no conflict
        read = apps.read_namespaced_deployment("api", namespace)
        read.spec.replicas = 3
        try:
            replaced = apps.replace_namespaced_deployment("api", namespace, read)
            break
        except ApiException as e:
            assert e.status == 409
    assert replaced.spec.replicas == 3 and replaced.metadata.generation == 2

    patched = apps.patch_namespaced_deployment("api", namespace, {"spec": {"template": {"spec": {
        "containers": [{"name": "api", "image": "registry.veza.app/veza-backend-api:1.1.0"}]}}}})
    assert patched.spec.template.spec.containers[0].image.endswith(":1.1.0")  # strategic merge by name
    patched = apps.patch_namespaced_deployment("api", namespace, [
        {"op": "replace", "path": "/spec/replicas", "value": 2}])
    assert patched.spec.replicas == 2  # a list body is a JSON patch

    scale = apps.read_namespaced_deployment_scale("api", namespace)
    assert scale.spec.replicas == 2 and scale.status.selector == "app=api"
    apps.patch_namespaced_deployment_scale("api", namespace, {"spec": {"replicas": 4}})
    assert apps.read_namespaced_deployment("api", namespace).spec.replicas == 4


def test_stale_writes_conflict_and_duplicates_already_exist(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    cm = core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("cfg", namespace, {"data": {"a": "2"}})
    cm.data = {"a": "3"}
    with pytest.raises(ApiException) as stale:
        core.replace_namespaced_config_map("cfg", namespace, cm)
    assert stale.value.status == 409 and "the object has been modified" in stale.value.body
    with pytest.raises(ApiException) as duplicate:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "cfg"}})
    assert duplicate.value.status == 409 and '"reason":"AlreadyExists"' in duplicate.value.body
    with pytest.raises(ApiException) as missing:
        core.read_namespaced_config_map("nope", namespace)
    assert missing.value.status == 404


def test_list_with_set_based_selectors(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    for name, version in [("blue", "blue"), ("green", "green"), ("canary", "canary")]:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": name, "labels": {"version": version}}})
    listed = core.list_namespaced_config_map(namespace, label_selector="version in (blue,green)")
    assert sorted(i.metadata.name for i in listed.items) == ["blue", "green"]
    assert int(listed.metadata.resource_version) > 0
    listed = core.list_namespaced_config_map(namespace, label_selector="version notin (blue,green)")
    assert [i.metadata.name for i in listed.items] == ["canary"]
    listed = core.list_namespaced_config_map(namespace, field_selector="metadata.name=green")
    assert [i.metadata.name for i in listed.items] == ["green"]


def test_secret_string_data_and_dry_run(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "db"}, "stringData": {"password": "pw"}},
                                  dry_run="All")
    with pytest.raises(ApiException):
        core.read_namespaced_secret("db", namespace)
    core.create_namespaced_secret(namespace, {"metadata": {"name": "db"}, "stringData": {"password": "pw"}})
    assert core.read_namespaced_secret("db", namespace).data == {"password": "cHc="}


def test_watch_without_resource_version_replays_existing_objects(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "first"}})
    events = []
    for event in watch.Watch().stream(core.list_namespaced_config_map, namespace, timeout_seconds=2):
        events.append((event["type"], event["object"].metadata.name))
        if len(events) == 1:
            core.create_namespaced_config_map(namespace, {"metadata": {"name": "second"}})
        if len(events) == 2:
            break
    assert events == [("ADDED", "first"), ("ADDED", "second")]


def test_watch_from_resource_version_sees_later_changes_only(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "old"}})
    rv = core.list_namespaced_config_map(namespace).metadata.resource_version
    core.patch_namespaced_config_map("old", namespace, {"data": {"k": "v"}})
    core.delete_namespaced_config_map("old", namespace)
    w = watch.Watch()
    seen = [(e["type"], e["object"].metadata.name)
            for e in w.stream(core.list_namespaced_config_map, namespace, resource_version=rv, timeout_seconds=1)]
    assert seen == [("MODIFIED", "old"), ("DELETED", "old")]


def test_watch_bookmarks_only_when_allowed(tmp_path, namespace: str) -> None:
    with ApiServer(port=0, kubeconfig=tmp_path / "config", controllers=None, runtime=None,
                   bookmark_interval_s=0.2) as server:
        from kubernetes import config
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
        plain = [e["type"] for e in watch.Watch().stream(api.list_namespaced_config_map, "default", timeout_seconds=1)]
        assert "BOOKMARK" not in plain
        marked = [e["type"] for e in watch.Watch().stream(api.list_namespaced_config_map, "default",
                                                           allow_watch_bookmarks=True, timeout_seconds=1)]
        assert "BOOKMARK" in marked


def test_expired_resource_version_is_410(tmp_path) -> None:
    with ApiServer(port=0, kubeconfig=tmp_path / "config", controllers=None, runtime=None,
                   event_history=5) as server:
        from kubernetes import config
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
        for n in range(10):
            api.create_namespaced_config_map("default", {"metadata": {"name": f"c{n}"}})
        with pytest.raises(ApiException) as gone:
            for _ in watch.Watch().stream(api.list_namespaced_config_map, "default", resource_version="2",
                                          timeout_seconds=2):
                pass
        assert gone.value.status == 410


def test_watch_timeout_closes_the_stream(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    started = time.monotonic()
    assert list(watch.Watch().stream(core.list_namespaced_pod, namespace, timeout_seconds=1)) == []
    assert 0.9 <= time.monotonic() - started < 3


def test_leases(api_client, namespace: str) -> None:
    coordination = client.CoordinationV1Api(api_client)
    body = client.V1Lease(metadata=client.V1ObjectMeta(name="deploy-lock"),
                          spec=client.V1LeaseSpec(holder_identity="alice", lease_duration_seconds=60))
    created = coordination.create_namespaced_lease(namespace, body)
    assert created.spec.holder_identity == "alice"
    created.spec.holder_identity = "bob"
    coordination.replace_namespaced_lease("deploy-lock", namespace, created)
    created.spec.holder_identity = "carol"  # stale: bob's write bumped the resourceVersion
    with pytest.raises(ApiException) as stale:
        coordination.replace_namespaced_lease("deploy-lock", namespace, created)
    assert stale.value.status == 409
    assert coordination.read_namespaced_lease("deploy-lock", namespace).spec.holder_identity == "bob"


def test_custom_objects_virtual_service(api_client, namespace: str) -> None:
    custom = client.CustomObjectsApi(api_client)
    args = ("networking.istio.io", "v1beta1", namespace, "virtualservices")
    vs = {"apiVersion": "networking.istio.io/v1beta1", "kind": "VirtualService",
          "metadata": {"name": "api"},
          "spec": {"hosts": ["api"], "http": [{"route": [
              {"destination": {"host": "api", "subset": "stable"}, "weight": 100},
              {"destination": {"host": "api", "subset": "canary"}, "weight": 0}]}]}}
    custom.create_namespaced_custom_object(*args, vs)
    routes = [{"destination": {"host": "api", "subset": "stable"}, "weight": 90},
              {"destination": {"host": "api", "subset": "canary"}, "weight": 10}]
    custom.patch_namespaced_custom_object(*args, "api", {"spec": {"http": [{"route": routes}]}})
    read = custom.get_namespaced_custom_object(*args, "api")
    assert [r["weight"] for r in read["spec"]["http"][0]["route"]] == [90, 10]
    listed = custom.list_namespaced_custom_object(*args)
    assert [i["metadata"]["name"] for i in listed["items"]] == ["api"]
    custom.delete_namespaced_custom_object(*args, "api")
    with pytest.raises(ApiException) as missing:
        custom.get_namespaced_custom_object(*args, "api")
    assert missing.value.status == 404


def test_cluster_identity_is_kube_system_uid(api_client, apiserver: ApiServer) -> None:
    core = client.CoreV1Api(api_client)
    uid = core.read_namespace("kube-system").metadata.uid
    assert uid == apiserver.store.cluster_uid() == core.read_namespace("kube-system").metadata.uid


def test_pods_become_ready_and_logs_are_served(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, {"metadata": {"name": "p"},
                                           "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        pod = core.read_namespaced_pod("p", namespace)
        if any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or []):
            break
        time.sleep(0.05)
    assert pod.status.phase == "Running" and pod.status.pod_ip.startswith("127.")
    assert isinstance(core.read_namespaced_pod_log("p", namespace), str)


def test_concurrent_writers_never_lose_an_update(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "counter"}, "data": {"n": "0"}})

    def increment() -> None:
        for _ in range(5):
            while True:
                cm = core.read_namespaced_config_map("counter", namespace)
                cm.data["n"] = str(int(cm.data["n"]) + 1)
                try:
                    core.replace_namespaced_config_map("counter", namespace, cm)
                    break
                except ApiException as e:
                    assert e.status == 409

    threads = [threading.Thread(target=increment) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert core.read_namespaced_config_map("counter", namespace).data["n"] == "20"


def test_reset_gives_a_new_empty_cluster_on_the_same_port(tmp_path) -> None:
    with ApiServer(port=0, kubeconfig=tmp_path / "config") as server:
        from kubernetes import config
        api = client.CoreV1Api(config.new_client_from_config(config_file=str(server.kubeconfig)))
        api.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
        identity = api.read_namespace("kube-system").metadata.uid
        server.reset()
        assert api.read_namespace("kube-system").metadata.uid != identity
        assert api.list_namespaced_config_map("default").items == []
        api.create_namespaced_pod("default", {"metadata": {"name": "p"},
                                              "spec": {"containers": [{"name": "c", "image": "x:1"}]}})
        deadline = time.monotonic() + 5
        while api.read_namespaced_pod("p", "default").status.phase != "Running":
            assert time.monotonic() < deadline, "the runtime restarts with the new store"
            time.sleep(0.05)


def test_command_line_server_checks_its_port_and_writes_a_kubeconfig(tmp_path) -> None:
    import signal
    import socket
    import subprocess
    import sys

    from kubernetes import config

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = busy.getsockname()[1]
        refused = subprocess.run([sys.executable, "-m", "runbooks_sandbox.apiserver", "--port", str(taken)],
                                 capture_output=True, text=True, timeout=30)
    assert refused.returncode != 0 and f"port {taken}" in refused.stderr

    kubeconfig = tmp_path / "kubeconfig"
    with subprocess.Popen([sys.executable, "-m", "runbooks_sandbox.apiserver", "--port", "0",
                           "--kubeconfig", str(kubeconfig)], stdout=subprocess.PIPE, text=True) as process:
        try:
            assert "sandbox API server at http://127.0.0.1:" in process.stdout.readline()  # type: ignore[union-attr]
            with config.new_client_from_config(config_file=str(kubeconfig)) as api_client:
                assert client.CoreV1Api(api_client).read_namespace("default").status.phase == "Active"
        finally:
            process.send_signal(signal.SIGTERM)
            assert process.wait(timeout=10) == 0


def test_wire_details_discovery_legacy_watch_and_status_bodies(apiserver: ApiServer, namespace: str) -> None:
    import json

    import requests

    base = apiserver.url
    apps = requests.get(f"{base}/apis/apps/v1", timeout=5)
    assert apps.headers["Content-Type"] == "application/json"
    resources = {r["name"]: r for r in apps.json()["resources"]}
    assert resources["deployments"]["shortNames"] == ["deploy"]
    assert (resources["deployments/scale"]["group"], resources["deployments/scale"]["kind"]) == ("autoscaling", "Scale")
    assert "deployments/status" in resources
    assert requests.get(f"{base}/version", timeout=5).json()["major"] == "1"
    root = requests.get(f"{base}/openapi/v3", timeout=5).json()["paths"]
    group_doc = requests.get(f"{base}{root['apis/apps/v1']['serverRelativeURL']}", timeout=5).json()
    assert group_doc["paths"], "kubectl apply refuses an OpenAPI document without paths"

    missing = requests.get(f"{base}/api/v1/namespaces/{namespace}/pods/nope", timeout=5)
    assert missing.status_code == 404 and missing.headers["Content-Type"] == "application/json"
    assert missing.json()["kind"] == "Status" and missing.json()["reason"] == "NotFound"
    unknown = requests.get(f"{base}/apis/example.com/v1/widgets", timeout=5)
    assert unknown.status_code == 404 and unknown.json()["kind"] == "Status"

    requests.post(f"{base}/api/v1/namespaces/{namespace}/configmaps", json={"metadata": {"name": "w"}}, timeout=5)
    legacy = requests.get(f"{base}/api/v1/watch/namespaces/{namespace}/configmaps?timeoutSeconds=1", timeout=10)
    events = [json.loads(line) for line in legacy.text.splitlines()]
    assert legacy.headers["Transfer-Encoding"] == "chunked"
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("ADDED", "w")]
