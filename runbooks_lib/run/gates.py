"""A gate before a change: ``ctx.gate(name, what_changes)`` stops the run until someone consents.

Only where the profile says so (``approvals.required``); a dry run changes nothing and passes.
The gate is a step of the record: it shows what would change (the API server's dry-run diff, with
the database migrations that will run), computes the change's digest (``run.change``), and then:

- the run was resumed and the original run's gate was approved (or passed): the approval's
  signature is verified with Vault, its document found in the ledger, the rule checked again (not
  expired, four eyes, listed approvers), the change's digest computed again must be the one
  signed (else refused, exit 4, naming the part that differs: the notebook, the parameters, the
  profile, the cluster, what will change), and the state the approval was given for is read
  again — a change since is drift: refused, exit 4, saying what changed;
- someone is at the keyboard (JupyterLab, a terminal): the approver logs in to Vault there (user
  name and password, or a token), never just types a name, and signs;
- headless (``runbook run``, papermill): journal ``gate-awaiting`` with the diff, the state and
  the digest, tell people (the profile's webhook), and stop *before* the change: AwaitingApproval,
  exit 3.
"""
from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any, Callable

from ..config.clock import iso, utcnow
from ..errors import AwaitingApproval, GuardRefused
from .approvals import Approval, check_approver
from .change import ChangeDigest, change_digest
from .replay import describe_drift

__all__ = ["pass_gate"]

State = Callable[[], dict[str, Any]]


def pass_gate(ctx: Any, name: str, what_changes: str | Callable[[], str], state: State | None = None) -> Approval | None:
    """Let the run through gate ``name``, or stop it; returns the approval it went through with."""
    rule = ctx.profile.approvals
    if not rule.required:
        return None
    if ctx.dry_run:
        print(f"gate {name}: a dry run changes nothing, no approval needed")
        return None
    with ctx.step(f"Approval: {name}", key=f"gate-{name}") as step:
        diff = what_changes() if callable(what_changes) else what_changes
        print(f"What will change:\n{diff}")
        now_state = state() if state else None
        change = change_digest(ctx, diff)
        approval = _approval_from_original(ctx, name, now_state, rule, change)
        if approval is None:
            approval = _ask(ctx, name, rule, change)
        if approval is None:
            _stop_awaiting(ctx, name, diff, now_state, rule, change)
        ctx.journal.write(event="gate-passed", **approval.as_entry())
        step.note(approver=approval.approver, approved_at=iso(approval.at), reason=approval.reason,
                  change_digest=change.digest)
        ctx.note(f"approval {name}", approval.describe())
        print(f"✓ gate {name}: {approval.describe()}; change {change.digest[:16]} as signed")
        return approval


def _approval_from_original(ctx: Any, name: str, now_state: dict[str, Any] | None, rule: Any,
                            change: ChangeDigest) -> Approval | None:
    """The approval the resumed run carries for this gate, proven again; None if it has none."""
    replay = getattr(ctx, "replay", None)
    if replay is None:
        return None
    status = replay.gate(name)
    approval = status.approval or status.passed
    if approval is None:
        return None
    if approval.expired():
        print(f"the approval of run {replay.run_id} expired at {iso(approval.expires_at)} "
              f"(approvals last {rule.expires_after_s:.0f} s): it must be given again")
        return None
    _prove(ctx, approval, rule)
    check_approver(rule, replay.operator, replay.facts.get("operator_entity"), _signer(approval))
    # Stopped at this gate: the change must be the one signed, whole. Already through it (a resume of
    # a resume that failed further on): what remains to change is less than what was signed (the
    # run's own changes, which are not drift), so the change's other parts must match, and the
    # cluster's state is checked for drift below as for any replayed step.
    through = status.approval is None and status.passed is not None
    compared = {k: v for k, v in change.parts.items() if not (through and k == "changes")}
    if (not through and approval.digest != change.digest) or any(approval.parts.get(k) != v for k, v in compared.items()):
        differs = change.differences({**approval.parts, **({"changes": change.parts["changes"]} if through else {})}) \
            or ["the change as a whole"]
        raise GuardRefused(f"{approval.approver} approved another change than this run would make: "
                           f"{', '.join(differs)} differ{'s' if len(differs) == 1 else ''} from what was signed "
                           f"at gate {name} of run {replay.run_id}. Nothing was changed; start a new run and have it "
                           "approved")
    if status.awaiting is not None and now_state is not None:
        drift = describe_drift(status.awaiting.get("state"), now_state)
        if drift:
            raise GuardRefused(f"drift since run {replay.run_id} stopped at gate {name}: {drift}. "
                               f"{approval.approver} approved a change to the cluster as it was then; "
                               "start a new run against the cluster as it is now")
    return approval


def _signer(approval: Approval) -> Any:
    """The approver as the signed statement names them (proven by the signature, not typed)."""
    from ..records.identity import Person

    return Person(approval.approver, approval.approver_entity, approval.approver, "signed")


def _prove(ctx: Any, approval: Approval, rule: Any) -> None:
    """The approval's signature is Vault's over its statement, and its document is in the ledger
    unaltered; else GuardRefused: an approval line written into a journal by hand proves nothing."""
    from ..platform.vault import Vault
    from ..records.ledger import Ledger, records_root

    if not approval.signature or not approval.digest or ChangeDigest(approval.parts).digest != approval.digest:
        raise GuardRefused(f"the approval of gate {approval.gate} by {approval.approver} carries no signature of the "
                           "change: it was not given by `runbook approve` (or predates signed approvals); have it "
                           "approved again")
    if not Vault(ctx.profile.vault).verify(approval.statement(), approval.signature, rule.signing_key,
                                           rule.signing_mount):
        raise GuardRefused(f"the approval of gate {approval.gate} by {approval.approver} does not verify with Vault's "
                           f"{rule.signing_key} key: the journal says something that was not signed")
    root = records_root(ctx.env)
    document = root / approval.document if approval.document else None
    entry = Ledger(root).entry_for(document) if document is not None and document.is_file() else None
    if entry is None or entry.get("sha256") != Ledger.sha256(document):  # type: ignore[arg-type]
        raise GuardRefused(f"the approval document of gate {approval.gate} ({approval.document}) is missing from "
                           "the ledger or was altered since it was chained")


def _ask(ctx: Any, name: str, rule: Any, change: ChangeDigest) -> Approval | None:
    """Someone at the keyboard logs in to Vault and approves or denies; None when nobody can be
    asked (headless). A typed name proves nothing: the approver is whoever the login belongs to."""
    import getpass

    from ..platform.vault import Vault, login_userpass

    if ctx.record_name is not None or not _can_prompt():
        return None
    try:
        user = input(f"gate {name}: the approver's Vault user name (empty: paste a token; 'no': the run stops) ").strip()
        if user.lower() in ("no", "n"):
            return None
        secret = getpass.getpass(f"{user or 'token'}: {'password' if user else 'Vault token'} ")
    except (EOFError, OSError, RuntimeError, NotImplementedError):  # no stdin in this kernel: headless
        return None
    except Exception as e:  # ipykernel's StdinNotImplementedError (papermill gives kernels no stdin)
        if type(e).__name__ == "StdinNotImplementedError":
            return None
        raise
    token = login_userpass(ctx.profile.vault.address, user, secret) if user else secret
    vault = Vault(ctx.profile.vault, token=token)
    approver = vault.whoami()
    check_approver(rule, ctx.operator, ctx.operator_entity, approver)
    answer = input(f"{approver.name}, approve '{name}' in {ctx.env} (change {change.digest[:16]})? [yes/no] ")
    if answer.strip().lower() not in ("y", "yes"):
        ctx.journal.write(event="denied", gate=name, approver=approver.name, approver_entity=approver.entity_id)
        raise GuardRefused(f"{approver.name} denied the change at gate {name}: nothing was changed")
    reason = input("why (for the record, optional)? ").strip()
    at = utcnow()
    approval = Approval(ctx.run_id, name, approver.name, at, at + timedelta(seconds=rule.expires_after_s), reason,
                        approver_entity=approver.entity_id, digest=change.digest, parts=dict(change.parts))
    from dataclasses import replace

    approval = replace(approval, signature=vault.sign(approval.statement(), rule.signing_key, rule.signing_mount))
    ctx.journal.write(event="approved", **approval.as_entry())
    return approval


def _can_prompt() -> bool:
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython else None
    if shell is not None:
        kernel = getattr(shell, "kernel", None)
        # nbclient/papermill start kernels with allow_stdin=False; JupyterLab allows it.
        return kernel is None or bool(getattr(kernel, "_allow_stdin", False))
    return sys.stdin is not None and sys.stdin.isatty()


def _stop_awaiting(ctx: Any, name: str, diff: str, now_state: dict[str, Any] | None, rule: Any,
                   change: ChangeDigest) -> None:
    """Headless: journal what would change and its digest, tell people, stop before the change (exit 3)."""
    from ..platform.notify import Notice, notifier_for

    ctx.journal.write(event="gate-awaiting", gate=name, what_changes=diff, state=now_state, operator=ctx.operator,
                      operator_entity=ctx.operator_entity, change=change.as_entry())
    who = ("one of " + ", ".join(rule.approvers)) if rule.approvers else "someone"
    if rule.four_eyes:
        who += f" other than {ctx.operator}"
    command = f"runbook approve {ctx.run_id} --reason WHY (with the approver's own VAULT_TOKEN), then runbook resume {ctx.run_id}"
    subject = " ".join(str(v) for v in (ctx.runbook, ctx.params.get("service"), ctx.params.get("version")) if v)
    delivery = notifier_for(None, ctx.profile).send(Notice(
        severity="approval", summary=f"{subject} awaits approval at gate {name} (operator {ctx.operator})",
        status="awaiting approval", service=str(ctx.params.get("service") or ctx.runbook), env=ctx.env,
        record=ctx.record_name, detail=command))
    ctx.note("awaiting approval", f"gate {name}: needs the approval of {who}; change {change.digest}; {command}")
    told = f"notified {delivery.target}" if delivery.delivered else f"NOT notified ({delivery.error})"
    raise AwaitingApproval(f"gate {name} needs the approval of {who} in {ctx.env}; nothing was changed; {told}. "
                           f"Next: {command}")
