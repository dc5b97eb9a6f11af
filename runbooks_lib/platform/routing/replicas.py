"""Plain Kubernetes: the split follows the ratio of ready pods behind one Service.

Without a mesh the Service balances evenly over ready pods, so 5 % of traffic needs one canary
pod among twenty. With ``total`` pods shared by primary and canary only multiples of
1/total exist: the router takes the nearest split that still gives the canary at least one pod
(and the primary one) and says so (``Routes.exact`` False). The canary's pods must carry the
Service's selector labels.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Routes, Target, check_weights

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["ReplicaRouter", "replica_split"]


def replica_split(canary_weight: float, total: int) -> tuple[int, int]:
    """(primary pods, canary pods) nearest to ``canary_weight`` % of ``total`` pods.

    0 and 100 are exact; any share in between keeps at least one pod on each side, since a
    canary step without a canary pod (or a primary without one) would test nothing.
    """
    if total < 1:
        raise ValueError("total must be at least 1")
    if canary_weight <= 0:
        return total, 0
    if canary_weight >= 100:
        return 0, total
    canary = min(max(round(canary_weight * total / 100), 1), total - 1) if total >= 2 else 1
    return total - canary, canary


class ReplicaRouter:
    name = "replicas"

    def __init__(self, cluster: "Cluster", target: Target, total: int, timeout_s: float = 120) -> None:
        self.cluster = cluster
        self.target = target
        self.total = total
        self.timeout_s = timeout_s

    def setup(self) -> str:
        return (f"no mesh: {self.target.service} balances over ready pods; splits are ratios of "
                f"{self.total} pods shared by {self.target.primary} and {self.target.canary}")

    def achievable(self, primary_weight: float, canary_weight: float) -> Routes:
        check_weights(primary_weight, canary_weight)
        primary, canary = replica_split(canary_weight, self.total)
        share = round(100 * canary / (primary + canary), 1)
        return Routes(100 - share, share, share == canary_weight,
                      f"{primary} pod(s) of {self.target.primary}, {canary} of {self.target.canary}")

    def get_routes(self) -> Routes:
        primary = self.cluster.deployment_state(self.target.primary).ready
        try:
            canary = self.cluster.deployment_state(self.target.canary).ready
        except Exception:  # noqa: BLE001 - no canary Deployment: everything on the primary
            canary = 0
        share = round(100 * canary / max(primary + canary, 1), 1)
        return Routes(100 - share, share, True, f"{primary} ready pod(s) of {self.target.primary}, {canary} of {self.target.canary}")

    def set_routes(self, primary_weight: float, canary_weight: float) -> Routes:
        routes = self.achievable(primary_weight, canary_weight)
        primary, canary = replica_split(canary_weight, self.total)
        # Grow the side that gains first and wait for its pods, so capacity never dips.
        moves = [(self.target.primary, primary), (self.target.canary, canary)]
        if canary_weight > self.get_routes().canary_weight:
            moves.reverse()
        for name, replicas in moves:
            self.cluster.scale_deployment(name, replicas)
            if not self.cluster.dry_run and replicas > 0:
                from ..rollout import wait_for_rollout

                wait_for_rollout(self.cluster, name, self.timeout_s)
        return routes

    def cleanup(self) -> str:
        return "nothing to remove: no routing objects were created"
