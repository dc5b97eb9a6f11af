"""Delivery metrics from the records: DORA's four keys and the guide's operational figures.

``delivery_report(env=..., since=..., until=..., service=..., commits=commit_times(profile))``
reads the records catalog and returns a ``DeliveryReport`` (tables per service and environment,
each figure against the guide's target and the DORA 2024 band); ``plots`` draws each group.
The rules that turn records into deployments, failed changes and recoveries are in ``events``.
"""
from __future__ import annotations

from .bands import TARGETS
from .events import DeployEvent, Events, read_events, rollback_status
from .metrics import DeliveryMetrics
from .report import DeliveryParams, DeliveryReport, commit_times, delivery_report

__all__ = ["TARGETS", "DeployEvent", "Events", "read_events", "rollback_status", "DeliveryMetrics", "DeliveryParams",
           "DeliveryReport", "commit_times", "delivery_report"]
