"""Time as every room reads and writes it: now in UTC, ISO 8601 with a Z, Kubernetes' times parsed.

In the config room because records, platform, run and procedures all need it and it needs nothing.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

__all__ = ["utcnow", "iso", "parse_time"]


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime | None, timespec: str = "milliseconds") -> str | None:
    """``2026-12-07T08:25:39.123Z`` (``timespec`` as datetime.isoformat's), None for None."""
    return moment.isoformat(timespec=timespec).replace("+00:00", "Z") if moment else None


def parse_time(stamp: Any) -> datetime | None:
    """A time as Kubernetes and the records write it (``...Z`` or an offset, or a datetime), in
    UTC when it names no zone; None when it is empty or not a time."""
    if not stamp:
        return None
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    try:
        moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
