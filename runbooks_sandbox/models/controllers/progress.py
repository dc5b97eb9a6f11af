"""Deployment status and conditions, as pure functions (sync.go calculateStatus, progress.go).

``kubectl rollout status`` reads exactly these: observedGeneration against generation, the
Progressing condition's reason (ProgressDeadlineExceeded makes it fail), updatedReplicas,
replicas and availableReplicas. Zero counts are omitted, as the Go types' ``omitempty`` does.
"""
from __future__ import annotations

from datetime import datetime, timedelta

from .meta import Obj, clone_obj, parse_time, rfc3339
from .rollout import desired_replicas, max_unavailable, total_spec_replicas, total_status

AVAILABLE = "Available"
PROGRESSING = "Progressing"
REPLICA_FAILURE = "ReplicaFailure"

# Reasons (deploymentutil constants).
MINIMUM_REPLICAS_AVAILABLE = "MinimumReplicasAvailable"
MINIMUM_REPLICAS_UNAVAILABLE = "MinimumReplicasUnavailable"
NEW_RS_CREATED = "NewReplicaSetCreated"
FOUND_NEW_RS = "FoundNewReplicaSet"
RS_UPDATED = "ReplicaSetUpdated"
NEW_RS_AVAILABLE = "NewReplicaSetAvailable"
TIMED_OUT = "ProgressDeadlineExceeded"
PAUSED = "DeploymentPaused"
RESUMED = "DeploymentResumed"
FAILED_RS_CREATE = "ReplicaSetCreateError"

# A progressDeadlineSeconds of MaxInt32 means "no deadline", as upstream.
NO_DEADLINE = 2**31 - 1


def new_condition(kind: str, status: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = rfc3339(now)
    return {"type": kind, "status": status, "lastUpdateTime": stamp, "lastTransitionTime": stamp,
            "reason": reason, "message": message}


def get_condition(status: Obj, kind: str) -> Obj | None:
    for condition in status.get("conditions") or []:
        if condition.get("type") == kind:
            return condition
    return None


def set_condition(status: Obj, condition: Obj) -> None:
    """SetDeploymentCondition: no-op if status and reason are unchanged; keeps
    lastTransitionTime when only the reason changes; the condition moves to the end."""
    current = get_condition(status, condition["type"])
    if current and current.get("status") == condition["status"] and current.get("reason") == condition["reason"]:
        return
    if current and current.get("status") == condition["status"]:
        condition = dict(condition, lastTransitionTime=current.get("lastTransitionTime"))
    remove_condition(status, condition["type"])
    status.setdefault("conditions", []).append(condition)


def remove_condition(status: Obj, kind: str) -> None:
    kept = [c for c in status.get("conditions") or [] if c.get("type") != kind]
    if kept:
        status["conditions"] = kept
    else:
        status.pop("conditions", None)


def has_progress_deadline(deployment: Obj) -> bool:
    deadline = (deployment.get("spec") or {}).get("progressDeadlineSeconds")
    return deadline is not None and int(deadline) != NO_DEADLINE


def _omit_zeros(status: Obj) -> Obj:
    return {k: v for k, v in status.items() if v not in (0, None, [])}


def calculate_status(all_rss: list[Obj | None], new_rs: Obj | None, deployment: Obj, now: datetime) -> Obj:
    """The counts from the ReplicaSets' statuses, plus the Available condition."""
    old = deployment.get("status") or {}
    available = total_status(all_rss, "availableReplicas")
    unavailable = max(0, total_spec_replicas(all_rss) - available)
    status = _omit_zeros({
        "observedGeneration": deployment["metadata"].get("generation", 0),
        "replicas": total_status(all_rss, "replicas"),
        "updatedReplicas": total_status([new_rs], "replicas"),
        "readyReplicas": total_status(all_rss, "readyReplicas"),
        "availableReplicas": available,
        "unavailableReplicas": unavailable,
        "collisionCount": old.get("collisionCount"),
    })
    if old.get("conditions"):
        status["conditions"] = clone_obj(old["conditions"])
    if available >= desired_replicas(deployment) - max_unavailable(deployment):
        set_condition(status, new_condition(AVAILABLE, "True", MINIMUM_REPLICAS_AVAILABLE,
                                            "Deployment has minimum availability.", now))
    else:
        set_condition(status, new_condition(AVAILABLE, "False", MINIMUM_REPLICAS_UNAVAILABLE,
                                            "Deployment does not have minimum availability.", now))
    return status


def _count(status: Obj, field: str) -> int:
    return int(status.get(field) or 0)


def deployment_complete(deployment: Obj, status: Obj) -> bool:
    """All replicas updated and available, none old, and the latest spec observed."""
    desired = desired_replicas(deployment)
    return (_count(status, "updatedReplicas") == desired and _count(status, "replicas") == desired
            and _count(status, "availableReplicas") == desired
            and _count(status, "observedGeneration") >= deployment["metadata"].get("generation", 0))


def deployment_progressing(deployment: Obj, status: Obj) -> bool:
    """Progress since the stored status: more updated/ready/available pods, or fewer old ones."""
    old = deployment.get("status") or {}
    old_old = _count(old, "replicas") - _count(old, "updatedReplicas")
    new_old = _count(status, "replicas") - _count(status, "updatedReplicas")
    return (_count(status, "updatedReplicas") > _count(old, "updatedReplicas") or new_old < old_old
            or _count(status, "readyReplicas") > _count(old, "readyReplicas")
            or _count(status, "availableReplicas") > _count(old, "availableReplicas"))


def deadline_at(deployment: Obj, condition: Obj) -> datetime | None:
    """When the Progressing condition's last update plus progressDeadlineSeconds passes."""
    updated = parse_time(condition.get("lastUpdateTime"))
    if updated is None:
        return None
    return updated + timedelta(seconds=int(deployment["spec"]["progressDeadlineSeconds"]))


def deployment_timed_out(deployment: Obj, status: Obj, now: datetime) -> bool:
    if not has_progress_deadline(deployment):
        return False
    condition = get_condition(status, PROGRESSING)
    if condition is None or condition.get("reason") == NEW_RS_AVAILABLE:
        return False
    if condition.get("reason") == TIMED_OUT:
        return True
    deadline = deadline_at(deployment, condition)
    return deadline is not None and deadline < now


def rollout_status(all_rss: list[Obj | None], new_rs: Obj | None, deployment: Obj, now: datetime) -> Obj:
    """syncRolloutStatus's new status: calculate_status plus the Progressing condition."""
    status = calculate_status(all_rss, new_rs, deployment, now)
    if not has_progress_deadline(deployment):
        remove_condition(status, PROGRESSING)
        return status
    current = get_condition(deployment.get("status") or {}, PROGRESSING)
    complete_before = (_count(status, "replicas") == _count(status, "updatedReplicas")
                       and current is not None and current.get("reason") == NEW_RS_AVAILABLE)
    if complete_before:
        return status
    name = deployment["metadata"]["name"]
    subject = f'ReplicaSet "{new_rs["metadata"]["name"]}"' if new_rs else f'Deployment "{name}"'
    if deployment_complete(deployment, status):
        set_condition(status, new_condition(PROGRESSING, "True", NEW_RS_AVAILABLE,
                                            f"{subject} has successfully progressed.", now))
    elif deployment_progressing(deployment, status):
        condition = new_condition(PROGRESSING, "True", RS_UPDATED, f"{subject} is progressing.", now)
        if current is not None:
            # Progress refreshes lastUpdateTime (which the deadline counts from) even when
            # the reason is unchanged, so the condition is replaced rather than set.
            if current.get("status") == "True":
                condition["lastTransitionTime"] = current.get("lastTransitionTime")
            remove_condition(status, PROGRESSING)
        set_condition(status, condition)
    elif deployment_timed_out(deployment, status, now):
        set_condition(status, new_condition(PROGRESSING, "False", TIMED_OUT,
                                            f"{subject} has timed out progressing.", now))
    return status


def stuck_recheck_delay(deployment: Obj, status: Obj, now: datetime) -> float | None:
    """requeueStuckDeployment: seconds until the deadline should be checked again, or None."""
    current = get_condition(deployment.get("status") or {}, PROGRESSING)
    if not has_progress_deadline(deployment) or current is None:
        return None
    if deployment_complete(deployment, status) or current.get("reason") == TIMED_OUT:
        return None
    deadline = deadline_at(deployment, current)
    if deadline is None:
        return None
    remaining = (deadline - now).total_seconds()
    # Timestamps have second precision: check again just after the deadline has surely passed.
    return 0.2 if remaining < 1 else remaining + 1
