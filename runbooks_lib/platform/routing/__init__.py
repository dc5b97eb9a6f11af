"""Traffic routing behind one small Protocol (Flagger's router interface), one module per backend.

``make_router(profile, cluster, target)`` picks the backend the profile names
(``routing.router``): ``istio`` (VirtualService weights, exact), ``replicas`` (pod ratio,
nearest split) or ``selector`` (the Service's selector, all or nothing). An unknown name is an
error, never a fallback.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from ...errors import ParameterError
from .base import Router, Routes, Target, check_weights
from .istio import IstioRouter
from .replicas import ReplicaRouter, replica_split
from .selector import SelectorRouter

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ...config.profiles import Profile

__all__ = ["Router", "Routes", "Target", "check_weights", "make_router", "replica_split",
           "IstioRouter", "ReplicaRouter", "SelectorRouter", "ROUTERS"]

ROUTERS = ("istio", "replicas", "selector")


def make_router(profile: "Profile", cluster: "Cluster", target: Target, name: str | None = None) -> Router:
    """The router the profile names (or ``name``); an unknown router is refused."""
    name = name or profile.routing.router
    if name == "istio":
        return IstioRouter(cluster, target)
    if name == "selector":
        return SelectorRouter(cluster, target)
    if name == "replicas":
        total = profile.routing.replicas_total or profile.services.get(target.service).replicas
        return ReplicaRouter(cluster, target, max(int(total), 2), profile.timeouts.rollout_s)
    raise ParameterError(f"unknown router {name!r}; known routers: {', '.join(ROUTERS)}")
