"""Timestamps as the API wants them: ``metav1.Time`` (seconds) and ``metav1.MicroTime`` (microseconds)."""
from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["now_rfc3339", "now_rfc3339_micro", "parse_rfc3339"]


def now_rfc3339() -> str:
    """``2026-01-02T03:04:05Z``: conditions, container states, Events' timestamps."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339_micro() -> str:
    """``2026-01-02T03:04:05.123456Z``: a Lease's ``renewTime``/``acquireTime`` (MicroTime), an
    events.k8s.io ``eventTime``."""
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_rfc3339(text: str) -> datetime:
    """An API timestamp (with or without fraction) as an aware datetime."""
    return datetime.fromisoformat(text.replace("Z", "+00:00"))
