"""Failed requests seen by a load generator during a change (the sandbox has one).

The report is ``{"<service>": {"requests": N, "failed": N, "by_version": {...}}}`` from the
URL in the profile's ``load_report_url``; a profile without one (production) reports None:
there, the golden signals from Prometheus tell the story.
"""
from __future__ import annotations

from datetime import datetime
from typing import Any

from ..errors import BackendUnavailable

__all__ = ["load_report", "failed_requests"]


def load_report(url: str | None, since: datetime | None = None) -> dict[str, Any] | None:
    import requests

    if not url:
        return None
    params = {"since": since.isoformat().replace("+00:00", "Z")} if since else {}
    try:
        reply = requests.get(url, params=params, timeout=5)
        reply.raise_for_status()
        return reply.json()
    except requests.RequestException as e:  # requests' JSONDecodeError is one too
        raise BackendUnavailable(f"load report at {url} unavailable ({type(e).__name__})") from e


def failed_requests(url: str | None, service: str, since: datetime) -> tuple[int, int] | None:
    """(requests, failed) for one service since ``since``, or None without a load generator."""
    report = load_report(url, since)
    if report is None:
        return None
    entry = report.get(service) or {}
    return int(entry.get("requests", 0)), int(entry.get("failed", 0))
