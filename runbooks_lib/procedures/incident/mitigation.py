"""The mitigations an incident runbook may execute: roll back, scale, restart.

Each goes through the same library functions and the same deploy lock as the deploy and
rollback runbooks (``roll_back``, ``wait_for_rollout``, ``DeployLock``). With
``execute=False`` nothing is sent to the cluster: the plan is returned in words. A profile
whose approvals are required stops before the change (AwaitingApproval, exit 3) unless the
plan went through the run's approval gate (``RunContext.gate``).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ...errors import AwaitingApproval, ParameterError
from ...platform.rollout import wait_for_rollout
from .snapshot import image_tag

if TYPE_CHECKING:
    from ...platform.cluster import Cluster
    from ...config.profiles import Profile

__all__ = ["MitigationPlan", "MitigationResult", "plan_mitigation", "safe_rollback_target", "execute_mitigation"]


@dataclass(frozen=True)
class MitigationPlan:
    action: str  # rollback | scale | restart | none
    service: str | None
    deployment: str | None
    to_revision: int | None = None
    replicas: int | None = None
    reason: str = ""

    def describe(self) -> str:
        if self.action == "rollback":
            target = f"revision {self.to_revision}" if self.to_revision else "the previous revision"
            return f"roll back {self.deployment} to {target}"
        if self.action == "scale":
            return f"scale {self.deployment} to {self.replicas} replicas"
        if self.action == "restart":
            return f"rolling restart of {self.deployment}"
        return "no mitigation"


@dataclass(frozen=True)
class MitigationResult:
    plan: MitigationPlan
    executed: bool
    started: datetime | None
    finished: datetime | None
    detail: str
    from_version: str | None = None  # a rollback's: the image version it undid
    to_revision: int | None = None  # a rollback's target
    to_version: str | None = None


def plan_mitigation(action: str, service: str | None, deployment: str | None, *, to_revision: int | None = None,
                    replicas: int | None = None, current_replicas: int = 1, reason: str = "") -> MitigationPlan:
    """The concrete change, or a ParameterError when it cannot be made (no service to act on)."""
    if action == "none":
        return MitigationPlan("none", service, deployment, reason=reason)
    if not service or not deployment:
        raise ParameterError(f"mitigation {action!r} needs one service: name it (service=...) "
                             "or let the correlation find the changed one")
    if action == "scale":
        replicas = replicas or max(2 * current_replicas, current_replicas + 1)
    return MitigationPlan(action, service, deployment, to_revision or None, replicas, reason)


def safe_rollback_target(cluster: "Cluster", profile: "Profile", plan: MitigationPlan,
                         identity: str | None) -> tuple[MitigationPlan, str | None]:
    """A rollback must restore service, never make things worse: when the target the correlation
    (or the operator) chose is known bad in this cluster (runbooks_lib.procedures.judging.verdicts), the plan goes to
    the newest known-good revision instead, and the second value says which and why. Raises
    ParameterError (nothing changed) only when no revision is free of a bad verdict."""
    from ...platform.rollout import choose_revision, history
    from ..judging.verdicts import known_verdicts, newest_known_good, refuse_known_bad

    if plan.action != "rollback":
        return plan, None
    assert plan.service and plan.deployment
    revisions = history(cluster, plan.deployment)
    current = int(cluster.deployment_state(plan.deployment).revision or 0)
    target = choose_revision(revisions, current, plan.to_revision)
    verdicts = known_verdicts(profile.name, plan.service, identity, revisions)
    bad = verdicts.get(target.version or "")
    if bad is None or not bad.bad:
        return plan, None
    current_version = next((r.version for r in revisions if r.number == current), None)
    good = newest_known_good(revisions, current, verdicts, current_version)
    if good is None:
        refuse_known_bad(bad, what=f"to roll {plan.deployment} back to revision {target.number}", allow_known_bad=False,
                         reason="", reason_parameter="reason",
                         proposal="No revision is free of a bad verdict: mitigate by scaling or a fixed version.")
    assert good is not None
    known = verdicts.get(good.version or "")
    why = (f"revision {target.number} ({target.version}) is known bad: {bad.evidence()}; rolling back to revision "
           f"{good.number} ({good.version}) instead, the newest "
           + ("known good: " + known.evidence() if known is not None else "revision with no bad verdict"))
    return replace(plan, to_revision=good.number, reason=f"{plan.reason}; {why}" if plan.reason else why), why


def execute_mitigation(cluster: "Cluster", profile: "Profile", plan: MitigationPlan, *, run_id: str,
                       execute: bool, approved: bool = False, identity: str | None = None) -> MitigationResult:
    """Carry the plan out under the service's deploy lock, or only describe it. Where the profile
    requires approvals, only an ``approved`` plan (passed through ``ctx.gate``) is carried out."""
    from ...run.lock import DeployLock
    from ..rollback import roll_back

    if plan.action == "none" or not execute:
        verb = "nothing to do" if plan.action == "none" else f"proposed only (execute_mitigation=False): {plan.describe()}"
        return MitigationResult(plan, False, None, None, f"{verb}; nothing in the cluster was changed")
    if profile.approvals.required and not approved:
        who = ", ".join(profile.approvals.approvers) or "an approver"
        raise AwaitingApproval(f"{plan.describe()} needs the approval of {who} in {profile.name}: "
                               "nothing was changed")
    assert plan.service and plan.deployment
    if plan.action == "rollback":
        _, moved = safe_rollback_target(cluster, profile, plan, identity)
        if moved:  # the caller resolves the target before its approval; a verdict since then refuses
            raise ParameterError(f"the approved plan ({plan.describe()}) is no longer safe: {moved}; nothing was changed")
    started = datetime.now(timezone.utc)
    began = time.monotonic()
    rolled: dict[str, Any] = {}
    with DeployLock(cluster, plan.service, run_id):
        if plan.action == "rollback":
            undone = image_tag(cluster.deployment_state(plan.deployment).image)
            result = roll_back(cluster, plan.service, plan.deployment, to_revision=plan.to_revision,
                               timeout_s=profile.timeouts.rollback_s)
            rolled = {"from_version": undone, "to_revision": result.to_revision, "to_version": result.to_version}
            detail = (f"rolled back {plan.deployment} from {undone} to revision {result.to_revision} ({result.to_version}); "
                      f"it serves 100 % ({result.versions_seen}) after {result.time_to_rollback_s:.1f} s")
        elif plan.action == "scale":
            assert plan.replicas is not None
            cluster.scale_deployment(plan.deployment, plan.replicas)
            state = wait_for_rollout(cluster, plan.deployment, profile.timeouts.rollout_s)
            detail = f"scaled {plan.deployment} to {state.ready}/{state.desired} ready replicas"
        elif plan.action == "restart":
            cluster.restart_deployment(plan.deployment)
            state = wait_for_rollout(cluster, plan.deployment, profile.timeouts.rollout_s)
            detail = f"restarted {plan.deployment}: {state.ready}/{state.desired} new pods ready (revision {state.revision})"
        else:
            raise ParameterError(f"unknown mitigation {plan.action!r}")
    finished = datetime.now(timezone.utc)
    return MitigationResult(plan, True, started, finished, f"{detail} in {time.monotonic() - began:.1f} s", **rolled)
