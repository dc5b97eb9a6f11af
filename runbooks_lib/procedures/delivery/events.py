"""What the records say happened: deployments, rollbacks, canary runs and drills, from catalog rows.

Pure functions over the catalog's rows (``Catalog().rows(...)``), no I/O, so the rules below are
tested on synthetic rows and a hand count. The rules, in words:

- A **deployment** is a ``deploy`` or ``canary_promotion`` record that is not a dry run and that
  ran (its outcome is not refused, rejected, awaiting approval...). It ended *serving* when its
  outcome is ``succeeded`` / ``promoted``; it *reached users and was rolled back* when it carries
  the figure ``rolled_back`` (an automatic rollback, a blue-green flip back) or is a canary aborted
  after serving requests (``time_to_abort_s`` set); otherwise it *failed before serving*.
- A deployment is a **failed change** (DORA's change fail rate) when it was rolled back, or when a
  later record undoes it: a ``rollback`` record linking it with relation ``undoes``, or a deploy
  linking it with relation ``fixes`` (a hotfix).
- **Recovery time** is the figure the records hold: ``time_to_rollback_s`` (or ``flip_back_s``) of
  the automatic rollback, ``time_to_abort_s`` of an aborted canary, ``time_to_rollback_s`` of the
  first succeeded rollback record undoing it (measured from the rollback's start; the time from
  serving to that start is kept apart as ``time_to_decide_s``), or the hotfix's serving time minus
  the failed deployment's.
- **Lead time** is serving − commit time of the deployed version (from the image catalog).
  Serving is the record's start + ``time_to_healthy_s`` when measured, else its finish.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

__all__ = [
    "DEPLOY_RUNBOOKS", "ROLLBACK_RUNBOOK", "CANARY_RUNBOOK", "DRILL_RUNBOOK", "NOT_RUN",
    "DeployEvent", "RollbackEvent", "CanaryEvent", "DrillEvent", "Events", "read_events", "moment", "rollback_status",
]

DEPLOY_RUNBOOKS = ("deploy", "canary_promotion")
ROLLBACK_RUNBOOK = "rollback"
CANARY_RUNBOOK = "canary_promotion"
DRILL_RUNBOOK = "dr_drill"
RUNBOOKS = frozenset({*DEPLOY_RUNBOOKS, ROLLBACK_RUNBOOK, DRILL_RUNBOOK})
# Outcomes of runs that changed nothing: they are not deployments (nor failed ones).
NOT_RUN = frozenset({"refused", "rejected", "awaiting approval", "running", "no summary"})
SERVING_OUTCOMES = frozenset({"succeeded", "promoted"})

CommitTimes = Mapping[tuple[str, str], datetime]


def moment(text: Any) -> datetime | None:
    """A record's ISO time (``...Z``) as an aware datetime, or None."""
    if not text:
        return None
    try:
        return datetime.fromisoformat(str(text))  # Python ≥ 3.11 reads the trailing Z
    except ValueError:
        return None


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


@dataclass(frozen=True)
class DeployEvent:
    record: str
    env: str
    service: str
    version: str | None
    runbook: str
    strategy: str
    outcome: str
    started: datetime
    serving: datetime | None  # None unless it ended serving
    status: str  # "serving" | "rolled back" | "failed before serving"
    sealed: bool
    lead_time_s: float | None = None
    failed_change: bool = False
    failure: str = ""  # why it counts as a failed change
    recovery_s: float | None = None
    time_to_decide_s: float | None = None  # serving → the rollback (or hotfix) that undid it

    @property
    def reached_users(self) -> bool:
        return self.status != "failed before serving"


@dataclass(frozen=True)
class RollbackEvent:
    """A rollback, by the rollback runbook or automatically inside a deploy."""

    record: str
    env: str
    service: str
    started: datetime
    source: str  # "rollback runbook" | "automatic (deploy)"
    status: str  # see rollback_status
    seconds: float | None
    undoes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CanaryEvent:
    record: str
    env: str
    service: str
    version: str | None
    started: datetime
    outcome: str
    time_to_abort_s: float | None


@dataclass(frozen=True)
class DrillEvent:
    record: str
    env: str
    service: str
    started: datetime
    outcome: str
    rto_s: float | None
    rpo_s: float | None
    restore_s: float | None = None  # the restore (or PITR replay) of the drill, when it made one


@dataclass(frozen=True)
class Events:
    deployments: list[DeployEvent]
    rollbacks: list[RollbackEvent]
    canaries: list[CanaryEvent]
    drills: list[DrillEvent]
    records_read: int
    unsealed: int  # records counted here that the ledger does not hold


def rollback_status(row: Mapping[str, Any]) -> str:
    """``succeeded``, ``failed``, ``refused``, ``awaiting approval`` or ``blocked by migration``.

    The hook for the migration guard: a rollback it stops may say so by the outcome ``blocked``,
    the figure ``blocked_by_migration`` or a note whose name mentions a migration; all three are
    counted as "blocked by migration" (the deployment then stays a failed change, not recovered).
    """
    figures = row.get("figures") or {}
    notes = row.get("notes") or {}
    outcome = str(row.get("outcome") or "")
    if outcome == "blocked" or figures.get("blocked_by_migration") or any("migration" in str(n) for n in notes):
        return "blocked by migration"
    if outcome in ("succeeded", "failed"):
        return outcome
    if outcome == "awaiting approval":
        return "awaiting approval"
    return "refused" if outcome in NOT_RUN else "failed"


def _serving_time(row: Mapping[str, Any], started: datetime) -> datetime | None:
    healthy = _number((row.get("figures") or {}).get("time_to_healthy_s"))
    if healthy is not None:
        return started + timedelta(seconds=healthy)
    return moment(row.get("finished")) or started


def _deployment_status(row: Mapping[str, Any]) -> str:
    figures = row.get("figures") or {}
    if row.get("outcome") in SERVING_OUTCOMES:
        return "serving"
    if figures.get("rolled_back"):
        return "rolled back"
    if row.get("runbook") == CANARY_RUNBOOK and row.get("outcome") == "aborted" and \
            _number(figures.get("time_to_abort_s")) is not None:
        return "rolled back"
    return "failed before serving"


def _own_recovery(row: Mapping[str, Any]) -> float | None:
    figures = row.get("figures") or {}
    for name in ("time_to_rollback_s", "flip_back_s", "time_to_abort_s"):
        if (value := _number(figures.get(name))) is not None:
            return value
    return None


def _is_deployment(row: Mapping[str, Any]) -> bool:
    return row.get("runbook") in DEPLOY_RUNBOOKS and row.get("outcome") not in NOT_RUN


def _base_deployment(row: Mapping[str, Any], started: datetime, commits: CommitTimes | None) -> DeployEvent:
    params = row.get("parameters") or {}
    status = _deployment_status(row)
    serving = _serving_time(row, started) if status == "serving" else None
    version = params.get("version")
    service = str(row.get("service") or params.get("service") or "")
    lead = None
    if serving is not None and commits is not None and version is not None:
        committed = commits.get((service, str(version)))
        if committed is not None and committed <= serving:
            lead = (serving - committed).total_seconds()
    strategy = "canary" if row.get("runbook") == CANARY_RUNBOOK else str(params.get("strategy") or "rolling")
    failed = status == "rolled back"
    return DeployEvent(
        record=str(row.get("record")), env=str(row.get("env")), service=service,
        version=None if version is None else str(version), runbook=str(row.get("runbook")), strategy=strategy,
        outcome=str(row.get("outcome")), started=started, serving=serving, status=status,
        sealed=bool(row.get("sealed")), lead_time_s=lead, failed_change=failed,
        failure=("canary aborted" if strategy == "canary" else "rolled back by the deploy") if failed else "",
        recovery_s=_own_recovery(row) if failed else None,
    )


def _undone(deployment: DeployEvent, undoers: list[tuple[str, datetime, Mapping[str, Any]]],
            serving_of: Mapping[str, datetime | None]) -> DeployEvent:
    """A serving deployment that a later rollback or hotfix undid: a failed change."""
    from dataclasses import replace

    recovery = decide = None
    kinds = []
    for relation, started, row in sorted(undoers, key=lambda u: u[1]):
        if relation == "undoes":
            status = rollback_status(row)
            kinds.append(f"rollback {status}")
            seconds = _number((row.get("figures") or {}).get("time_to_rollback_s"))
            if recovery is None and status == "succeeded" and seconds is not None:
                recovery, decide = seconds, _since(deployment.serving, started)
        elif relation == "fixes":
            kinds.append("hotfix")
            fixed_at = serving_of.get(str(row.get("record")))
            if recovery is None and fixed_at is not None and deployment.serving is not None:
                recovery, decide = (fixed_at - deployment.serving).total_seconds(), _since(deployment.serving, started)
    return replace(deployment, failed_change=True, failure="undone later: " + ", ".join(kinds),
                   recovery_s=recovery, time_to_decide_s=decide)


def _since(earlier: datetime | None, later: datetime) -> float | None:
    return None if earlier is None else (later - earlier).total_seconds()


def read_events(rows: Iterable[Mapping[str, Any]], commits: CommitTimes | None = None,
                since: datetime | None = None, until: datetime | None = None) -> Events:
    """Classify catalog rows; only events that started in [since, until) are kept, but links from
    records after ``until`` still count (a deploy in the window undone the day after failed)."""
    def inside(started: datetime) -> bool:
        return (since is None or started >= since) and (until is None or started < until)

    deployments: list[DeployEvent] = []
    rollbacks: list[RollbackEvent] = []
    canaries: list[CanaryEvent] = []
    drills: list[DrillEvent] = []
    undoers: dict[str, list[tuple[str, datetime, Mapping[str, Any]]]] = {}
    serving_of: dict[str, datetime | None] = {}  # every deployment's, in the window or not (hotfixes)
    read = unsealed = 0
    for row in rows:
        runbook = row.get("runbook")
        if runbook not in RUNBOOKS and not row.get("links"):
            continue  # health checks, incidents...: nothing delivery-related (most of a catalog)
        if (row.get("parameters") or {}).get("dry_run"):
            continue  # a dry run changed nothing: no deployment, no rollback, no undoing
        started = moment(row.get("started"))
        if started is None:
            continue
        deployment = _is_deployment(row)
        if deployment and row.get("outcome") in SERVING_OUTCOMES:
            serving_of[str(row.get("record"))] = _serving_time(row, started)
        for link in row.get("links") or ():
            relation = link.get("relation")
            if relation == "undoes" and runbook == ROLLBACK_RUNBOOK or relation == "fixes" and deployment:
                undoers.setdefault(str(link.get("record")), []).append((relation, started, row))
        if not inside(started):
            continue
        read += 1
        unsealed += not row.get("sealed")
        figures = row.get("figures") or {}
        env, service = str(row.get("env")), str(row.get("service") or "")
        if deployment:
            deployments.append(_base_deployment(row, started, commits))
            if figures.get("rolled_back") and _number(figures.get("time_to_rollback_s")) is not None:
                rollbacks.append(RollbackEvent(str(row.get("record")), env, service, started, "automatic (deploy)",
                                          "succeeded", _number(figures.get("time_to_rollback_s"))))
        if runbook == ROLLBACK_RUNBOOK:
            links = tuple(str(link.get("record")) for link in row.get("links") or [] if link.get("relation") == "undoes")
            rollbacks.append(RollbackEvent(str(row.get("record")), env, service, started, "rollback runbook",
                                      rollback_status(row), _number(figures.get("time_to_rollback_s")), links))
        elif runbook == CANARY_RUNBOOK and row.get("outcome") not in NOT_RUN:
            canaries.append(CanaryEvent(str(row.get("record")), env, service, (row.get("parameters") or {}).get("version"),
                                      started, str(row.get("outcome")), _number(figures.get("time_to_abort_s"))))
        elif runbook == DRILL_RUNBOOK and row.get("outcome") not in NOT_RUN:
            drills.append(DrillEvent(str(row.get("record")), env, service, started, str(row.get("outcome")),
                                _number(figures.get("rto_s")), _number(figures.get("rpo_s")),
                                _number(figures.get("restore_s"))))
    deployments = [_undone(d, undoers[d.record], serving_of) if d.status == "serving" and d.record in undoers else d
                   for d in deployments]
    key = (lambda e: e.started)
    return Events(sorted(deployments, key=key), sorted(rollbacks, key=key), sorted(canaries, key=key),
                  sorted(drills, key=key), read, unsealed)
