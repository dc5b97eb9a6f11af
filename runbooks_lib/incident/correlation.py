"""Which change most likely caused the incident, and what to do about it.

Pure logic over plain data, so it is tested on synthetic timelines: ``breach_start`` finds
when a signal left its SLO; ``rank_changes`` scores each change (deploy, rollback, config or
secret change, scaling) by how shortly it came before that moment, whether it touched the
failing service, and whether the failing pods run the version it introduced; ``suggest``
turns the top change into a mitigation with its reason in words and numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable, Literal, Sequence

from .timeline import iso

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Change", "RankedChange", "Suggestion", "breach_start", "rank_changes", "suggest", "KIND_WEIGHT"]

ChangeKind = Literal["deploy", "rollback", "config", "secret", "scale", "restart"]

# How often each kind of change causes an incident, roughly: a new version first.
KIND_WEIGHT: dict[str, float] = {"deploy": 1.0, "config": 0.8, "secret": 0.8, "rollback": 0.5, "restart": 0.3, "scale": 0.3}
# A change an hour before still counts a little; one a minute before counts most.
TIME_SCALE_S = 900.0
# Clocks and scrape intervals blur "before": a change this long after the breach still counts.
SLACK_S = 30.0


@dataclass(frozen=True)
class Change:
    """Something that changed in the environment, with when and what."""

    at: datetime
    kind: str
    service: str
    description: str
    revision: int | None = None
    version: str | None = None
    previous_revision: int | None = None
    previous_version: str | None = None
    completed_at: datetime | None = None  # when the rollout reached 100 %, when known
    source: str = "ReplicaSet history"


@dataclass(frozen=True)
class RankedChange:
    change: Change
    score: float
    seconds_before: float | None
    evidence: str


@dataclass(frozen=True)
class Suggestion:
    action: Literal["rollback", "scale", "restart", "none"]
    service: str | None
    reason: str
    to_revision: int | None = None
    confidence: float = 0.0
    cites: list[str] = field(default_factory=list)


def breach_start(series: "pd.Series", threshold: float, *, below: bool = True,
                 reference: datetime | None = None, follow_s: float = 300.0) -> datetime | None:
    """When the signal left its bound for the breach that ``reference`` (the trigger) is about.

    ``below=True``: a breach is a value under ``threshold`` (success rate); False: above (p99).
    The breach in progress at ``reference``; else one beginning within ``follow_s`` after it (a
    page set at the fault, before the signals moved); else the last one before it; else the
    first after. None when the signal never breached.
    """
    clean = series.dropna()
    if clean.empty:
        return None
    bad = clean < threshold if below else clean > threshold
    runs: list[list[datetime]] = []  # [start, last bad point]
    previous = False
    for at, is_bad in bad.items():
        moment = at.to_pydatetime() if hasattr(at, "to_pydatetime") else at
        if is_bad:
            if previous:
                runs[-1][1] = moment
            else:
                runs.append([moment, moment])
        previous = bool(is_bad)
    if not runs:
        return None
    if reference is None:
        return runs[-1][0]
    last_point = clean.index[-1]
    for start, last in runs:
        ongoing = last == last_point
        if start <= reference and (reference <= last or ongoing):
            return start
    after = [start for start, _ in runs if start > reference]
    if after and (after[0] - reference).total_seconds() <= follow_s:
        return after[0]
    before = [start for start, _ in runs if start <= reference]
    return before[-1] if before else after[0]


def _time_score(seconds_before: float) -> float:
    if seconds_before < -SLACK_S:
        return 0.05  # after the breach began: it cannot have caused it
    return math.exp(-max(seconds_before, 0.0) / TIME_SCALE_S)


def rank_changes(changes: Iterable[Change], breach_at: datetime | None, *, services: Sequence[str] = (),
                 failing_versions: Iterable[str] = (), reference: datetime | None = None) -> list[RankedChange]:
    """Changes scored 0..1, best first, each with the evidence in words.

    ``breach_at`` is when the signals degraded (None when no metric could tell: then
    ``reference``, the trigger time, stands in, and the evidence says so).
    """
    anchor = breach_at or reference
    failing = {v for v in failing_versions if v}
    ranked = []
    for change in changes:
        seconds = (anchor - change.at).total_seconds() if anchor else None
        score = KIND_WEIGHT.get(change.kind, 0.3) * (_time_score(seconds) if seconds is not None else 0.5)
        words = [f"{change.kind} of {change.service}: {change.description}"]
        if seconds is not None:
            relation = "before" if seconds >= 0 else "after"
            what = "the signals degraded" if breach_at else "the incident was triggered (no signal data)"
            words.append(f"{abs(seconds):.0f} s {relation} {what}")
        if services and change.service not in services:
            score *= 0.3
            words.append("another service")
        if change.version and change.version in failing:
            score = min(1.0, score * 2)
            words.append(f"the failing pods run {change.version}")
        if change.completed_at and breach_at:
            after_complete = (breach_at - change.completed_at).total_seconds()
            words.append(f"{change.version or 'it'} reached 100 % {after_complete:.0f} s before the breach"
                         if after_complete >= 0 else f"the breach began during its rollout ({-after_complete:.0f} s before 100 %)")
        ranked.append(RankedChange(change, round(min(score, 1.0), 3), seconds, "; ".join(words)))
    return sorted(ranked, key=lambda r: r.score, reverse=True)


def suggest(ranked: Sequence[RankedChange], breach_at: datetime | None, *, unhealthy_services: Sequence[str] = (),
            saturated_services: Sequence[str] = (), prior_incidents: Sequence[str] = ()) -> Suggestion:
    """A mitigation with its reason: roll back the top change, else scale or restart, else none."""
    cites = list(prior_incidents)
    top = ranked[0] if ranked else None
    if top is not None and top.score >= 0.2 and top.change.kind in ("deploy", "config", "secret") \
            and top.change.previous_revision is not None:
        c = top.change
        when = (f"{'error rate rose' if breach_at else 'the incident was triggered'} "
                f"{abs(top.seconds_before or 0):.0f} s after {c.version or c.description} "
                f"{'reached 100 %' if c.completed_at and breach_at and c.completed_at <= breach_at else 'was deployed'}")
        reason = (f"{when} (at {iso(c.at)}): roll back {c.service} to revision {c.previous_revision}"
                  f"{f' ({c.previous_version})' if c.previous_version else ''}")
        return Suggestion("rollback", c.service, reason, c.previous_revision, top.score, cites)
    if saturated_services:
        service = saturated_services[0]
        return Suggestion("scale", service, f"{service} is slow with no recent change to blame: add replicas", None, 0.5, cites)
    if unhealthy_services:
        service = unhealthy_services[0]
        return Suggestion("restart", service, f"{service} has unhealthy pods and no recent change to blame: "
                                              "a rolling restart replaces them", None, 0.4, cites)
    why = "no change shortly before the incident" if not ranked else f"the best candidate scores only {top.score:.2f}" if top else ""
    return Suggestion("none", None, f"{why}: look beyond this cluster (dependencies, traffic, data)", None, 0.0, cites)


def ranked_table(ranked: Sequence[RankedChange]) -> "pd.DataFrame":
    import pandas as pd

    return pd.DataFrame([{
        "rank": i + 1, "score": r.score, "when (UTC)": iso(r.change.at), "kind": r.change.kind, "service": r.change.service,
        "change": r.change.description, "revision": r.change.revision, "evidence": r.evidence, "source": r.change.source,
    } for i, r in enumerate(ranked)], columns=["rank", "score", "when (UTC)", "kind", "service", "change", "revision",
                                               "evidence", "source"]).set_index("rank")


def within(changes: Iterable[Change], start: datetime, end: datetime) -> list[Change]:
    return [c for c in changes if start <= c.at <= end + timedelta(seconds=SLACK_S)]
