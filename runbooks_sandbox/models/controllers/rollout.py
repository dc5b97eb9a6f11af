"""The rolling-update arithmetic of the Deployment controller, as pure functions.

Mirrors pkg/controller/deployment (rolling.go, sync.go's proportional scaling) and
util/deployment_util.go: maxSurge rounds up and maxUnavailable rounds down from percentages;
if both resolve to zero, maxUnavailable becomes 1. The planners take ReplicaSet dicts and
return the sizes to set; the controller applies them. Only ``spec.replicas`` and
``status.availableReplicas`` of the ReplicaSets matter here.
"""
from __future__ import annotations

import math
from typing import Any

from .meta import Obj, annotations, creation_key, name_of
from .revisions import DESIRED_REPLICAS, MAX_REPLICAS

IntOrString = int | str | None


def scaled_value(value: IntOrString, total: int, round_up: bool) -> int:
    """intstr.GetScaledValueFromIntOrPercent: an int as is, "N%" of total rounded as asked."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    text = str(value).strip()
    if not text.endswith("%"):
        return int(text)
    fraction = int(text[:-1]) * total
    return -(-fraction // 100) if round_up else fraction // 100


# --- deployment spec accessors (defaults as the API server applies them) ---------------------

def desired_replicas(deployment: Obj) -> int:
    replicas = (deployment.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def rs_replicas(rs: Obj | None) -> int:
    if rs is None:
        return 0
    replicas = (rs.get("spec") or {}).get("replicas")
    return 1 if replicas is None else int(replicas)


def rs_status(rs: Obj | None, field: str) -> int:
    return int(((rs or {}).get("status") or {}).get(field) or 0)


def strategy_type(deployment: Obj) -> str:
    return ((deployment.get("spec") or {}).get("strategy") or {}).get("type") or "RollingUpdate"


def is_rolling_update(deployment: Obj) -> bool:
    return strategy_type(deployment) == "RollingUpdate"


def _rolling_params(deployment: Obj) -> tuple[IntOrString, IntOrString]:
    rolling = ((deployment.get("spec") or {}).get("strategy") or {}).get("rollingUpdate") or {}
    return rolling.get("maxSurge", "25%"), rolling.get("maxUnavailable", "25%")


def resolve_fenceposts(max_surge: IntOrString, max_unavailable: IntOrString, desired: int) -> tuple[int, int]:
    """(surge, unavailable) in pods: surge rounds up, unavailable down; never both zero."""
    surge = scaled_value(max_surge, desired, round_up=True)
    unavailable = scaled_value(max_unavailable, desired, round_up=False)
    if surge == 0 and unavailable == 0:
        # Rounding down can make maxUnavailable zero; a rollout that may neither surge nor
        # drop a pod could never progress, so upstream allows one unavailable pod.
        unavailable = 1
    return surge, unavailable


def max_surge(deployment: Obj) -> int:
    if not is_rolling_update(deployment):
        return 0
    return resolve_fenceposts(*_rolling_params(deployment), desired_replicas(deployment))[0]


def max_unavailable(deployment: Obj) -> int:
    desired = desired_replicas(deployment)
    if not is_rolling_update(deployment) or desired == 0:
        return 0
    return min(resolve_fenceposts(*_rolling_params(deployment), desired)[1], desired)


# --- counts over ReplicaSets ------------------------------------------------------------------

def total_spec_replicas(replica_sets: list[Obj | None]) -> int:
    return sum(rs_replicas(rs) for rs in replica_sets if rs is not None)


def total_status(replica_sets: list[Obj | None], field: str) -> int:
    return sum(rs_status(rs, field) for rs in replica_sets if rs is not None)


def active(replica_sets: list[Obj | None]) -> list[Obj]:
    """controller.FilterActiveReplicaSets: those with spec.replicas > 0."""
    return [rs for rs in replica_sets if rs is not None and rs_replicas(rs) > 0]


# --- rolling update steps (rolling.go) ------------------------------------------------------

def new_rs_new_replicas(deployment: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """deploymentutil.NewRSNewReplicas: how far the new ReplicaSet may be scaled up now."""
    desired = desired_replicas(deployment)
    if not is_rolling_update(deployment):
        return desired  # Recreate: all at once, once the old pods are gone
    max_total = desired + max_surge(deployment)
    current_total = total_spec_replicas(all_rss)
    if current_total >= max_total:
        return rs_replicas(new_rs)
    scale_up = min(max_total - current_total, desired - rs_replicas(new_rs))
    return rs_replicas(new_rs) + scale_up


def max_old_scale_down(deployment: Obj, all_rss: list[Obj | None], new_rs: Obj) -> int:
    """How many old pods reconcileOldReplicaSets may remove in total without breaking
    maxUnavailable, counting the new ReplicaSet's not-yet-available pods as unavailable."""
    min_available = desired_replicas(deployment) - max_unavailable(deployment)
    new_unavailable = rs_replicas(new_rs) - rs_status(new_rs, "availableReplicas")
    return total_spec_replicas(all_rss) - min_available - new_unavailable


def plan_unhealthy_cleanup(old_rss: list[Obj], max_cleanup: int) -> dict[str, int]:
    """cleanupUnhealthyReplicas: scale old ReplicaSets down by their unavailable pods first,
    oldest first, at most max_cleanup pods in total (those pods add no unavailability)."""
    plan: dict[str, int] = {}
    removed = 0
    for rs in sorted(old_rss, key=creation_key):
        if removed >= max_cleanup:
            break
        replicas, available = rs_replicas(rs), rs_status(rs, "availableReplicas")
        if replicas == 0 or replicas <= available:
            continue
        count = min(max_cleanup - removed, replicas - available)
        plan[name_of(rs)] = replicas - count
        removed += count
    return plan


def plan_old_scale_down(deployment: Obj, all_rss: list[Obj | None], old_rss: list[Obj]) -> dict[str, int]:
    """scaleDownOldReplicaSetsForRollingUpdate: remove available old pods only while the
    available total stays at or above replicas - maxUnavailable, oldest ReplicaSet first."""
    min_available = desired_replicas(deployment) - max_unavailable(deployment)
    available = total_status(all_rss, "availableReplicas")
    if available <= min_available:
        return {}
    budget = available - min_available
    plan: dict[str, int] = {}
    removed = 0
    for rs in sorted(old_rss, key=creation_key):
        if removed >= budget:
            break
        replicas = rs_replicas(rs)
        if replicas == 0:
            continue
        count = min(replicas, budget - removed)
        plan[name_of(rs)] = replicas - count
        removed += count
    return plan


# --- proportional scaling (sync.go scale) ----------------------------------------------------

def _annotation_int(rs: Obj, key: str) -> int | None:
    try:
        return int(annotations(rs)[key])
    except (KeyError, ValueError):
        return None


def _fraction(rs: Obj, deployment: Obj) -> int:
    """getReplicaSetFraction: rs's share of a resize, from the size it was scaled for."""
    desired = desired_replicas(deployment)
    if desired == 0:
        return -rs_replicas(rs)
    max_now = desired + max_surge(deployment)
    max_before = _annotation_int(rs, MAX_REPLICAS)
    if not max_before:
        max_before = int((deployment.get("status") or {}).get("replicas") or 0)
        if max_before == 0:
            return max_now - rs_replicas(rs)
    scaled = rs_replicas(rs) * (max_now / max_before)
    return int(math.floor(scaled + 0.5)) - rs_replicas(rs)  # Go's math.Round for positives


def _proportion(rs: Obj, deployment: Obj, to_add: int, added: int) -> int:
    if rs_replicas(rs) == 0 or to_add == 0 or to_add == added:
        return 0
    fraction, allowed = _fraction(rs, deployment), to_add - added
    return min(fraction, allowed) if to_add > 0 else max(fraction, allowed)


def plan_proportional_scale(deployment: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> dict[str, int]:
    """Sizes for every active ReplicaSet when a deployment is resized mid-rollout: the change
    is shared in proportion to each one's size, leftovers go to the largest."""
    all_active = active([*old_rss, new_rs])
    desired = desired_replicas(deployment)
    allowed = desired + max_surge(deployment) if desired > 0 else 0
    to_add = allowed - total_spec_replicas(all_active)
    if to_add > 0:  # ReplicaSetsBySizeNewer: larger first, newer first on ties
        all_active.sort(key=creation_key, reverse=True)
        all_active.sort(key=rs_replicas, reverse=True)
    elif to_add < 0:  # ReplicaSetsBySizeOlder: larger first, older first on ties
        all_active.sort(key=creation_key)
        all_active.sort(key=rs_replicas, reverse=True)
    sizes: dict[str, int] = {}
    added = 0
    for rs in all_active:
        share = _proportion(rs, deployment, to_add, added) if to_add else 0
        sizes[name_of(rs)] = rs_replicas(rs) + share
        added += share
    if all_active and to_add:
        largest = name_of(all_active[0])
        sizes[largest] = max(0, sizes[largest] + to_add - added)
    return sizes


def find_active_or_latest(new_rs: Obj | None, old_rss: list[Obj]) -> Obj | None:
    """The only active ReplicaSet, or the newest if none is active; None if several are."""
    if new_rs is None and not old_rss:
        return None
    newest_first = sorted(old_rss, key=creation_key, reverse=True)
    actives = active([*newest_first, new_rs])
    if len(actives) == 1:
        return actives[0]
    if not actives:
        return new_rs if new_rs is not None else newest_first[0]
    return None


def is_saturated(deployment: Obj, rs: Obj | None) -> bool:
    """The new ReplicaSet runs the full deployment, all available."""
    if rs is None:
        return False
    desired = desired_replicas(deployment)
    return (rs_replicas(rs) == desired and _annotation_int(rs, DESIRED_REPLICAS) == desired
            and rs_status(rs, "availableReplicas") == desired)


def scaling_event(deployment: Obj, replica_sets: list[Obj | None]) -> bool:
    """isScalingEvent: an active ReplicaSet was sized for a different spec.replicas."""
    desired = desired_replicas(deployment)
    for rs in active(replica_sets):
        recorded = _annotation_int(rs, DESIRED_REPLICAS)
        if recorded is not None and recorded != desired:
            return True
    return False


def spec_field(deployment: Obj, field: str, default: Any = None) -> Any:
    return (deployment.get("spec") or {}).get(field, default)
