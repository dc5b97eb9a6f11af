"""Model tests of the store (no HTTP): resourceVersions, concurrency, watch, GC, subresources."""
from __future__ import annotations

import base64
import time

import pytest

from runbooks_sandbox.models import errors
from runbooks_sandbox.models.controllers.garbage import GarbageCollector
from runbooks_sandbox.models.controllers.queue import WorkQueue, Worker
from runbooks_sandbox.models.resources import (CONFIGMAPS, DEPLOYMENTS, NAMESPACES, PODS, REPLICASETS,
                                               SECRETS)
from runbooks_sandbox.models.api import ResourceType
from runbooks_sandbox.models.resources import ResourceInfo
from runbooks_sandbox.models.store import MemoryStore


def deployment(name: str = "web", image: str = "app:1", replicas: int = 2) -> dict:
    return {"metadata": {"name": name, "labels": {"app": name}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "app", "image": image}]}}}}


def owned(kind: str, owner: dict, name: str) -> dict:
    ref = {"apiVersion": owner["apiVersion"], "kind": owner["kind"], "name": owner["metadata"]["name"],
           "uid": owner["metadata"]["uid"], "controller": True}
    body = {"metadata": {"name": name, "labels": {"app": "web"}, "ownerReferences": [ref]},
            "spec": {"containers": [{"name": "app", "image": "app:1"}]}}
    if kind == "rs":
        body["spec"] = {"replicas": 1, "selector": {"matchLabels": {"app": "web"}},
                        "template": {"metadata": {"labels": {"app": "web"}}, "spec": body["spec"]}}
    return body


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore()


def test_cluster_starts_with_namespaces_and_a_fresh_identity(store: MemoryStore) -> None:
    names = [ns["metadata"]["name"] for ns in store.list(NAMESPACES)[0]]
    assert {"default", "kube-system"} <= set(names)
    assert store.cluster_uid() == store.cluster_uid()
    assert MemoryStore().cluster_uid() != store.cluster_uid()


def test_create_sets_metadata_and_refuses_duplicates(store: MemoryStore) -> None:
    before = store.resource_version
    created = store.create(DEPLOYMENTS, "default", deployment())
    meta = created["metadata"]
    assert meta["uid"] and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) == before + 1 and meta["generation"] == 1
    assert created["apiVersion"] == "apps/v1" and created["kind"] == "Deployment"
    assert created["spec"]["strategy"]["rollingUpdate"] == {"maxUnavailable": "25%", "maxSurge": "25%"}
    with pytest.raises(errors.AlreadyExists):
        store.create(DEPLOYMENTS, "default", deployment())
    with pytest.raises(errors.NotFound):
        store.create(DEPLOYMENTS, "no-such-namespace", deployment())


def test_generate_name_and_invalid_selector(store: MemoryStore) -> None:
    created = store.create(CONFIGMAPS, "default", {"metadata": {"generateName": "cfg-"}})
    assert created["metadata"]["name"].startswith("cfg-") and len(created["metadata"]["name"]) == 9
    bad = deployment()
    bad["spec"]["template"]["metadata"]["labels"] = {"app": "other"}
    with pytest.raises(errors.Invalid):
        store.create(DEPLOYMENTS, "default", bad)


def test_stale_replace_conflicts_and_generation_follows_spec_only(store: MemoryStore) -> None:
    created = store.create(DEPLOYMENTS, "default", deployment())
    relabelled = dict(created, metadata=dict(created["metadata"], labels={"app": "web", "tier": "api"}))
    updated = store.replace(DEPLOYMENTS, "default", "web", relabelled)
    assert updated["metadata"]["generation"] == 1
    with pytest.raises(errors.Conflict):
        store.replace(DEPLOYMENTS, "default", "web", created)  # created's resourceVersion is stale
    updated["spec"]["replicas"] = 3
    assert store.replace(DEPLOYMENTS, "default", "web", updated)["metadata"]["generation"] == 2


def test_status_is_a_subresource(store: MemoryStore) -> None:
    created = store.create(DEPLOYMENTS, "default", deployment())
    with_status = store.update_status(DEPLOYMENTS, "default", "web", {"replicas": 2, "readyReplicas": 2})
    assert with_status["metadata"]["generation"] == 1
    attempt = dict(with_status, status={"replicas": 99})
    assert store.replace(DEPLOYMENTS, "default", "web", attempt)["status"]["replicas"] == 2
    rv = store.resource_version
    store.update_status(DEPLOYMENTS, "default", "web", {"replicas": 2, "readyReplicas": 2})
    assert store.resource_version == rv, "a no-op write must not bump the resourceVersion"
    assert created["metadata"]["uid"] == store.get(DEPLOYMENTS, "default", "web")["metadata"]["uid"]


def test_scale_subresource(store: MemoryStore) -> None:
    store.create(DEPLOYMENTS, "default", deployment())
    scale = store.get(DEPLOYMENTS, "default", "web", subresource="scale")
    assert scale["kind"] == "Scale" and scale["spec"]["replicas"] == 2 and scale["status"]["selector"] == "app=web"
    store.patch(DEPLOYMENTS, "default", "web", {"spec": {"replicas": 5}}, "application/merge-patch+json",
                subresource="scale")
    assert store.get(DEPLOYMENTS, "default", "web")["spec"]["replicas"] == 5


def test_secret_string_data_becomes_data(store: MemoryStore) -> None:
    secret = store.create(SECRETS, "default", {"metadata": {"name": "s"}, "stringData": {"password": "pw"}})
    assert "stringData" not in secret and secret["type"] == "Opaque"
    assert base64.b64decode(secret["data"]["password"]) == b"pw"


def test_dry_run_changes_nothing(store: MemoryStore) -> None:
    rv = store.resource_version
    store.create(CONFIGMAPS, "default", {"metadata": {"name": "c"}, "data": {"a": "1"}}, dry_run=True)
    with pytest.raises(errors.NotFound):
        store.get(CONFIGMAPS, "default", "c")
    store.create(CONFIGMAPS, "default", {"metadata": {"name": "c"}, "data": {"a": "1"}})
    store.patch(CONFIGMAPS, "default", "c", {"data": {"a": "2"}}, "merge", dry_run=True)
    store.delete(CONFIGMAPS, "default", "c", dry_run=True)
    assert store.get(CONFIGMAPS, "default", "c")["data"] == {"a": "1"}
    assert store.resource_version == rv + 1


def test_set_based_selectors(store: MemoryStore) -> None:
    for name, labels in [("a", {"version": "blue"}), ("b", {"version": "green"}), ("c", {"tier": "x"})]:
        store.create(CONFIGMAPS, "default", {"metadata": {"name": name, "labels": labels}})
    names = lambda sel: [o["metadata"]["name"] for o in store.list(CONFIGMAPS, "default", label_selector=sel)[0]]
    assert names("version in (blue,green)") == ["a", "b"]
    assert names("version notin (blue)") == ["b", "c"]
    assert names("!version") == ["c"]
    assert names("version,version!=green") == ["a"]
    assert [o["metadata"]["name"] for o in
            store.list(CONFIGMAPS, "default", field_selector="metadata.name=b")[0]] == ["b"]


def test_watch_replays_then_follows_and_translates_selector_changes(store: MemoryStore) -> None:
    store.create(CONFIGMAPS, "default", {"metadata": {"name": "a", "labels": {"v": "1"}}})
    watcher = store.watch(CONFIGMAPS, "default", None, label_selector="v=1")
    first = watcher.poll(0.1)
    assert first is not None and first.type == "ADDED" and first.object["metadata"]["name"] == "a"
    assert watcher.poll(0.05) is None
    store.patch(CONFIGMAPS, "default", "a", {"metadata": {"labels": {"v": "2"}}}, "merge")
    left = watcher.poll(1)
    assert left is not None and left.type == "DELETED", "an object leaving the selector is DELETED"
    store.patch(CONFIGMAPS, "default", "a", {"metadata": {"labels": {"v": "1"}}}, "merge")
    assert watcher.poll(1).type == "ADDED"
    watcher.close()


def test_watch_from_a_version_and_410_when_too_old() -> None:
    store = MemoryStore(event_history=5)
    start = store.resource_version
    for n in range(3):
        store.create(CONFIGMAPS, "default", {"metadata": {"name": f"c{n}"}})
    watcher = store.watch(CONFIGMAPS, "default", start + 1)
    assert [e.object["metadata"]["name"] for e in (watcher.poll(0.1), watcher.poll(0.1))] == ["c1", "c2"]
    for n in range(3, 10):
        store.create(CONFIGMAPS, "default", {"metadata": {"name": f"c{n}"}})
    with pytest.raises(errors.Gone):
        store.watch(CONFIGMAPS, "default", start + 1)


def test_namespace_deletion_deletes_its_objects(store: MemoryStore) -> None:
    store.create(NAMESPACES, None, {"metadata": {"name": "doomed"}})
    store.create(CONFIGMAPS, "doomed", {"metadata": {"name": "c"}})
    store.delete(NAMESPACES, None, "doomed")
    assert store.list(CONFIGMAPS, "doomed")[0] == []
    with pytest.raises(errors.Forbidden):
        store.delete(NAMESPACES, None, "kube-system")


@pytest.fixture
def collected_store(store: MemoryStore):  # type: ignore[no-untyped-def]
    """The store with the garbage collector (and no other controller) running against it."""
    queue = WorkQueue()
    collector = GarbageCollector(store, queue)
    unsubscribe = store.subscribe(lambda event: [queue.add(k) for k in collector.keys_for(event)])
    for key in collector.all_keys():
        queue.add(key)
    worker = Worker("gc", queue, collector.sync)
    worker.start()
    yield store
    unsubscribe()
    queue.shut_down()
    worker.join(timeout=5)


def eventually(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition never held"
        time.sleep(0.01)


def test_owner_deletion_collects_dependents_unless_orphaned(collected_store: MemoryStore) -> None:
    store = collected_store
    deploy = store.create(DEPLOYMENTS, "default", deployment())
    rs = store.create(REPLICASETS, "default", owned("rs", deploy, "web-1"))
    store.create(PODS, "default", owned("pod", rs, "web-1-a"))
    store.delete(DEPLOYMENTS, "default", "web")
    eventually(lambda: store.list(REPLICASETS, "default")[0] == [] and store.list(PODS, "default")[0] == [])

    deploy = store.create(DEPLOYMENTS, "default", deployment())
    rs = store.create(REPLICASETS, "default", owned("rs", deploy, "web-2"))
    store.create(PODS, "default", owned("pod", rs, "web-2-a"))
    marked = store.delete(REPLICASETS, "default", "web-2", propagation_policy="Orphan")
    assert marked["metadata"]["finalizers"] == ["orphan"] and marked["metadata"]["deletionTimestamp"]
    eventually(lambda: store.list(REPLICASETS, "default")[0] == [])
    (pod,), _ = store.list(PODS, "default")
    assert "ownerReferences" not in pod["metadata"]
    with pytest.raises(errors.BadRequest):
        store.delete(DEPLOYMENTS, "default", "web", propagation_policy="Sideways")
    with pytest.raises(errors.Conflict):
        store.delete(DEPLOYMENTS, "default", "web", preconditions={"uid": "not-its-uid"})


def test_finalizers_hold_deletion_until_removed(store: MemoryStore) -> None:
    store.create(PODS, "default", {"metadata": {"name": "p", "finalizers": ["sandbox/process"]},
                                   "spec": {"containers": [{"name": "c", "image": "i:1"}]}})
    marked = store.delete(PODS, "default", "p")
    assert marked["metadata"]["deletionTimestamp"] and marked["metadata"]["deletionGracePeriodSeconds"] == 30
    assert store.delete(PODS, "default", "p")["metadata"] == marked["metadata"], "a second delete waits too"
    store.patch(PODS, "default", "p", {"metadata": {"finalizers": None}}, "merge")
    with pytest.raises(errors.NotFound):
        store.get(PODS, "default", "p")


def test_subscribers_see_every_write_in_order_even_their_own(store: MemoryStore) -> None:
    seen: list[tuple[str, str]] = []

    def on_event(event) -> None:  # type: ignore[no-untyped-def]
        seen.append((event.type, event.object["metadata"]["name"]))
        if event.object["metadata"]["name"] == "a" and event.type == "ADDED":
            store.create(CONFIGMAPS, "default", {"metadata": {"name": "b"}})

    unsubscribe = store.subscribe(on_event)
    store.create(CONFIGMAPS, "default", {"metadata": {"name": "a"}})
    store.delete(CONFIGMAPS, "default", "a")
    unsubscribe()
    store.delete(CONFIGMAPS, "default", "b")
    assert seen == [("ADDED", "a"), ("ADDED", "b"), ("DELETED", "a")]


def test_a_kind_may_orphan_by_default(collected_store: MemoryStore) -> None:
    """As batch/v1 Jobs do: a DELETE that names no propagationPolicy orphans their pods."""
    store = collected_store
    kind = ResourceType("example.com", "v1", "batches", "Batch")
    store.registry.register(ResourceInfo(kind, default_propagation="Orphan"))
    owner = store.create(kind, "default", {"metadata": {"name": "b"}, "spec": {}})
    store.create(CONFIGMAPS, "default", {"metadata": {"name": "out", "ownerReferences": [
        {"apiVersion": "example.com/v1", "kind": "Batch", "name": "b", "uid": owner["metadata"]["uid"]}]}})
    assert store.delete(kind, "default", "b")["metadata"]["finalizers"] == ["orphan"]
    eventually(lambda: not store.list(kind, "default")[0])
    (kept,), _ = store.list(CONFIGMAPS, "default", field_selector="metadata.name=out")
    assert "ownerReferences" not in kept["metadata"]
