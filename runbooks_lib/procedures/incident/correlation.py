"""Which change most likely caused the incident, and what to do about it.

Pure logic over plain data, so it is tested on synthetic timelines: ``breach_start`` finds
when a signal left its SLO, ``incident_breach`` dates this incident's breach from the series of
the versions failing now; ``rank_changes`` scores each change (deploy, rollback, config or
secret change, scaling) by how shortly it came before that moment, whether it touched the
failing service, and whether the failing pods run the image it introduced; ``suggest``
turns the top change into a mitigation with its reason in words and numbers.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Iterable, Literal, Mapping, Sequence

from .timeline import iso

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["Change", "RankedChange", "Suggestion", "Breach", "breach_start", "incident_breach", "rank_changes", "suggest",
           "KIND_WEIGHT"]

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
    replica_set: str | None = None  # the ReplicaSet it activated, when it is a revision


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


def _breaches(series: "pd.Series", threshold: float, below: bool, gap_s: float) -> list[list[datetime]]:
    """[start, last bad point] of each stretch out of bounds; stretches apart by at most ``gap_s``
    of good points are one (a short recovery inside a rate window is noise, not the end)."""
    clean = series.dropna()
    bad = clean < threshold if below else clean > threshold
    runs: list[list[datetime]] = []
    previous = False
    for at, is_bad in bad.items():
        moment = at.to_pydatetime() if hasattr(at, "to_pydatetime") else at
        if is_bad:
            if runs and (previous or (moment - runs[-1][1]).total_seconds() <= gap_s):
                runs[-1][1] = moment
            else:
                runs.append([moment, moment])
        previous = bool(is_bad)
    return runs


def breach_start(series: "pd.Series", threshold: float, *, below: bool = True,
                 reference: datetime | None = None, follow_s: float = 300.0, ended_s: float = SLACK_S,
                 gap_s: float = 0.0) -> datetime | None:
    """When the signal left its bound for the breach that ``reference`` (the trigger) is about.

    ``below=True``: a breach is a value under ``threshold`` (success rate); False: above (p99).
    The breach in progress at ``reference`` (or ended at most ``ended_s`` before it, or still
    going at the series' end); else one beginning within ``follow_s`` after it (a page set at
    the fault, before the signals moved). None otherwise: a breach that ended before the page is
    another incident, and taking its start for this one's would blame the changes before it.
    Without ``reference``, the start of the last breach; None when the signal never breached.
    """
    runs = _breaches(series, threshold, below, gap_s)
    if not runs:
        return None
    if reference is None:
        return runs[-1][0]
    end = series.index[-1]  # the window's end, NaN or not: a version whose pods went stopped before it
    end = end.to_pydatetime() if hasattr(end, "to_pydatetime") else end
    for start, last in runs:
        in_progress = (reference - last).total_seconds() <= ended_s or last == end
        if start <= reference and in_progress:
            return start
    after = [start for start, _ in runs if start > reference]
    if after and (after[0] - reference).total_seconds() <= follow_s:
        return after[0]
    return None


@dataclass(frozen=True)
class Breach:
    """The breach an incident is about: when it began, and each series out of bounds with its own start."""

    at: datetime | None
    series: dict[str, datetime] = field(default_factory=dict)  # pod (or version) -> its own breach's start
    dated_by: str | None = None  # the series whose onset dated it ("all": the service's)

    def versions(self, version_of: Mapping[str, str]) -> set[str]:
        """The image versions of the series in breach (``version_of``: pod -> its image's version)."""
        return {version_of[name] for name in self.series if name in version_of}


def incident_breach(success: "pd.DataFrame | None", p99: "pd.DataFrame | None", *, success_rate_min: float,
                    p99_max_ms: float, reference: datetime, gap_s: float = 0.0,
                    failing: Iterable[str] = (), alive: Iterable[str] | None = None) -> Breach:
    """The onset of this incident's breach, from fine series: one column per pod (or version), "all"
    for the service.

    Each series is judged on its own, so an earlier dip elsewhere, still inside the service's rate
    window, is not taken for this incident's start; and a release failing again in new pods is
    dated by those pods, not by its first failure. The pods known to be failing now (``failing``,
    by a stronger test than one window) date it by the earliest of their onsets; without one of
    them in breach, the earliest onset of any series in breach at ``reference``; else the
    service's own breach (or None). With ``alive`` (the pods that run now), a pod that is gone
    dates nothing: its breach ended with it (the last incident's pods, rolled back seconds ago)."""
    series: dict[str, datetime] = {}
    overall: list[datetime] = []
    for frame, threshold, below in ((success, success_rate_min, True), (p99, p99_max_ms, False)):
        if frame is None:
            continue
        for column in frame:
            start = breach_start(frame[column], threshold, below=below, reference=reference, gap_s=gap_s)
            if start is None:
                continue
            if column == "all":
                overall.append(start)
            elif alive is None or column in set(alive):
                series[column] = min(start, series.get(column, start))
    known = {name: at for name, at in series.items() if name in set(failing)}
    for candidates in (known, series):
        if candidates:
            first = min(candidates, key=candidates.__getitem__)
            return Breach(candidates[first], series, first)
    return Breach(min(overall), series, "all") if overall else Breach(None, series)


def _time_score(seconds_before: float) -> float:
    if seconds_before < -SLACK_S:
        return 0.05  # after the breach began: it cannot have caused it
    return math.exp(-max(seconds_before, 0.0) / TIME_SCALE_S)


def rank_changes(changes: Iterable[Change], breach_at: datetime | None, *, services: Sequence[str] = (),
                 failing_versions: Iterable[str] = (), failing_replica_sets: Iterable[str] | None = None,
                 reference: datetime | None = None) -> list[RankedChange]:
    """Changes scored 0..1, best first, each with the evidence in words.

    ``breach_at`` is when the signals degraded (None when no metric could tell: then
    ``reference``, the trigger time, stands in, and the evidence says so). A change counts twice as
    likely when the failing pods are its own: those of the ReplicaSet it activated, when the failing
    pods' ReplicaSets are known (``failing_replica_sets``: a record, which names none, is then not
    blamed by its version alone); else those running the image version it introduced. The shown score stops at 1; the order uses the whole score,
    so that two changes at 1 are ranked by their evidence, not by chance.
    """
    anchor = breach_at or reference
    failing = {v for v in failing_versions if v}
    failing_sets = None if failing_replica_sets is None else set(failing_replica_sets)
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
        if failing_sets is not None:
            if change.replica_set in failing_sets:
                score *= 2
                words.append(f"the failing pods are its ReplicaSet's ({change.replica_set}, image {change.version})")
        elif change.version and change.version in failing:
            score *= 2
            words.append(f"the failing pods run the image it introduced ({change.version})")
        if change.completed_at and breach_at:
            after_complete = (breach_at - change.completed_at).total_seconds()
            words.append(f"{change.version or 'it'} reached 100 % {after_complete:.0f} s before the breach"
                         if after_complete >= 0 else f"the breach began during its rollout ({-after_complete:.0f} s before 100 %)")
        ranked.append((score, RankedChange(change, round(min(score, 1.0), 3), seconds, "; ".join(words))))
    return [r for _, r in sorted(ranked, key=lambda pair: pair[0], reverse=True)]


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
