"""Controller tests: the sandbox's Deployment, ReplicaSet and Endpoints controllers against the
real store (no HTTP), plus the pure planning functions they are built from.

Readiness is driven by a small test kubelet (pods get an IP at once and turn Ready unless the
test says their image is broken), as part 2's runtime will through Store.update_status.
Invariants are checked on the store's state rebuilt from its event stream, i.e. after every
single write, not at sampling times.
"""
from __future__ import annotations

import copy
import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterator

import pytest

from runbooks_sandbox.models.api import StoreEvent
from runbooks_sandbox.models.controllers import SandboxControllers, start_controllers
from runbooks_sandbox.models.controllers import progress, revisions, rollout
from runbooks_sandbox.models.controllers.meta import is_pod_ready
from runbooks_sandbox.models.resources import (DEPLOYMENTS, ENDPOINTS, EVENTS, PODS, REPLICASETS,
                                               SERVICES)
from runbooks_sandbox.models.store import MemoryStore, now_rfc3339

Obj = dict[str, Any]
NS = "default"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"


# --- pure functions ---------------------------------------------------------------------------

@pytest.mark.parametrize("value,total,up,expected", [
    ("25%", 3, True, 1), ("25%", 3, False, 0), ("50%", 5, True, 3), ("50%", 5, False, 2),
    (2, 10, True, 2), ("100%", 4, False, 4), ("0%", 4, True, 0), (None, 4, True, 0),
])
def test_scaled_value_rounds_surge_up_and_unavailable_down(value, total, up, expected) -> None:
    assert rollout.scaled_value(value, total, up) == expected


def test_fenceposts_never_both_zero() -> None:
    assert rollout.resolve_fenceposts("25%", "25%", 3) == (1, 0)  # ceil(0.75), floor(0.75)
    assert rollout.resolve_fenceposts("25%", "25%", 0) == (0, 1)
    assert rollout.resolve_fenceposts(0, "10%", 3) == (0, 1)
    assert rollout.resolve_fenceposts(1, 0, 3) == (1, 0)


def _rs(name: str, replicas: int, available: int = 0, created: str = "2024-01-01T00:00:00Z", **ann: str) -> Obj:
    annotations = {k.replace("_", "-"): v for k, v in ann.items()}
    return {"metadata": {"name": name, "creationTimestamp": created,
                         "annotations": {f"deployment.kubernetes.io/{k}": v for k, v in annotations.items()}},
            "spec": {"replicas": replicas}, "status": {"replicas": replicas, "availableReplicas": available}}


def _deploy(replicas: int, surge: Any, unavailable: Any) -> Obj:
    return {"metadata": {"name": "d", "generation": 1},
            "spec": {"replicas": replicas, "strategy": {"type": "RollingUpdate", "rollingUpdate": {
                "maxSurge": surge, "maxUnavailable": unavailable}}}}


def test_rolling_step_planner_respects_surge_and_unavailability() -> None:
    d = _deploy(3, 1, 0)
    old, new = _rs("old", 3, 3), _rs("new", 0, created="2024-01-01T00:00:05Z")
    assert rollout.new_rs_new_replicas(d, [old, new], new) == 1  # one surge pod
    new = _rs("new", 1, 0, created="2024-01-01T00:00:05Z")
    assert rollout.new_rs_new_replicas(d, [old, new], new) == 1  # at the surge limit
    assert rollout.max_old_scale_down(d, [old, new], new) == 0  # new pod not available yet
    new = _rs("new", 1, 1, created="2024-01-01T00:00:05Z")
    assert rollout.max_old_scale_down(d, [old, new], new) == 1
    assert rollout.plan_old_scale_down(d, [old, new], [old]) == {"old": 2}
    # Unavailable old pods go first and cost no availability.
    sick_old = _rs("old", 3, 1)
    assert rollout.plan_unhealthy_cleanup([sick_old], 5) == {"old": 1}


def test_proportional_scaling_matches_the_documented_example() -> None:
    # kubernetes.io docs: 10 replicas, maxSurge 3, maxUnavailable 2, stuck rollout at old 8 /
    # new 5, scaled to 15: 3 more go to the old ReplicaSet and 2 to the new one.
    d = _deploy(15, 3, 2)
    old = _rs("old", 8, 8, desired_replicas="10", max_replicas="13")
    new = _rs("new", 5, 0, created="2024-01-01T00:01:00Z", desired_replicas="10", max_replicas="13")
    assert rollout.scaling_event(d, [old, new])
    assert rollout.plan_proportional_scale(d, new, [old]) == {"old": 11, "new": 7}


def test_template_hash_and_equality_ignore_wire_noise() -> None:
    template = {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "web", "image": "nginx:1"}]}}
    # What kubectl rollout undo sends back after a round trip through Go structs.
    round_trip = {"metadata": {"labels": {"app": "web", "pod-template-hash": "abc"}, "creationTimestamp": None},
                  "spec": {"containers": [{"name": "web", "image": "nginx:1", "resources": {}}],
                           "hostNetwork": False}}
    assert revisions.equal_ignore_hash(template, round_trip)
    assert revisions.pod_template_hash(template) == revisions.pod_template_hash(round_trip)
    changed = {"metadata": template["metadata"], "spec": {"containers": [{"name": "web", "image": "nginx:2"}]}}
    assert not revisions.equal_ignore_hash(template, changed)
    assert revisions.pod_template_hash(template) != revisions.pod_template_hash(template, 1)
    assert set(revisions.pod_template_hash(template)) <= set("bcdfghjklmnpqrstvwxz2456789")


def test_rollback_revision_bookkeeping() -> None:
    deployment = {"metadata": {"annotations": {"kubernetes.io/change-cause": "undo",
                                               revisions.LAST_APPLIED: "{}", revisions.REVISION: "2"}}}
    rs = {"metadata": {"annotations": {revisions.REVISION: "1"}}}
    assert revisions.set_new_rs_annotations(deployment, rs, 3, True, 3, 4)
    assert rs["metadata"]["annotations"] == {revisions.REVISION: "3", revisions.REVISION_HISTORY: "1",
                                             "kubernetes.io/change-cause": "undo"}
    assert revisions.set_new_rs_annotations(deployment, rs, 5, True, 3, 4)
    assert rs["metadata"]["annotations"][revisions.REVISION_HISTORY] == "1,3"
    assert not revisions.set_new_rs_annotations(deployment, rs, 4, True, 3, 4)  # never goes down


def test_progressing_condition_times_out_after_deadline() -> None:
    now = datetime(2024, 1, 1, tzinfo=timezone.utc)
    d = {"metadata": {"name": "d", "generation": 2},
         "spec": {"replicas": 1, "progressDeadlineSeconds": 10},
         "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 1, "availableReplicas": 1,
                    "conditions": [progress.new_condition("Progressing", "True", "ReplicaSetUpdated", "x", now)]}}
    old, new = _rs("old", 1, 1), _rs("new", 1, 0)
    early = progress.rollout_status([old, new], new, d, now + timedelta(seconds=5))
    assert progress.get_condition(early, "Progressing")["reason"] == "ReplicaSetUpdated"
    late = progress.rollout_status([old, new], new, d, now + timedelta(seconds=11))
    condition = progress.get_condition(late, "Progressing")
    assert (condition["status"], condition["reason"]) == ("False", "ProgressDeadlineExceeded")
    assert condition["message"] == 'ReplicaSet "new" has timed out progressing.'


# --- the controllers against the store --------------------------------------------------------

class Kubelet:
    """Gives new pods an IP and Running at once, and Ready after ready_after seconds unless
    broken(pod); reconciles readiness when broken's answer changes."""

    def __init__(self, store: MemoryStore, ready_after: float = 0.02) -> None:
        self.store = store
        self.ready_after = ready_after
        self.broken: Callable[[Obj], bool] = lambda pod: False
        self._ips = iter(f"127.250.{i // 250}.{i % 250 + 1}" for i in range(60000))
        self._stop = threading.Event()
        self._seen: dict[str, float] = {}
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for pod in self.store.list(PODS)[0]:
                try:
                    self._reconcile(pod)
                except Exception:  # deleted meanwhile
                    pass

    def _reconcile(self, pod: Obj) -> None:
        meta, status = pod["metadata"], pod.get("status") or {}
        if meta.get("deletionTimestamp"):
            return
        first_seen = self._seen.setdefault(meta["uid"], time.monotonic())
        ready = not self.broken(pod) and time.monotonic() - first_seen >= self.ready_after
        if status.get("podIP") and is_pod_ready(pod) == ready:
            return
        ip = status.get("podIP") or next(self._ips)
        stamp = now_rfc3339()
        self.store.update_status(PODS, meta["namespace"], meta["name"], {
            "phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "startTime": stamp,
            "conditions": [{"type": "Ready", "status": "True" if ready else "False",
                            "lastProbeTime": None, "lastTransitionTime": stamp}],
        })

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


class Replay:
    """The store's objects rebuilt from its events, with a check run after every event."""

    def __init__(self, store: MemoryStore) -> None:
        self.objects: dict[tuple[str, str], Obj] = {}
        self.checks: list[Callable[[Replay, StoreEvent], None]] = []
        self.failures: list[str] = []
        self._unsubscribe = store.subscribe(self._on_event)

    def _on_event(self, event: StoreEvent) -> None:
        key = (event.resource.plural, event.object["metadata"]["name"])
        if event.type == "DELETED":
            self.objects.pop(key, None)
        else:
            self.objects[key] = event.object
        for check in self.checks:
            try:
                check(self, event)
            except AssertionError as failure:  # never raise into the store's writer
                self.failures.append(f"after {event.type} {key} rv={event.resource_version}: {failure}")

    def of(self, plural: str) -> list[Obj]:
        return [o for (p, _), o in self.objects.items() if p == plural]

    def close(self) -> None:
        self._unsubscribe()


@pytest.fixture
def cluster() -> Iterator[tuple[MemoryStore, SandboxControllers, Kubelet]]:
    store = MemoryStore(event_history=5000)
    kubelet = Kubelet(store)
    controllers = start_controllers(store, resync_s=0.5)
    yield store, controllers, kubelet
    controllers.stop()
    kubelet.stop()
    store.close()


def web_deployment(replicas: int = 3, image: str = "web:1", **spec: Any) -> Obj:
    return {"metadata": {"name": "web", "annotations": {"kubernetes.io/change-cause": f"deploy {image}"}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": image,
                                                           "ports": [{"name": "http", "containerPort": 8080}]}]}},
                     **spec}}


def set_image(store: MemoryStore, image: str, cause: str | None = None) -> None:
    """What `kubectl set image` sends (plus the change-cause a runbook records)."""
    patch: Obj = {"spec": {"template": {"spec": {"containers": [{"name": "web", "image": image}]}}}}
    patch["metadata"] = {"annotations": {"kubernetes.io/change-cause": cause or f"set image {image}"}}
    store.patch(DEPLOYMENTS, NS, "web", patch, STRATEGIC)


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = predicate()
        if result:
            return result
        time.sleep(0.01)
    raise AssertionError(f"timed out waiting for {what}")


def kubectl_rollout_status(d: Obj) -> tuple[str, bool]:
    """kubectl's DeploymentStatusViewer (polymorphichelpers/rollout_status.go), ported."""
    name, status = d["metadata"]["name"], d.get("status") or {}
    count = lambda field: int(status.get(field) or 0)  # noqa: E731
    if d["metadata"].get("generation", 0) > count("observedGeneration"):
        return "Waiting for deployment spec update to be observed...", False
    condition = progress.get_condition(status, "Progressing")
    if condition and condition.get("reason") == "ProgressDeadlineExceeded":
        raise RuntimeError(f'deployment "{name}" exceeded its progress deadline')
    replicas = d["spec"].get("replicas")
    if replicas is not None and count("updatedReplicas") < replicas:
        return f"{count('updatedReplicas')} out of {replicas} new replicas have been updated", False
    if count("replicas") > count("updatedReplicas"):
        return f"{count('replicas') - count('updatedReplicas')} old replicas are pending termination", False
    if count("availableReplicas") < count("updatedReplicas"):
        return f"{count('availableReplicas')} of {count('updatedReplicas')} updated replicas are available", False
    return f'deployment "{name}" successfully rolled out', True


def rolled_out(store: MemoryStore) -> bool:
    return kubectl_rollout_status(store.get(DEPLOYMENTS, NS, "web"))[1]


def replica_sets(store: MemoryStore) -> dict[str, Obj]:
    """The deployment's ReplicaSets by image."""
    return {rs["spec"]["template"]["spec"]["containers"][0]["image"]: rs for rs in store.list(REPLICASETS, NS)[0]}


def revision_of(rs: Obj) -> tuple[str | None, str | None]:
    annotations = rs["metadata"].get("annotations") or {}
    return annotations.get(revisions.REVISION), annotations.get(revisions.REVISION_HISTORY)


def test_rolling_update_with_max_unavailable_zero_never_drops_ready_replicas(cluster) -> None:
    store, _, _ = cluster
    replay = Replay(store)
    store.create(DEPLOYMENTS, NS, web_deployment(strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}}))
    wait_for(lambda: rolled_out(store), what="first rollout")
    armed = threading.Event()

    def ready_pods_never_below_spec(state: Replay, event: StoreEvent) -> None:
        if not armed.is_set():
            return
        ready = [p for p in state.of("pods") if is_pod_ready(p) and not p["metadata"].get("deletionTimestamp")]
        assert len(ready) >= 3, f"only {len(ready)} ready pods"
        planned = sum(rs["spec"]["replicas"] for rs in state.of("replicasets"))
        assert planned <= 4, f"{planned} replicas planned, more than replicas + maxSurge"

    stages: list[str] = []

    def status_is_what_kubectl_expects(state: Replay, event: StoreEvent) -> None:
        if event.resource != DEPLOYMENTS:
            return
        message, done = kubectl_rollout_status(event.object)
        if not stages or stages[-1] != message:
            stages.append(message)
        if done and armed.is_set():
            pods = [p for p in state.of("pods") if not p["metadata"].get("deletionTimestamp")]
            images = {p["spec"]["containers"][0]["image"] for p in pods}
            assert images == {"web:2"} and len(pods) == 3 and all(map(is_pod_ready, pods)), \
                f"kubectl would say done with pods {images} x{len(pods)}"

    replay.checks += [ready_pods_never_below_spec, status_is_what_kubectl_expects]
    armed.set()
    set_image(store, "web:2")
    wait_for(lambda: rolled_out(store) and store.get(DEPLOYMENTS, NS, "web")["metadata"]["generation"] == 2,
             what="second rollout")
    replay.close()
    assert not replay.failures, replay.failures[:5]
    # The stages kubectl prints, in order (intermediate ones may be skipped between events).
    waiting = [s for s in stages if "new replicas have been updated" in s]
    assert waiting and "old replicas are pending termination" in " ".join(stages)
    assert stages[-1] == 'deployment "web" successfully rolled out'
    d = store.get(DEPLOYMENTS, NS, "web")
    status = d["status"]
    assert (status["observedGeneration"], status["replicas"], status["updatedReplicas"],
            status["readyReplicas"], status["availableReplicas"]) == (2, 3, 3, 3, 3)
    assert "unavailableReplicas" not in status
    conditions = {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}
    assert conditions == {"Available": ("True", "MinimumReplicasAvailable"),
                          "Progressing": ("True", "NewReplicaSetAvailable")}
    rss = replica_sets(store)
    assert rss["web:1"]["spec"]["replicas"] == 0 and rss["web:2"]["spec"]["replicas"] == 3
    scaling = [e["message"] for e in store.list(EVENTS, NS)[0] if e["reason"] == "ScalingReplicaSet"]
    new_name = rss["web:2"]["metadata"]["name"]
    assert f"Scaled up replica set {new_name} from 0 to 1" in scaling
    assert f"Scaled down replica set {rss['web:1']['metadata']['name']} from 1 to 0" in scaling


def test_replica_sets_are_named_owned_and_labelled_like_a_cluster(cluster) -> None:
    store, _, _ = cluster
    d = store.create(DEPLOYMENTS, NS, web_deployment())
    wait_for(lambda: rolled_out(store), what="rollout")
    [rs] = store.list(REPLICASETS, NS)[0]
    pod_hash = rs["metadata"]["labels"]["pod-template-hash"]
    assert rs["metadata"]["name"] == f"web-{pod_hash}"
    assert rs["metadata"]["ownerReferences"] == [{"apiVersion": "apps/v1", "kind": "Deployment", "name": "web",
                                                  "uid": d["metadata"]["uid"], "controller": True,
                                                  "blockOwnerDeletion": True}]
    assert rs["spec"]["selector"]["matchLabels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["spec"]["template"]["metadata"]["labels"] == {"app": "web", "pod-template-hash": pod_hash}
    assert rs["metadata"]["annotations"] == {
        "kubernetes.io/change-cause": "deploy web:1", revisions.REVISION: "1",
        revisions.DESIRED_REPLICAS: "3", revisions.MAX_REPLICAS: "4"}
    pods = store.list(PODS, NS)[0]
    assert len(pods) == 3
    for pod in pods:
        assert pod["metadata"]["name"].startswith(f"web-{pod_hash}-") and len(pod["metadata"]["name"]) == len(rs["metadata"]["name"]) + 6
        assert pod["metadata"]["ownerReferences"][0]["uid"] == rs["metadata"]["uid"]
    assert rs["status"] == {"replicas": 3, "fullyLabeledReplicas": 3, "readyReplicas": 3,
                            "availableReplicas": 3, "observedGeneration": 1}


def kubectl_undo(store: MemoryStore, to_revision: int = 0) -> None:
    """What `kubectl rollout undo` does, client side (kubectl/pkg/polymorphichelpers/rollback.go):
    pick the ReplicaSet of the previous (or given) revision, patch its template and annotations
    back into the deployment with a JSON patch."""
    d = store.get(DEPLOYMENTS, NS, "web")
    owned = [rs for rs in store.list(REPLICASETS, NS)[0]
             if rs["metadata"]["ownerReferences"][0]["uid"] == d["metadata"]["uid"]]
    by_revision = {revisions.revision(rs): rs for rs in owned}
    if to_revision:
        if to_revision not in by_revision:
            raise LookupError(f"unable to find specified revision {to_revision} in history")
        target = by_revision[to_revision]
    else:
        ordered = sorted(by_revision)
        target = by_revision[ordered[-2]]
    template = copy.deepcopy(target["spec"]["template"])
    template["metadata"]["labels"].pop("pod-template-hash")
    annotations = {k: v for k, v in (d["metadata"].get("annotations") or {}).items()
                   if k in revisions.ANNOTATIONS_TO_SKIP}
    annotations.update({k: v for k, v in target["metadata"]["annotations"].items()
                        if k not in revisions.ANNOTATIONS_TO_SKIP})
    store.patch(DEPLOYMENTS, NS, "web", [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ], JSON_PATCH)


def wait_revision(store: MemoryStore, revision: str) -> None:
    wait_for(lambda: rolled_out(store) and
             store.get(DEPLOYMENTS, NS, "web")["metadata"]["annotations"].get(revisions.REVISION) == revision,
             what=f"deployment revision {revision}")


def test_revisions_after_set_image_undo_undo_match_a_cluster(cluster) -> None:
    store, _, _ = cluster
    store.create(DEPLOYMENTS, NS, web_deployment())
    wait_revision(store, "1")
    set_image(store, "web:2")
    wait_revision(store, "2")
    rss = replica_sets(store)
    assert (revision_of(rss["web:1"]), revision_of(rss["web:2"])) == (("1", None), ("2", None))

    kubectl_undo(store)  # back to web:1: its ReplicaSet is reused and becomes revision 3
    wait_revision(store, "3")
    rss = replica_sets(store)
    assert len(rss) == 2
    assert revision_of(rss["web:1"]) == ("3", "1") and revision_of(rss["web:2"]) == ("2", None)
    d = store.get(DEPLOYMENTS, NS, "web")
    assert d["metadata"]["annotations"]["kubernetes.io/change-cause"] == "deploy web:1"
    assert d["spec"]["template"]["spec"]["containers"][0]["image"] == "web:1"
    assert rss["web:1"]["spec"]["replicas"] == 3 and rss["web:2"]["spec"]["replicas"] == 0

    kubectl_undo(store)  # the previous revision is now 2 (web:2), which becomes 4
    wait_revision(store, "4")
    rss = replica_sets(store)
    assert revision_of(rss["web:1"]) == ("3", "1") and revision_of(rss["web:2"]) == ("4", "2")
    # Revision 1 was reused: kubectl rollout undo --to-revision=1 finds nothing.
    with pytest.raises(LookupError, match="unable to find specified revision 1 in history"):
        kubectl_undo(store, to_revision=1)
    kubectl_undo(store, to_revision=3)
    wait_revision(store, "5")
    assert revision_of(replica_sets(store)["web:1"]) == ("5", "1,3")


def test_paused_deployment_is_scaled_but_not_rolled(cluster) -> None:
    store, controllers, _ = cluster
    store.create(DEPLOYMENTS, NS, web_deployment())
    wait_for(lambda: rolled_out(store), what="rollout")
    store.patch(DEPLOYMENTS, NS, "web", {"spec": {"paused": True}}, STRATEGIC)
    set_image(store, "web:2")
    store.patch(DEPLOYMENTS, NS, "web", {"spec": {"replicas": 4}}, STRATEGIC)
    wait_for(lambda: store.get(DEPLOYMENTS, NS, "web")["status"].get("readyReplicas") == 4, what="scale while paused")
    assert controllers.wait_idle()
    d = store.get(DEPLOYMENTS, NS, "web")
    assert list(replica_sets(store)) == ["web:1"]  # no new ReplicaSet while paused
    assert d["status"]["observedGeneration"] == d["metadata"]["generation"]
    assert "updatedReplicas" not in d["status"]  # the template in force has no ReplicaSet yet
    assert kubectl_rollout_status(d) == ("0 out of 4 new replicas have been updated", False)
    condition = progress.get_condition(d["status"], "Progressing")
    assert (condition["status"], condition["reason"]) == ("Unknown", "DeploymentPaused")

    store.patch(DEPLOYMENTS, NS, "web", {"spec": {"paused": None}}, STRATEGIC)
    wait_for(lambda: rolled_out(store) and "web:2" in replica_sets(store), what="rollout after resume")
    rss = replica_sets(store)
    assert rss["web:2"]["spec"]["replicas"] == 4 and rss["web:1"]["spec"]["replicas"] == 0
    condition = progress.get_condition(store.get(DEPLOYMENTS, NS, "web")["status"], "Progressing")
    assert condition["reason"] == "NewReplicaSetAvailable"


def test_progress_deadline_exceeded_when_new_pods_never_become_ready(cluster) -> None:
    store, _, kubelet = cluster
    kubelet.broken = lambda pod: pod["spec"]["containers"][0]["image"] == "web:broken"
    store.create(DEPLOYMENTS, NS, web_deployment(progressDeadlineSeconds=2))
    wait_for(lambda: rolled_out(store), what="rollout")
    set_image(store, "web:broken")
    started = time.monotonic()

    def timed_out() -> bool:
        try:
            kubectl_rollout_status(store.get(DEPLOYMENTS, NS, "web"))
        except RuntimeError:
            return True
        return False

    wait_for(timed_out, timeout=6, what="ProgressDeadlineExceeded")
    # Condition times have second precision (as on the wire), so the 2 s deadline counts
    # from a truncated lastUpdateTime: it passes 1 to 2 s after the rollout started.
    assert 1 <= time.monotonic() - started < 4
    status = store.get(DEPLOYMENTS, NS, "web")["status"]
    condition = progress.get_condition(status, "Progressing")
    assert condition["status"] == "False"
    assert condition["message"].endswith("has timed out progressing.")
    # Default 25%/25% on 3 replicas: one surge pod, none taken down (floor(0.75) = 0), so
    # the old pods keep serving.
    rss = replica_sets(store)
    assert rss["web:1"]["status"]["readyReplicas"] == 3 and rss["web:broken"]["spec"]["replicas"] == 1
    assert progress.get_condition(status, "Available")["status"] == "True"


def test_revision_history_limit_collects_old_replica_sets(cluster) -> None:
    store, controllers, _ = cluster
    store.create(DEPLOYMENTS, NS, web_deployment(replicas=1, revisionHistoryLimit=2))
    for version in range(2, 6):
        wait_for(lambda: rolled_out(store), what="rollout")
        set_image(store, f"web:{version}")
        wait_revision(store, str(version))
    wait_for(lambda: len(replica_sets(store)) == 3, what="garbage collection")
    assert controllers.wait_idle()
    rss = replica_sets(store)
    assert sorted(rss) == ["web:3", "web:4", "web:5"]
    assert [revision_of(rss[i])[0] for i in sorted(rss)] == ["3", "4", "5"]


def test_recreate_never_runs_old_and_new_pods_together(cluster) -> None:
    store, _, _ = cluster
    replay = Replay(store)
    store.create(DEPLOYMENTS, NS, web_deployment(strategy={"type": "Recreate"}))
    wait_for(lambda: rolled_out(store), what="rollout")

    def one_version_at_a_time(state: Replay, event: StoreEvent) -> None:
        images = {p["spec"]["containers"][0]["image"] for p in state.of("pods")}
        assert len(images) <= 1, f"pods of {images} at once"

    replay.checks.append(one_version_at_a_time)
    set_image(store, "web:2")
    wait_for(lambda: rolled_out(store) and "web:2" in replica_sets(store), what="recreate rollout")
    replay.close()
    assert not replay.failures, replay.failures[:3]
    assert replica_sets(store)["web:2"]["status"]["readyReplicas"] == 3


def test_scaling_mid_rollout_is_proportional(cluster) -> None:
    store, controllers, kubelet = cluster
    kubelet.broken = lambda pod: pod["spec"]["containers"][0]["image"] == "web:broken"
    store.create(DEPLOYMENTS, NS, web_deployment(replicas=10, strategy={
        "type": "RollingUpdate", "rollingUpdate": {"maxSurge": 3, "maxUnavailable": 2}}))
    wait_for(lambda: rolled_out(store), what="rollout")
    set_image(store, "web:broken")
    wait_for(lambda: "web:broken" in replica_sets(store) and replica_sets(store)["web:broken"]["spec"]["replicas"] == 5
             and replica_sets(store)["web:1"]["spec"]["replicas"] == 8, what="stuck rollout at 8 + 5")
    store.patch(DEPLOYMENTS, NS, "web", {"spec": {"replicas": 15}}, STRATEGIC)
    wait_for(lambda: replica_sets(store)["web:1"]["spec"]["replicas"] == 11, what="proportional scale")
    assert controllers.wait_idle()
    assert replica_sets(store)["web:broken"]["spec"]["replicas"] == 7


def test_endpoints_follow_pod_readiness(cluster) -> None:
    store, _, kubelet = cluster
    store.create(SERVICES, NS, {"metadata": {"name": "web", "labels": {"app": "web"}},
                                "spec": {"selector": {"app": "web"},
                                         "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    store.create(DEPLOYMENTS, NS, web_deployment(replicas=2))
    wait_for(lambda: rolled_out(store), what="rollout")

    def addresses() -> tuple[set[str], set[str], list[Obj]]:
        subsets = store.get(ENDPOINTS, NS, "web").get("subsets") or []
        ready = {a["targetRef"]["name"] for s in subsets for a in s.get("addresses", [])}
        unready = {a["targetRef"]["name"] for s in subsets for a in s.get("notReadyAddresses", [])}
        return ready, unready, [p for s in subsets for p in s["ports"]]

    pods = {p["metadata"]["name"]: p for p in store.list(PODS, NS)[0]}
    wait_for(lambda: addresses()[0] == set(pods), what="ready addresses")
    assert addresses()[2] == [{"name": "http", "port": 8080, "protocol": "TCP"}]
    endpoints = store.get(ENDPOINTS, NS, "web")
    assert endpoints["metadata"]["labels"] == {"app": "web"}
    address = endpoints["subsets"][0]["addresses"][0]
    assert address["ip"] == pods[address["targetRef"]["name"]]["status"]["podIP"]

    sick = sorted(pods)[0]
    kubelet.broken = lambda pod: pod["metadata"]["name"] == sick
    wait_for(lambda: addresses()[:2] == (set(pods) - {sick}, {sick}), what="not-ready address")
    store.patch(SERVICES, NS, "web", {"spec": {"selector": {"app": "nothing"}}}, STRATEGIC)
    wait_for(lambda: "subsets" not in store.get(ENDPOINTS, NS, "web"), what="no endpoints")
    store.delete(SERVICES, NS, "web")
    wait_for(lambda: not store.list(ENDPOINTS, NS)[0], what="endpoints deleted with the service")


def test_terminating_pods_are_not_counted_and_get_replaced(cluster) -> None:
    store, controllers, _ = cluster
    store.create(SERVICES, NS, {"metadata": {"name": "web"},
                                "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}})
    store.create(DEPLOYMENTS, NS, web_deployment(replicas=2))
    wait_for(lambda: rolled_out(store), what="rollout")
    victim = sorted(p["metadata"]["name"] for p in store.list(PODS, NS)[0])[0]
    # A finalizer keeps the deleted pod around, terminating (as a graceful shutdown does).
    store.patch(PODS, NS, victim, {"metadata": {"finalizers": ["sandbox/test"]}}, STRATEGIC)
    store.delete(PODS, NS, victim)
    wait_for(lambda: rolled_out(store) and len(store.list(PODS, NS)[0]) == 3, what="replacement pod")
    assert controllers.wait_idle()
    [rs] = store.list(REPLICASETS, NS)[0]
    assert (rs["status"]["replicas"], rs["status"]["availableReplicas"]) == (2, 2)
    subsets = store.get(ENDPOINTS, NS, "web")["subsets"]
    names = {a["targetRef"]["name"] for s in subsets for a in s.get("addresses", []) + s.get("notReadyAddresses", [])}
    assert victim not in names and len(names) == 2
    store.patch(PODS, NS, victim, {"metadata": {"finalizers": None}}, "application/merge-patch+json")
