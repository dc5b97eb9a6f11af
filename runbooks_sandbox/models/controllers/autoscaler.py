"""The HorizontalPodAutoscaler controller: keeps each HPA's target within minReplicas..maxReplicas.

What a real cluster does (pkg/controller/podautoscaler, reconcileAutoscaler): the API server
accepts any manual scale of a Deployment (``kubectl scale``, a patch of spec.replicas, the
/scale subresource); the HPA controller then, on its next sync (every 15 s by default), reads
the target's /scale and, before looking at any metric,

- leaves it alone when it is 0 (scaling to zero by hand switches autoscaling off),
- sets it to maxReplicas when above ("Current number of replicas above Spec.MaxReplicas"),
- sets it to minReplicas when below ("Current number of replicas below Spec.MinReplicas"),
- otherwise computes a size from the metrics API.

The sandbox does the same clamping, but at once when the target or the HPA changes (not up
to 15 s later), so a manual scale settles where a cluster's would within one sync period.
There is no metrics API here (no metrics-server): within range the size is left as it is and
the HPA reports ``ScalingActive=False`` (FailedGetResourceMetric), as a cluster without
metrics-server does. The incident runbook's ``scale`` mitigation reads min/max from the HPA,
so what it asks for is what the cluster keeps.
"""
from __future__ import annotations

import threading
from typing import Hashable

from ..api import ResourceType, Store, StoreEvent
from ..errors import NotFound
from ..resources import HORIZONTALPODAUTOSCALERS
from .events import EventRecorder
from .meta import Obj, name_of, rfc3339, utcnow
from .queue import WorkQueue

__all__ = ["HorizontalPodAutoscalerController", "clamp"]

MERGE = "application/merge-patch+json"
Key = tuple[str, str]


def clamp(current: int, low: int, high: int) -> tuple[int, str]:
    """(desired replicas, reason) as reconcileAutoscaler decides before reading any metric."""
    if current == 0 and low != 0:
        return 0, "ScalingDisabled"
    if current > high:
        return high, "Current number of replicas above Spec.MaxReplicas"
    if current < low:
        return low, "Current number of replicas below Spec.MinReplicas"
    return current, ""


class HorizontalPodAutoscalerController:
    name = "horizontal-pod-autoscaler"

    def __init__(self, store: Store, queue: WorkQueue) -> None:
        self.store = store
        self.queue = queue
        self.registry = getattr(store, "registry", None)
        self.events = EventRecorder(store, self.name)
        self._lock = threading.Lock()
        self._by_target: dict[tuple[str, str, str], set[str]] = {}  # (ns, kind, name) -> HPA names
        self._targets: dict[Key, tuple[str, str, str]] = {}  # HPA -> its target

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        obj, meta = event.object, event.object["metadata"]
        namespace = meta.get("namespace") or ""
        if event.resource == HORIZONTALPODAUTOSCALERS:
            key = (namespace, name_of(obj))
            with self._lock:
                self._index(key, None if event.type == "DELETED" else obj)
            return [key] if event.type != "DELETED" else []
        with self._lock:
            hpas = self._by_target.get((namespace, event.resource.kind, name_of(obj)), set())
            return [(namespace, hpa) for hpa in hpas]

    def _index(self, key: Key, hpa: Obj | None) -> None:
        old = self._targets.pop(key, None)
        if old is not None:
            self._by_target.get(old, set()).discard(key[1])
        if hpa is not None:
            ref = (hpa.get("spec") or {}).get("scaleTargetRef") or {}
            target = (key[0], ref.get("kind", ""), ref.get("name", ""))
            self._targets[key] = target
            self._by_target.setdefault(target, set()).add(key[1])

    def all_keys(self) -> list[Hashable]:
        items, _ = self.store.list(HORIZONTALPODAUTOSCALERS)
        keys = []
        with self._lock:
            for hpa in items:
                key = (hpa["metadata"].get("namespace") or "", name_of(hpa))
                self._index(key, hpa)
                keys.append(key)
        return keys

    def sync(self, key: Hashable) -> None:
        namespace, name = key  # type: ignore[misc]
        try:
            hpa = self.store.get(HORIZONTALPODAUTOSCALERS, namespace, name)
        except NotFound:
            return
        spec = hpa.get("spec") or {}
        ref = spec.get("scaleTargetRef") or {}
        rt = self._target_type(ref)
        try:
            if rt is None:
                raise NotFound(f'no scalable resource of kind "{ref.get("kind")}"')
            scale = self.store.get(rt, namespace, ref.get("name", ""), subresource="scale")  # type: ignore[call-arg]
        except NotFound as e:
            self._write_status(hpa, spec, 0, 0, [self._condition("AbleToScale", False, "FailedGetScale",
                                                                  f"the HPA controller was unable to get the target's current scale: {e.message}")])
            return
        current = int(scale["spec"].get("replicas") or 0)
        low, high = int(spec.get("minReplicas") or 1), int(spec["maxReplicas"])
        desired, reason = clamp(current, low, high)
        rescaled = False
        if reason and reason != "ScalingDisabled" and desired != current:
            self.store.patch(rt, namespace, ref["name"], {"spec": {"replicas": desired}}, MERGE,
                             subresource="scale")
            self.events.event(hpa, "Normal", "SuccessfulRescale", f"New size: {desired}; reason: {reason}")
            rescaled = True
        self._write_status(hpa, spec, int(scale["status"].get("replicas") or 0), desired,
                           self._conditions(current, desired, low, high, reason), rescaled)

    def _target_type(self, ref: Obj) -> ResourceType | None:
        if self.registry is None:
            return None
        info = self.registry.by_kind(ref.get("kind", ""), ref.get("apiVersion", "").rpartition("/")[0])
        return info.type if info is not None and "scale" in info.subresources else None

    def _conditions(self, current: int, desired: int, low: int, high: int, reason: str) -> list[Obj]:
        if reason == "ScalingDisabled":
            return [self._condition("AbleToScale", True, "SucceededGetScale", "the HPA controller was able to get the target's current scale"),
                    self._condition("ScalingActive", False, "ScalingDisabled", "scaling is disabled since the replica count of the target is zero")]
        able = (self._condition("AbleToScale", True, "SucceededRescale", f"the HPA controller was able to update the target scale to {desired}")
                if desired != current else
                self._condition("AbleToScale", True, "ReadyForNewScale", "recommended size matches current size"))
        # The sandbox has no metrics API: within range nothing can be computed, as on a cluster
        # without metrics-server.
        active = self._condition("ScalingActive", False, "FailedGetResourceMetric",
                                 "the HPA was unable to compute the replica count: the sandbox serves no metrics API "
                                 "(metrics.k8s.io); only minReplicas/maxReplicas are enforced")
        if current > high:
            limited = self._condition("ScalingLimited", True, "TooManyReplicas", "the desired replica count is more than the maximum replica count")
        elif current < low:
            limited = self._condition("ScalingLimited", True, "TooFewReplicas", "the desired replica count is less than the minimum replica count")
        else:
            limited = self._condition("ScalingLimited", False, "DesiredWithinRange", "the desired count is within the acceptable range")
        return [able, active, limited]

    @staticmethod
    def _condition(kind: str, ok: bool, reason: str, message: str) -> Obj:
        return {"type": kind, "status": "True" if ok else "False", "reason": reason, "message": message}

    def _write_status(self, hpa: Obj, spec: Obj, current: int, desired: int, conditions: list[Obj],
                      rescaled: bool = False) -> None:
        old = hpa.get("status") or {}
        previous = {c["type"]: c for c in old.get("conditions") or []}
        now = rfc3339(utcnow())
        for condition in conditions:  # lastTransitionTime moves only when the status flips
            before = previous.get(condition["type"])
            same = before is not None and before.get("status") == condition["status"]
            condition["lastTransitionTime"] = before.get("lastTransitionTime") if same and before else now
        status: Obj = {"currentReplicas": current, "desiredReplicas": desired, "conditions": conditions,
                       "observedGeneration": hpa["metadata"].get("generation", 0)}
        if rescaled:
            status["lastScaleTime"] = now
        elif old.get("lastScaleTime"):
            status["lastScaleTime"] = old["lastScaleTime"]
        if status != old:
            self.store.update_status(HORIZONTALPODAUTOSCALERS, hpa["metadata"].get("namespace"), name_of(hpa), status)
