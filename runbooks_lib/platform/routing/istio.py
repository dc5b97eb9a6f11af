"""Istio: a VirtualService splits the Service between two DestinationRule subsets, by exact weight.

The subsets are the primary's and the canary's pod labels (``version``); Istio's weights are
proportional and 0 sends nothing, so any percentage is exact. ``cleanup`` deletes both objects:
the Service then balances over all its ready pods again, as before the canary.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .base import Routes, Target, check_weights

if TYPE_CHECKING:
    from ..cluster import Cluster

__all__ = ["IstioRouter"]

GROUP, VERSION = "networking.istio.io", "v1beta1"
_MANAGED = {"app.kubernetes.io/managed-by": "veza-runbooks"}


class IstioRouter:
    name = "istio"

    def __init__(self, cluster: "Cluster", target: Target) -> None:
        self.cluster = cluster
        self.target = target

    def _destination_rule(self) -> dict[str, Any]:
        t = self.target
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "DestinationRule",
            "metadata": {"name": t.service, "labels": dict(_MANAGED)},
            "spec": {"host": t.service, "subsets": [
                {"name": "primary", "labels": dict(t.primary_labels)},
                {"name": "canary", "labels": dict(t.canary_labels)},
            ]},
        }

    def _virtual_service(self, primary_weight: float, canary_weight: float) -> dict[str, Any]:
        t = self.target
        return {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualService",
            "metadata": {"name": t.service, "labels": dict(_MANAGED)},
            "spec": {"hosts": [t.service], "http": [{"route": [
                {"destination": {"host": t.service, "subset": "primary"}, "weight": int(primary_weight)},
                {"destination": {"host": t.service, "subset": "canary"}, "weight": int(canary_weight)},
            ]}]},
        }

    def setup(self) -> str:
        """Subsets first, then the VirtualService at 100/0: the canary gets nothing until asked."""
        self.cluster.apply_custom_object(GROUP, VERSION, "destinationrules", self._destination_rule())
        self.cluster.apply_custom_object(GROUP, VERSION, "virtualservices", self._virtual_service(100, 0))
        t = self.target
        return (f"DestinationRule {t.service}: subsets primary {dict(t.primary_labels)}, canary {dict(t.canary_labels)}; "
                f"VirtualService {t.service}: primary 100 % / canary 0 %")

    def achievable(self, primary_weight: float, canary_weight: float) -> Routes:
        check_weights(primary_weight, canary_weight)
        if primary_weight != int(primary_weight):
            from ...errors import ParameterError

            raise ParameterError(f"Istio weights are whole percentages, not {primary_weight}")
        return Routes(primary_weight, canary_weight, True, f"VirtualService {self.target.service}")

    def get_routes(self) -> Routes:
        vs = self.cluster.custom_object(GROUP, VERSION, "virtualservices", self.target.service)
        if vs is None:
            return Routes(100, 0, True, f"no VirtualService {self.target.service}: the Service balances over its pods")
        weights = {d["destination"].get("subset"): float(d.get("weight") or 0)
                   for d in vs["spec"]["http"][0]["route"]}
        total = sum(weights.values()) or 1.0  # Istio weights are proportional
        primary = round(100 * weights.get("primary", 0) / total, 3)
        return Routes(primary, round(100 - primary, 3), True, f"VirtualService {self.target.service}")

    def set_routes(self, primary_weight: float, canary_weight: float) -> Routes:
        routes = self.achievable(primary_weight, canary_weight)
        self.cluster.apply_custom_object(GROUP, VERSION, "virtualservices",
                                         self._virtual_service(primary_weight, canary_weight))
        return routes

    def cleanup(self) -> str:
        gone = [kind for kind, plural in (("VirtualService", "virtualservices"), ("DestinationRule", "destinationrules"))
                if self.cluster.delete_custom_object(GROUP, VERSION, plural, self.target.service)]
        return f"deleted {' and '.join(gone) or 'nothing'} {self.target.service}; the Service balances over its pods"
