"""The ReplicaSet controller: keeps spec.replicas pods per ReplicaSet and reports their state.

As pkg/controller/replicaset: pods are created from the template with generateName
``<rs>-`` (the store adds 5 random characters) and a controller ownerReference; surplus pods
are deleted least valuable first (unscheduled, pending, not ready, ready for less time, more
restarts, newer); status counts active pods (terminating and finished ones excluded).
Orphan pods matching the selector are not adopted.
"""
from __future__ import annotations

from datetime import datetime
from typing import Hashable

from ..api import Store, StoreEvent
from ..errors import NotFound
from ..resources import PODS, REPLICASETS
from ..selectors import from_label_selector_object, labels_match
from .events import EventRecorder
from .meta import (Obj, clone_obj, controller_of, controller_ref, is_controlled_by, is_pod_active,
                   is_pod_available, is_pod_ready, is_terminating, name_of, parse_time, pod_phase,
                   ready_since,
                   restart_count, uid_of, utcnow)
from .queue import WorkQueue
from .rollout import rs_replicas

Key = tuple[str, str]
# Upstream creates at most this many pods per sync (BurstReplicas).
BURST_REPLICAS = 500
_PHASE_ORDER = {"Pending": 0, "Unknown": 1, "Running": 2}


def deletion_order(pod: Obj) -> tuple:
    """Sort key putting the pods to delete first (controller.ActivePods ordering)."""
    ready_at = ready_since(pod)
    return (
        bool(pod.get("spec", {}).get("nodeName")),  # unscheduled first
        _PHASE_ORDER.get(pod_phase(pod), 0),  # pending < unknown < running
        is_pod_ready(pod),  # not ready first
        # ready for a shorter time first (a later transition sorts first)
        -(ready_at.timestamp() if ready_at else 0.0),
        -restart_count(pod),  # more restarts first
        -_created(pod),  # newer first
    )


def _created(pod: Obj) -> float:
    created = parse_time(pod["metadata"].get("creationTimestamp"))
    return created.timestamp() if created else 0.0


def pod_from_template(rs: Obj) -> Obj:
    template = rs["spec"].get("template") or {}
    meta = template.get("metadata") or {}
    pod_meta: Obj = {
        "generateName": f"{name_of(rs)}-",
        "namespace": rs["metadata"].get("namespace"),
        "labels": dict(meta.get("labels") or {}),
        "ownerReferences": [controller_ref(rs)],
    }
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta,
            "spec": clone_obj(template.get("spec") or {})}


def replicaset_status(rs: Obj, pods: list[Obj], now: datetime) -> Obj:
    """Counts over the active pods the ReplicaSet owns; zero counts omitted except replicas."""
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    template_labels = ((rs["spec"].get("template") or {}).get("metadata") or {}).get("labels") or {}
    status: Obj = {"replicas": len(pods)}
    counts = {
        "fullyLabeledReplicas": sum(1 for p in pods if _has_labels(p, template_labels)),
        "readyReplicas": sum(1 for p in pods if is_pod_ready(p)),
        "availableReplicas": sum(1 for p in pods if is_pod_available(p, min_ready, now)),
        "observedGeneration": rs["metadata"].get("generation", 0),
    }
    status.update({k: v for k, v in counts.items() if v})
    conditions = (rs.get("status") or {}).get("conditions")
    if conditions:
        status["conditions"] = conditions
    return status


def _has_labels(pod: Obj, labels: dict[str, str]) -> bool:
    pod_labels = pod["metadata"].get("labels") or {}
    return all(pod_labels.get(k) == v for k, v in labels.items())


def next_availability_check(rs: Obj, pods: list[Obj], now: datetime) -> float | None:
    """Seconds until a ready pod becomes available under minReadySeconds, if any will."""
    min_ready = int(rs["spec"].get("minReadySeconds") or 0)
    waits = []
    for pod in pods:
        since = ready_since(pod)
        if min_ready and since is not None and not is_pod_available(pod, min_ready, now):
            waits.append(min_ready - (now - since).total_seconds())
    return max(0.05, min(waits) + 0.05) if waits else None


class ReplicaSetController:
    name = "replicaset-controller"

    def __init__(self, store: Store, queue: WorkQueue) -> None:
        self.store = store
        self.queue = queue
        self.events = EventRecorder(store, self.name)

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        rt, obj = event.resource, event.object
        if rt == REPLICASETS:
            return [(obj["metadata"].get("namespace"), name_of(obj))]
        if rt == PODS:
            ref = controller_of(obj)
            if ref and ref.get("kind") == "ReplicaSet":
                return [(obj["metadata"].get("namespace"), ref["name"])]
        return []

    def all_keys(self) -> list[Hashable]:
        items, _ = self.store.list(REPLICASETS)
        return [(rs["metadata"].get("namespace"), name_of(rs)) for rs in items]

    def sync(self, key: Hashable) -> None:
        namespace, name = key  # type: ignore[misc]
        try:
            rs = self.store.get(REPLICASETS, namespace, name)
        except NotFound:
            return  # its pods are the garbage collector's
        owned = [p for p in self.store.list(PODS, namespace)[0] if is_controlled_by(p, uid_of(rs))]
        pods = [p for p in owned if is_pod_active(p)]
        if not is_terminating(rs):
            pods = self._manage(rs, pods)
        now = utcnow()
        status = replicaset_status(rs, pods, now)
        if status != (rs.get("status") or {}):
            self.store.update_status(REPLICASETS, namespace, name, status)
        recheck = next_availability_check(rs, pods, now)
        if recheck is not None:
            self.queue.add_after(key, recheck)

    def _still_wanted(self, rs: Obj) -> bool:
        """The ReplicaSet this sync read still exists unchanged and is not being deleted.

        A pod created from a stale copy after its ReplicaSet went would be ownerless; the
        garbage collector removes such pods, but not creating them at all keeps pods (real
        processes in the sandbox) from starting only to be stopped.
        """
        try:
            now = self.store.get(REPLICASETS, rs["metadata"].get("namespace"), name_of(rs))
        except NotFound:
            return False
        return (uid_of(now) == uid_of(rs) and not is_terminating(now)
                and now["metadata"].get("generation") == rs["metadata"].get("generation"))

    def _manage(self, rs: Obj, pods: list[Obj]) -> list[Obj]:
        """Create or delete pods towards spec.replicas; returns the resulting active pods."""
        diff = len(pods) - rs_replicas(rs)
        namespace = rs["metadata"].get("namespace")
        if diff < 0:
            selector = from_label_selector_object(rs["spec"].get("selector"))
            for _ in range(min(-diff, BURST_REPLICAS)):
                if not self._still_wanted(rs):
                    return pods  # deleted or scaled meanwhile: this copy is stale
                pod = pod_from_template(rs)
                if not labels_match(selector, pod["metadata"]["labels"]):
                    return pods  # would be orphaned at once; validation should have refused it
                created = self.store.create(PODS, namespace, pod)
                self.events.event(rs, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")
                pods = pods + [created]
        elif diff > 0:
            doomed = sorted(pods, key=deletion_order)[:diff]
            for pod in doomed:
                try:
                    self.store.delete(PODS, namespace, name_of(pod))
                except NotFound:
                    pass
                self.events.event(rs, "Normal", "SuccessfulDelete", f"Deleted pod: {name_of(pod)}")
            gone = {name_of(p) for p in doomed}
            pods = [p for p in pods if name_of(p) not in gone]
        return pods
