"""The incident runbook's parameters, validated before anything is read or changed.

A bad severity, a ``triggered_at`` in the future or an unknown service (checked by ``start``
against the service catalog) is a ParameterError: exit 2, nothing changed.
"""
from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Literal

from pydantic import Field, field_validator

from ...config.parameters import RunbookParams

__all__ = ["IncidentParams", "SEVERITIES", "ALL_SERVICES"]

ALL_SERVICES = "all"
# The guide's §12.3.
SEVERITIES = {
    "P0": "critical: production down, data breach",
    "P1": "high: major feature broken, performance degradation",
    "P2": "medium: minor feature broken",
    "P3": "low: cosmetic",
}
# A page's timestamp and this machine's clock may disagree by a little; more is a typo.
CLOCK_SKEW = timedelta(seconds=5)


class IncidentParams(RunbookParams):
    """What the on-call engineer says about the incident."""

    service: str = Field(ALL_SERVICES, min_length=1, description="One service of the catalog, or 'all' (the default)")
    severity: Literal["P0", "P1", "P2", "P3"] = Field(description="The guide's severity levels")
    summary: str = Field(min_length=3, max_length=500, description="What is wrong, in a line")
    triggered_at: str = Field("", validate_default=True, description="When the page fired (ISO 8601, UTC if no offset); empty = now")
    incident_commander: str = Field("", description="Who leads the response")
    mitigation: Literal["none", "rollback", "scale", "restart"] = "none"
    execute_mitigation: bool = Field(False, description="False: propose the mitigation only, change nothing")
    notify: str = Field("", description="Webhook URL, 'none', or empty for the profile's")
    scale_replicas: int = Field(0, ge=0, le=100, description="mitigation=scale: replicas wanted; 0 = twice the current")
    to_revision: int = Field(0, ge=0, description="mitigation=rollback: a revision; 0 = the one the correlation names")
    lookback_minutes: float = Field(60, gt=0, le=24 * 60, description="How far before the trigger to look for changes")

    @field_validator("triggered_at")
    @classmethod
    def _when(cls, value: str) -> str:
        if not value.strip():
            return datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")
        try:
            moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"not an ISO 8601 time: {value!r} (e.g. 2026-12-01T14:03:00Z)") from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)
        now = datetime.now(timezone.utc)
        if moment > now + CLOCK_SKEW:
            raise ValueError(f"{value} is in the future (now is {now:%Y-%m-%dT%H:%M:%SZ})")
        return moment.astimezone(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")

    @field_validator("notify")
    @classmethod
    def _target(cls, value: str) -> str:
        from urllib.parse import urlsplit

        value = value.strip()
        if value and value.lower() != "none":
            parts = urlsplit(value)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise ValueError("must be an http(s) webhook URL, 'none', or empty for the profile's webhook")
        return value

    @property
    def triggered(self) -> datetime:
        return datetime.fromisoformat(self.triggered_at.replace("Z", "+00:00"))
