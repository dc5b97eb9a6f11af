"""Four-eyes approvals: who may approve a run stopped at a gate, what exactly they approve, and the proof.

A profile states its rule (``approvals: {required, four_eyes, approvers, expires_after_s,
signing_key}``). A run that reaches a gate headless journals ``gate-awaiting``: what would change,
the state of the cluster, and the digest of the change (``run.change``: the notebook, the
parameters, the profile, the cluster, the diff with its migrations). ``runbook approve RUN_ID``
takes the approver from their own Vault login (``VAULT_TOKEN``: who Vault says it belongs to,
never a typed name; ``--as`` is only checked against it), checks the rule — under four eyes the
approver is another identity entity than the run's operator, whose own login the run recorded;
when approvers are listed, one of them — and signs a statement of the approval (run, gate, change
digest, approver, expiry) with Vault transit's approvals key, which only approvers may sign with.
The statement and its signature are journaled and chained into the ledger. ``runbook resume``
then finds the approval (``gate_status``), verifies the signature, and the gate lets the change
go only if the change's digest, computed again, is the one signed.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from ..config.clock import iso, utcnow
from ..errors import GuardRefused, ParameterError
from .journal import find_journal

if TYPE_CHECKING:
    from ..config.profiles import Approvals
    from ..records.identity import Person

__all__ = ["Approval", "GateStatus", "check_approver", "gate_status", "pending_gate", "approve", "same_person",
           "what_changes", "statement"]


def same_person(a: str | None, b: str | None) -> bool:
    return bool(a and b) and a.strip().casefold() == b.strip().casefold()  # type: ignore[union-attr]


def check_approver(rule: "Approvals", operator: str | None, operator_entity: str | None, approver: "Person") -> None:
    """Raise GuardRefused (exit 4) when ``approver`` (a Vault login) may not approve a run of ``operator``.

    Four eyes compares identity entities: one person's two logins are one person, and a run whose
    operator no login proved cannot show that its approver is someone else."""
    if not approver.authenticated:
        token = approver.display_name or "a plain token"
        raise GuardRefused(f"an approval needs the approver's own Vault login, and this token ({token}) belongs to no "
                           "person: log in (`runbook sandbox login NAME` in the sandbox, else your Vault login) and set "
                           "VAULT_TOKEN")
    if rule.four_eyes:
        if not operator_entity:
            raise GuardRefused(f"the run's operator ({operator}) was not authenticated by a Vault login, so four eyes "
                               "cannot be shown: start the run again with a person's VAULT_TOKEN")
        if operator_entity == approver.entity_id:
            raise GuardRefused(f"{approver.name} started this run and cannot approve it: this environment requires four "
                               "eyes (another person approves)")
    if rule.approvers and not any(same_person(approver.name, allowed) for allowed in rule.approvers):
        raise GuardRefused(f"{approver.name} may not approve changes here; approvers: {', '.join(rule.approvers)}")


def _parse(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")) if stamp else None


def what_changes(entries: list[dict[str, Any]], gate: str) -> str | None:
    """What the run said it would change at ``gate`` (the API server's dry-run diff), for the approver."""
    waiting = [e for e in entries if e.get("event") == "gate-awaiting" and e.get("gate") == gate]
    return waiting[-1].get("what_changes") if waiting else None


def statement(run_id: str, gate: str, digest: str | None, approver: str, approver_entity: str | None,
              at: str | None, expires_at: str | None, reason: str) -> bytes:
    """What an approver signs: canonical JSON, so the same approval always reads the same bytes."""
    return json.dumps({"kind": "approval", "run_id": run_id, "gate": gate, "change_digest": digest,
                       "approver": approver, "approver_entity": approver_entity, "approved_at": at,
                       "expires_at": expires_at, "reason": reason}, sort_keys=True, separators=(",", ":")).encode()


@dataclass(frozen=True)
class Approval:
    """One person's consent to one gate of one run, for one change (its digest), valid until ``expires_at``."""

    run_id: str
    gate: str
    approver: str
    at: datetime
    expires_at: datetime
    reason: str = ""
    typed_by: str | None = None  # the OS user who ran `runbook approve` (the login says who approved)
    approver_entity: str | None = None  # the approver's Vault identity entity
    digest: str | None = None  # the change digest approved (run.change)
    signature: str | None = None  # Vault transit's signature of the statement
    document: str | None = None  # the approval document chained into the ledger (below the records root)
    parts: dict[str, str] = field(default_factory=dict)  # the approved digest's parts, to name what differs

    def expired(self, now: datetime | None = None) -> bool:
        return (now or utcnow()) > self.expires_at

    def describe(self) -> str:
        why = f": {self.reason}" if self.reason else ""
        signed = ", signed" if self.signature else ""
        return f"approved by {self.approver} at {iso(self.at)} (valid until {iso(self.expires_at)}{signed}){why}"

    def statement(self) -> bytes:
        return statement(self.run_id, self.gate, self.digest, self.approver, self.approver_entity, iso(self.at),
                         iso(self.expires_at), self.reason)

    def as_entry(self) -> dict[str, Any]:
        return {"gate": self.gate, "approver": self.approver, "approved_at": iso(self.at),
                "expires_at": iso(self.expires_at), "reason": self.reason, "typed_by": self.typed_by,
                "approved_run": self.run_id, "approver_entity": self.approver_entity, "change_digest": self.digest,
                "change_parts": self.parts, "signature": self.signature, "document": self.document}

    @classmethod
    def from_entry(cls, run_id: str, entry: dict[str, Any]) -> "Approval":
        return cls(run_id=entry.get("approved_run") or run_id, gate=entry["gate"], approver=entry["approver"],
                   at=_parse(entry.get("approved_at") or entry.get("at")) or utcnow(),
                   expires_at=_parse(entry["expires_at"]) or utcnow(), reason=entry.get("reason") or "",
                   typed_by=entry.get("typed_by"), approver_entity=entry.get("approver_entity"),
                   digest=entry.get("change_digest"), signature=entry.get("signature"),
                   document=entry.get("document"), parts=dict(entry.get("change_parts") or {}))


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


def approve(run_id: str, as_name: str | None = None, reason: str = "", token: Any = None) -> Approval:
    """Approve the gate run ``run_id`` stopped at, as the person ``token`` (default VAULT_TOKEN, else
    the profile's) belongs to: the rule checked, the change's digest signed, journaled, chained in
    the ledger. ``as_name``, when given, must be that person's name."""
    import os

    from ..config.profiles import load_profile
    from ..platform.vault import Vault
    from ..records.identity import local_user

    journal = find_journal(run_id)
    entries = journal.entries()
    facts = run_facts(entries)
    gate = pending_gate(entries)
    if gate is None:
        outcome = next((e.get("outcome") for e in reversed(entries) if e.get("event") == "run-finished"), "still running")
        raise ParameterError(f"run {run_id} is not awaiting approval (its outcome: {outcome}); nothing to approve")
    profile = load_profile(facts["env"])
    rule = profile.approvals
    vault = Vault(profile.vault, token=token or os.environ.get("VAULT_TOKEN") or None)
    approver = vault.whoami()
    if not approver.authenticated:
        check_approver(rule, facts.get("operator"), facts.get("operator_entity"), approver)  # refuses, saying why
    if as_name and not same_person(as_name, approver.name):
        raise GuardRefused(f"--as {as_name}, but the Vault token belongs to {approver.name}: an approval is given "
                           "by whoever's login it is, never by a name")
    check_approver(rule, facts.get("operator"), facts.get("operator_entity"), approver)
    awaiting = gate_status(entries, gate, run_id).awaiting or {}
    change = awaiting.get("change") or {}
    now = utcnow()
    approval = Approval(run_id, gate, approver.name, now, now + timedelta(seconds=rule.expires_after_s), reason.strip(),
                        typed_by=local_user(), approver_entity=approver.entity_id, digest=change.get("digest"),
                        parts=dict(change.get("parts") or {}))
    signature = vault.sign(approval.statement(), rule.signing_key, rule.signing_mount)
    approval = _with(approval, signature=signature)
    approval = _with(approval, document=_chain_in_ledger(facts, approval))
    journal.write(event="approved", **approval.as_entry())
    _tell(profile, facts, approval)
    return approval


def _with(approval: Approval, **changes: Any) -> Approval:
    from dataclasses import replace

    return replace(approval, **changes)


def _tell(profile: Any, facts: dict[str, Any], approval: Approval) -> None:
    """The people told the run awaits approval learn who gave it (a failed delivery is not an error)."""
    from ..platform.notify import Notice, notifier_for

    params = facts.get("notebook_parameters") or {}
    subject = " ".join(str(v) for v in (facts.get("runbook"), params.get("service"), params.get("version")) if v)
    notifier_for(None, profile).send(Notice(
        severity="approval", summary=f"{subject}: gate {approval.gate} {approval.describe()}", status="approved",
        service=str(params.get("service") or facts.get("runbook")), env=facts["env"], record=facts.get("record"),
        detail=f"runbook resume {approval.run_id}"))


def _chain_in_ledger(facts: dict[str, Any], approval: Approval) -> str:
    """An approval document (its statement and signature) beside the run's record, chained into the
    ledger like a record; returns its path below the records root."""
    from ..records.ledger import Ledger, records_root

    root = records_root(facts["env"])
    record = facts.get("record")
    folder = (root / record).parent if record else root / facts["env"] / approval.at.strftime("%Y-%m-%d")
    folder.mkdir(parents=True, exist_ok=True)
    document = folder / f"approval-{approval.run_id}-{approval.gate}-{approval.at.strftime('%H%M%S%fZ')}.json"
    document.write_text(json.dumps({"kind": "approval", "runbook": facts.get("runbook"), "env": facts["env"],
                                    "run_id": approval.run_id, "operator": facts.get("operator"),
                                    "operator_entity": facts.get("operator_entity"), "record": record,
                                    **approval.as_entry()}, indent=1, sort_keys=True) + "\n")
    Ledger(root).append(document, kind="approval", run_id=approval.run_id, gate=approval.gate,
                        approver=approval.approver)
    return document.relative_to(root).as_posix()
