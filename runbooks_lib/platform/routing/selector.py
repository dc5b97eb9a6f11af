"""The Service's selector (blue-green): all traffic to the primary or all to the canary.

No mesh needed: the Service selects the primary's or the canary's distinguishing pod labels.
Only 100/0 and 0/100 exist; any other split is refused before anything changes. ``cleanup``
takes the distinguishing labels out of the selector again (whichever pods are left serve).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ParameterError
from .base import Routes, Target, check_weights

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["SelectorRouter"]


class SelectorRouter:
    name = "selector"

    def __init__(self, cluster: "Cluster", target: Target) -> None:
        self.cluster = cluster
        self.target = target

    def _select(self, labels: dict[str, str]) -> None:
        self.cluster.patch_service(self.target.service, {"spec": {"selector": labels}})

    def setup(self) -> str:
        self._select(dict(self.target.primary_labels))
        return f"service {self.target.service} selects the primary's pods {dict(self.target.primary_labels)}"

    def achievable(self, primary_weight: float, canary_weight: float) -> Routes:
        check_weights(primary_weight, canary_weight)
        if canary_weight not in (0, 100):
            raise ParameterError(
                f"the selector router switches all traffic at once: {canary_weight:g} % to the canary is not "
                "possible (use steps [100], or the istio or replicas router)")
        side = self.target.canary_labels if canary_weight == 100 else self.target.primary_labels
        return Routes(primary_weight, canary_weight, True, f"service {self.target.service} selects {dict(side)}")

    def get_routes(self) -> Routes:
        selector = (self.cluster.service(self.target.service).get("spec") or {}).get("selector") or {}
        if all(selector.get(k) == v for k, v in self.target.canary_labels.items()):
            return Routes(0, 100, True, f"service {self.target.service} selects {selector}")
        if all(selector.get(k) == v for k, v in self.target.primary_labels.items()):
            return Routes(100, 0, True, f"service {self.target.service} selects {selector}")
        return Routes(100, 0, False, f"service {self.target.service} selects {selector}: neither side alone")

    def set_routes(self, primary_weight: float, canary_weight: float) -> Routes:
        routes = self.achievable(primary_weight, canary_weight)
        self._select(dict(self.target.canary_labels if canary_weight == 100 else self.target.primary_labels))
        return routes

    def cleanup(self) -> str:
        keys = set(self.target.primary_labels) | set(self.target.canary_labels)
        self._select({k: None for k in keys})  # type: ignore[misc]  # null deletes a key (strategic merge)
        return f"service {self.target.service} no longer narrows on {', '.join(sorted(keys))}"
