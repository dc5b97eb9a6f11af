"""Four-eyes approvals: who may approve a run stopped at a gate, for how long, and the record of it.

A profile states its rule (``approvals: {required, four_eyes, approvers, expires_after_s}``).
A run that reaches a gate headless journals ``gate-awaiting`` (what would change, and the state
of the cluster the approval is for) and stops with exit 3. ``runbook approve RUN_ID --as NAME``
checks the rule — under four eyes the approver is another person than the run's operator; when
approvers are listed, one of them — and journals ``approved`` with when it expires; a small
approval document is chained into the ledger, so the approval is as tamper-evident as a record.
``runbook resume`` then finds the approval here (``gate_status``) and the gate lets the change go.

Names are compared as people write them: case and surrounding blanks do not make a second person.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import GuardRefused, ParameterError
from ..config.clock import iso, utcnow
from .journal import find_journal

if TYPE_CHECKING:
    from ..config.profiles import Approvals

__all__ = ["Approval", "GateStatus", "check_approver", "gate_status", "pending_gate", "approve", "same_person",
           "what_changes"]


def same_person(a: str | None, b: str | None) -> bool:
    return bool(a and b) and a.strip().casefold() == b.strip().casefold()  # type: ignore[union-attr]


def check_approver(rule: "Approvals", operator: str | None, approver: str) -> None:
    """Raise GuardRefused (exit 4) when ``approver`` may not approve a run of ``operator``."""
    if not approver or not approver.strip():
        raise ParameterError("an approval needs the approver's name (--as NAME)")
    if rule.four_eyes and same_person(operator, approver):
        raise GuardRefused(f"{approver} started this run and cannot approve it: this environment requires four eyes "
                           "(another person approves)")
    if rule.approvers and not any(same_person(approver, allowed) for allowed in rule.approvers):
        raise GuardRefused(f"{approver} may not approve changes here; approvers: {', '.join(rule.approvers)}")


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def what_changes(entries: list[dict[str, Any]], gate: str) -> str | None:
    """What the run said it would change at ``gate`` (the API server's dry-run diff), for the approver."""
    waiting = [e for e in entries if e.get("event") == "gate-awaiting" and e.get("gate") == gate]
    return waiting[-1].get("what_changes") if waiting else None


@dataclass(frozen=True)
class Approval:
    """One person's consent to one gate of one run, valid until ``expires_at``."""

    run_id: str
    gate: str
    approver: str
    at: datetime
    expires_at: datetime
    reason: str = ""
    typed_by: str | None = None  # the OS user who ran `runbook approve` (--as names someone; this says who typed)

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) > self.expires_at

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        return f"approved by {self.approver} at {iso(self.at)} (valid until {iso(self.expires_at)}){why}"

    def as_entry(self) -> dict[str, Any]:
        return {"gate": self.gate, "approver": self.approver, "approved_at": iso(self.at),
                "expires_at": iso(self.expires_at), "reason": self.reason, "typed_by": self.typed_by,
                "approved_run": self.run_id}

    @classmethod
    def from_entry(cls, run_id: str, entry: dict[str, Any]) -> "Approval":
        return cls(run_id=entry.get("approved_run") or run_id, gate=entry["gate"], approver=entry["approver"],
                   at=_parse(entry.get("approved_at") or entry.get("at")) or utcnow(),
                   expires_at=_parse(entry["expires_at"]) or utcnow(), reason=entry.get("reason") or "",
                   typed_by=entry.get("typed_by"))


@dataclass(frozen=True)
class GateStatus:
    """What a run's journal says about one gate."""

    gate: str
    awaiting: dict[str, Any] | None = None  # the gate-awaiting entry: what would change, the state then
    approval: Approval | None = None  # given after the last gate-awaiting
    passed: Approval | None = None  # the run went through the gate with this approval


def gate_status(entries: list[dict[str, Any]], gate: str, run_id: str) -> GateStatus:
    """The gate ``gate`` as the entries of run ``run_id``'s journal leave it."""
    awaiting = approval = passed = None
    for entry in entries:
        if entry.get("gate") != gate:
            continue
        event = entry.get("event")
        if event == "gate-awaiting":
            awaiting, approval = entry, None
        elif event == "approved":
            approval = Approval.from_entry(run_id, entry)
        elif event == "gate-passed":
            passed = Approval.from_entry(run_id, entry)
    return GateStatus(gate, awaiting, approval, passed)


def pending_gate(entries: list[dict[str, Any]]) -> str | None:
    """The gate a run stopped at (its last ``gate-awaiting``), if the run ended awaiting approval."""
    finished = [e for e in entries if e.get("event") == "run-finished"]
    if not finished or finished[-1].get("outcome") != "awaiting approval":
        return None
    waiting = [e for e in entries if e.get("event") == "gate-awaiting"]
    return waiting[-1]["gate"] if waiting else None


def run_facts(entries: list[dict[str, Any]]) -> dict[str, Any]:
    """The ``run-started`` entry (runbook, env, operator, record, parameters)."""
    started = [e for e in entries if e.get("event") == "run-started"]
    if not started:
        raise ParameterError("the run's journal has no start: it is not a run of `runbook run` or start()")
    return started[0]


def approve(run_id: str, approver: str | None = None, reason: str = "") -> Approval:
    """Approve the gate run ``run_id`` stopped at: rule checked, journaled, chained in the ledger."""
    from ..config.profiles import load_profile
    from ..records.identity import local_user, operator_identity, operator_name

    journal = find_journal(run_id)
    entries = journal.entries()
    facts = run_facts(entries)
    gate = pending_gate(entries)
    if gate is None:
        outcome = next((e.get("outcome") for e in reversed(entries) if e.get("event") == "run-finished"), "still running")
        raise ParameterError(f"run {run_id} is not awaiting approval (its outcome: {outcome}); nothing to approve")
    profile = load_profile(facts["env"])
    rule = profile.approvals
    name = (approver or operator_name(operator_identity(profile, timeout=1.0))).strip()
    check_approver(rule, facts.get("operator"), name)
    now = utcnow()
    approval = Approval(run_id, gate, name, now, now + timedelta(seconds=rule.expires_after_s), reason.strip(),
                        typed_by=local_user())
    journal.write(event="approved", **approval.as_entry())
    _chain_in_ledger(facts, approval)
    _tell(profile, facts, approval)
    return approval


def _tell(profile: Any, facts: dict[str, Any], approval: Approval) -> None:
    """The people told the run awaits approval learn who gave it (a failed delivery is not an error)."""
    from ..platform.notify import Notice, notifier_for

    params = facts.get("notebook_parameters") or {}
    subject = " ".join(str(v) for v in (facts.get("runbook"), params.get("service"), params.get("version")) if v)
    notifier_for(None, profile).send(Notice(
        severity="approval", summary=f"{subject}: gate {approval.gate} {approval.describe()}", status="approved",
        service=str(params.get("service") or facts.get("runbook")), env=facts["env"], record=facts.get("record"),
        detail=f"runbook resume {approval.run_id}"))


def _chain_in_ledger(facts: dict[str, Any], approval: Approval) -> Path:
    """An approval document beside the run's record, chained into the ledger like a record."""
    from ..records.ledger import Ledger, records_root

    root = records_root(facts["env"])
    record = facts.get("record")
    folder = (root / record).parent if record else root / facts["env"] / approval.at.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    document = folder / f"approval-{approval.run_id}-{approval.gate}-{approval.at.strftime('%H%M%S%fZ')}.json"
    document.write_text(json.dumps({"kind": "approval", "runbook": facts.get("runbook"), "env": facts["env"],
                                    "run_id": approval.run_id, "operator": facts.get("operator"),
                                    "record": record, **approval.as_entry()}, indent=1, sort_keys=True) + "\n")
    Ledger(root).append(document, kind="approval", run_id=approval.run_id, gate=approval.gate,
                        approver=approval.approver)
    return document

