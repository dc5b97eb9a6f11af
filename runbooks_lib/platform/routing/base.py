"""The traffic router interface, as Flagger's: set up, read and set the split, clean up.

A router splits one Service's traffic between a *primary* (the version serving users) and a
*canary* (the version on trial). It knows them by the pod labels that tell them apart
(``Target.primary_labels`` / ``canary_labels``, e.g. ``version=v1.5.0`` / ``version=v1.6.0``) and
by their Deployments. Weights are percentages that add up to 100. Each backend says what split it
really achieved: Istio gives exact percentages, a replica ratio only the nearest split its pods
allow, a Service selector all or nothing (``achievable`` tells before anything changes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Protocol, runtime_checkable

from ...errors import ParameterError

__all__ = ["Router", "Routes", "Target", "check_weights"]


@dataclass(frozen=True)
class Target:
    """What a router splits: one Service between two sets of pods."""

    service: str
    primary: str  # the primary's Deployment
    canary: str  # the canary's Deployment
    primary_labels: Mapping[str, str] = field(default_factory=dict)  # pod labels only the primary's pods carry
    canary_labels: Mapping[str, str] = field(default_factory=dict)  # ... only the canary's pods carry


@dataclass(frozen=True)
class Routes:
    """A split of traffic, in percent, and how it is (or would be) achieved."""

    primary_weight: float
    canary_weight: float
    exact: bool = True  # False: the nearest split the backend allows, not the one asked for
    how: str = ""  # in words, for the record: "VirtualService x: primary 95 % / canary 5 %"

    def __str__(self) -> str:
        split = f"primary {self.primary_weight:g} % / canary {self.canary_weight:g} %"
        return split + ("" if self.exact else " (nearest achievable)") + (f" — {self.how}" if self.how else "")


def check_weights(primary_weight: float, canary_weight: float) -> None:
    """Weights are percentages of one Service's traffic: each 0..100, together 100."""
    if not (0 <= primary_weight <= 100 and 0 <= canary_weight <= 100) or primary_weight + canary_weight != 100:
        raise ParameterError(
            f"weights must be percentages adding up to 100, not primary {primary_weight} / canary {canary_weight}")


@runtime_checkable
class Router(Protocol):
    """One backend of traffic splitting (Flagger: Reconcile, SetRoutes, GetRoutes, Finalize)."""

    name: str
    target: Target

    def setup(self) -> str:
        """Create what the split needs (mesh objects, selector) with all traffic on the primary."""

    def achievable(self, primary_weight: float, canary_weight: float) -> Routes:
        """The split ``set_routes`` would give, without changing anything (ParameterError if none)."""

    def get_routes(self) -> Routes:
        """The split in force now."""

    def set_routes(self, primary_weight: float, canary_weight: float) -> Routes:
        """Move traffic; returns the split achieved."""

    def cleanup(self) -> str:
        """Remove what ``setup`` created; the Service balances over its pods as before."""
