"""The garbage collector through the real clients: background, foreground and orphan deletion,
dangling owners, and create-then-delete cycles that must leave no pod and no process behind."""
from __future__ import annotations

import json
import random
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Callable

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException


pytestmark = pytest.mark.sandbox

IMAGE = "registry.veza.app/veza-backend-api:v1.5.0"


def wait_until(check: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def deployment(name: str, replicas: int = 1, grace: int = 1) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"terminationGracePeriodSeconds": grace,
                                           "containers": [{"name": "api", "image": IMAGE,
                                                           "ports": [{"containerPort": 8080}]}]}}}}


def config_map(name: str, owner: Any = None, block: bool = False, finalizers: list[str] | None = None) -> dict:
    meta: dict = {"name": name}
    if owner is not None:
        meta["ownerReferences"] = [{"apiVersion": "v1", "kind": "ConfigMap", "name": owner.metadata.name,
                                    "uid": owner.metadata.uid, "blockOwnerDeletion": block}]
    if finalizers:
        meta["finalizers"] = finalizers
    return {"metadata": meta, "data": {"k": "v"}}


def names(items: list) -> set[str]:
    return {item.metadata.name for item in items}


def test_background_deletion_collects_replicasets_and_pods(api_client, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    wait_until(lambda: len(core.list_namespaced_pod(namespace).items) == 2, what="two pods")
    apps.delete_namespaced_deployment("web", namespace, propagation_policy="Background")
    with pytest.raises(ApiException) as gone:  # the owner goes at once ...
        apps.read_namespaced_deployment("web", namespace)
    assert gone.value.status == 404
    # ... and the collector removes the ReplicaSet, then its pods.
    wait_until(lambda: not apps.list_namespaced_replica_set(namespace).items
               and not core.list_namespaced_pod(namespace).items, what="dependents collected")


def test_foreground_deletion_keeps_the_owner_until_blocking_dependents_are_gone(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(namespace, config_map("owner"))
    core.create_namespaced_config_map(namespace, config_map("blocker", owner, block=True, finalizers=["example.com/hold"]))
    core.create_namespaced_config_map(namespace, config_map("loose", owner, block=False))
    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Foreground")

    marked = core.read_namespaced_config_map("owner", namespace)
    assert marked.metadata.deletion_timestamp and "foregroundDeletion" in marked.metadata.finalizers
    blocker = wait_until(lambda: core.read_namespaced_config_map("blocker", namespace).metadata.deletion_timestamp
                         and core.read_namespaced_config_map("blocker", namespace), what="blocker deleting")
    wait_until(lambda: "loose" not in names(core.list_namespaced_config_map(namespace).items), what="loose gone")
    time.sleep(0.3)  # the owner waits for the blocking dependent, however long it takes
    assert "owner" in names(core.list_namespaced_config_map(namespace).items)

    core.patch_namespaced_config_map("blocker", namespace, {"metadata": {"finalizers": None}})
    assert blocker.metadata.finalizers == ["example.com/hold"]
    wait_until(lambda: not {"owner", "blocker"} & names(core.list_namespaced_config_map(namespace).items),
               what="owner gone after its blocking dependent")


def test_kubectl_foreground_cascade_removes_the_whole_tree_before_the_owner(kubectl, api_client, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    wait_until(lambda: len(core.list_namespaced_pod(namespace).items) == 2, what="two pods")
    kubectl("delete", "deployment", "web", "--cascade=foreground")  # waits until the deployment is gone
    assert not apps.list_namespaced_replica_set(namespace).items and not core.list_namespaced_pod(namespace).items


def test_orphan_deletion_strips_owner_references(kubectl, api_client, namespace: str) -> None:
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    apps.create_namespaced_deployment(namespace, deployment("web", replicas=2))
    wait_until(lambda: len(core.list_namespaced_pod(namespace).items) == 2, what="two pods")
    kubectl("delete", "deployment", "web", "--cascade=orphan")
    (rs,) = apps.list_namespaced_replica_set(namespace).items
    assert not rs.metadata.owner_references and not rs.metadata.deletion_timestamp
    pods = core.list_namespaced_pod(namespace).items
    assert len(pods) == 2 and all(p.metadata.owner_references[0].uid == rs.metadata.uid for p in pods)


def test_objects_whose_owner_never_existed_or_was_replaced_are_collected(api_client, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    ghost = client.V1ConfigMap(metadata=client.V1ObjectMeta(name="ghost", uid=str(uuid.uuid4())))
    core.create_namespaced_config_map(namespace, config_map("orphaned", ghost))
    old = core.create_namespaced_config_map(namespace, config_map("owner"))
    core.delete_namespaced_config_map("owner", namespace)
    core.create_namespaced_config_map(namespace, config_map("owner"))  # same name, new uid
    core.create_namespaced_config_map(namespace, config_map("stale-ref", old))
    wait_until(lambda: names(core.list_namespaced_config_map(namespace).items) == {"owner"},
               what="objects with dangling owners collected")


# --- the race: controllers acting on copies read before a delete -----------------------------

def workload_pids(state_dir: Path) -> list[int]:
    """Every process on this machine started for a pod of this runtime (its argv names the state dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"runbooks_sandbox.workload" in argv and any(str(state_dir).encode() in arg for arg in argv):
            found.append(int(entry.name))
    return found


def test_create_then_delete_cycles_leave_no_pod_and_no_process(process_cluster) -> None:
    server, runtime, api = process_cluster
    apps, core = client.AppsV1Api(api), client.CoreV1Api(api)
    namespace = f"gc-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    cycles, threads = 200, 4
    rng = random.Random(11)
    delays = [rng.uniform(0.0, 0.05) for _ in range(cycles)]
    errors: list[BaseException] = []

    def hammer(worker: int) -> None:
        try:
            for index in range(worker, cycles, threads):
                name = f"d{index}"
                apps.create_namespaced_deployment(namespace, deployment(name, grace=1))
                time.sleep(delays[index])
                apps.delete_namespaced_deployment(name, namespace)
        except BaseException as e:  # surfaced below
            errors.append(e)

    started = time.monotonic()
    workers = [threading.Thread(target=hammer, args=(w,)) for w in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert not errors, errors
    hammered = time.monotonic() - started

    def settled() -> bool:
        return not core.list_namespaced_pod(namespace).items and not apps.list_namespaced_replica_set(namespace).items

    wait_until(settled, timeout=60, what="every pod and ReplicaSet collected")
    collected = time.monotonic() - started
    time.sleep(0.5)  # a straggling controller write would show up by now
    pods = core.list_namespaced_pod(namespace).items
    replica_sets = apps.list_namespaced_replica_set(namespace).items
    assert not pods and not replica_sets, f"left behind: {names(pods)} {names(replica_sets)}"
    wait_until(lambda: not [k for k in runtime.pids() if k.startswith(f"{namespace}/")], timeout=15,
               what="runtime has no container of the namespace")
    wait_until(lambda: not workload_pids(runtime.state_dir), timeout=15, what="no stray workload process")
    # Raw JSON: the client's models take seconds to build for a couple of thousand events.
    events = json.loads(core.list_namespaced_event(namespace, _preload_content=False).data)["items"]
    created = sum(1 for e in events if e["reason"] == "SuccessfulCreate" and e["involvedObject"]["kind"] == "ReplicaSet")
    launched = sum(1 for e in events if e["reason"] == "Started")
    assert launched > 0, "no pod process ever started: the cycles did not exercise the runtime"
    print(f"\n{cycles} create-then-delete cycles in {hammered:.1f}s ({created} pods created, {launched} processes "
          f"started), all collected after {collected:.1f}s, checks done after {time.monotonic() - started:.1f}s")
    core.delete_namespace(namespace)
