"""Small helpers on plain-dict objects shared by the controllers: time, ownership, pod state.

Objects are the wire-shaped dicts the store holds, so every accessor here defaults the way
the Go types do when a field is omitted (``omitempty``).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

Obj = dict[str, Any]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def rfc3339(moment: datetime) -> str:
    """metav1.Time's wire form: second precision, UTC, 'Z' suffix."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(text: str | None) -> datetime | None:
    if not text:
        return None
    return datetime.strptime(text[:19], "%Y-%m-%dT%H:%M:%S").replace(tzinfo=timezone.utc)


def name_of(obj: Obj) -> str:
    return obj["metadata"]["name"]


def namespace_of(obj: Obj) -> str | None:
    return obj["metadata"].get("namespace")


def uid_of(obj: Obj) -> str:
    return obj["metadata"]["uid"]


def annotations(obj: Obj) -> dict[str, str]:
    return obj["metadata"].get("annotations") or {}


def creation_key(obj: Obj) -> tuple[str, str]:
    """Sort key of controller.ReplicaSetsByCreationTimestamp: timestamp, then name."""
    return (obj["metadata"].get("creationTimestamp") or "", name_of(obj))


def controller_ref(owner: Obj) -> Obj:
    """metav1.NewControllerRef: the ownerReference a controller puts on what it creates."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": name_of(owner),
        "uid": uid_of(owner),
        "controller": True,
        "blockOwnerDeletion": True,
    }


def controller_of(obj: Obj) -> Obj | None:
    """The ownerReference with controller: true, if any (metav1.GetControllerOf)."""
    for ref in obj["metadata"].get("ownerReferences") or []:
        if ref.get("controller"):
            return ref
    return None


def is_controlled_by(obj: Obj, owner_uid: str) -> bool:
    ref = controller_of(obj)
    return ref is not None and ref.get("uid") == owner_uid


def is_terminating(obj: Obj) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))


# --- pods -----------------------------------------------------------------------------------

def pod_condition(pod: Obj, kind: str) -> Obj | None:
    for condition in (pod.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def is_pod_ready(pod: Obj) -> bool:
    condition = pod_condition(pod, "Ready")
    return condition is not None and condition.get("status") == "True"


def ready_since(pod: Obj) -> datetime | None:
    condition = pod_condition(pod, "Ready")
    if condition is None or condition.get("status") != "True":
        return None
    return parse_time(condition.get("lastTransitionTime"))


def is_pod_available(pod: Obj, min_ready_seconds: int, now: datetime) -> bool:
    """podutil.IsPodAvailable: ready, and ready for at least minReadySeconds."""
    if not is_pod_ready(pod):
        return False
    if min_ready_seconds <= 0:
        return True
    since = ready_since(pod)
    return since is not None and (now - since).total_seconds() >= min_ready_seconds


def pod_phase(pod: Obj) -> str:
    return (pod.get("status") or {}).get("phase") or ""


def is_pod_active(pod: Obj) -> bool:
    """controller.IsPodActive: not terminating and not finished (Succeeded/Failed)."""
    return not is_terminating(pod) and pod_phase(pod) not in ("Succeeded", "Failed")


def restart_count(pod: Obj) -> int:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return sum(int(s.get("restartCount") or 0) for s in statuses)


def clone_obj(value: Any) -> Any:
    """Deep copy of a JSON-shaped value (faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: clone_obj(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone_obj(v) for v in value]
    return value
