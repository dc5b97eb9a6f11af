"""The incident's UTC timeline: what the run did and what the evidence says happened.

Two kinds of moments: the run's own (triggered, acknowledged, snapshot taken, mitigation
started and finished, recovered, notices sent) and the evidence's (a ReplicaSet created by a
deploy, the first failing requests, a warning event). Pure data: the post-mortem renders it,
the notebook shows it as a table.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Moment", "Timeline", "utc", "iso"]

Source = Literal["run", "evidence"]


def utc(moment: datetime | str) -> datetime:
    """A timezone-aware UTC datetime from a datetime or an ISO string (naive = UTC)."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment.strip().replace("Z", "+00:00"))
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


def iso(moment: datetime | None) -> str:
    return utc(moment).strftime("%Y-%m-%d %H:%M:%SZ") if moment else "—"


@dataclass(frozen=True, order=True)
class Moment:
    at: datetime
    what: str
    source: Source = "run"
    detail: str = ""


@dataclass
class Timeline:
    """Moments in time order; ``missing`` names the evidence that could not be read."""

    moments: list[Moment] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)

    def add(self, at: datetime | str | None, what: str, source: Source = "run", detail: str = "") -> None:
        if at is not None:
            self.moments.append(Moment(utc(at), what, source, detail))

    def note_missing(self, evidence: str) -> None:
        if evidence not in self.missing:
            self.missing.append(evidence)

    def ordered(self) -> list[Moment]:
        return sorted(self.moments, key=lambda m: (m.at, m.source != "evidence"))

    def first(self, what: str) -> Moment | None:
        return next((m for m in self.ordered() if m.what == what), None)

    def rows(self, origin: datetime | None = None) -> list[dict[str, str]]:
        """One row per moment: UTC time, offset from ``origin`` (T+s), what, source, detail."""
        rows = []
        for m in self.ordered():
            offset = "" if origin is None else f"{(m.at - utc(origin)).total_seconds():+.0f} s"
            rows.append({"UTC": iso(m.at), "T": offset, "what": m.what, "source": m.source, "detail": m.detail})
        return rows

    def table(self, origin: datetime | None = None) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame(self.rows(origin), columns=["UTC", "T", "what", "source", "detail"])
