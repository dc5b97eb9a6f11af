"""Canary promotion: the judge (pure, three layers), the metrics provider and the procedure."""
from __future__ import annotations

from .judge import SPRT, Check, Comparison, Decision, Judge, Policy, Window, compare, expected_requests, replay
from .promote import CanaryParams, CanaryRun, abort_canary, promote_canary
from .provider import MetricsProvider, PrometheusProvider, Reading, Series

__all__ = ["SPRT", "Check", "Comparison", "Decision", "Judge", "Policy", "Window", "compare", "expected_requests",
           "replay", "CanaryParams", "CanaryRun", "abort_canary", "promote_canary", "MetricsProvider",
           "PrometheusProvider", "Reading", "Series"]
