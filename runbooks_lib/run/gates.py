"""A gate before a change: ``ctx.gate(name, what_changes)`` stops the run until someone consents.

Only where the profile says so (``approvals.required``); a dry run changes nothing and passes.
The gate is a step of the record: it shows what would change (the API server's dry-run diff)
and then, in order:

- the run was resumed and the original run's gate was approved (or passed): the approval is
  checked again (not expired, four eyes, listed approvers) and the state the approval was
  given for is read again — a change since is drift: refused, exit 4, saying what changed;
- someone is at the keyboard (JupyterLab, a terminal): ask who approves, and whether;
- headless (``runbook run``, papermill): journal ``gate-awaiting`` with the diff and the state,
  tell people (the profile's webhook), and stop *before* the change: AwaitingApproval, exit 3.
"""
from __future__ import annotations

import sys
from datetime import timedelta
from typing import Any, Callable

from .approvals import Approval, check_approver
from ..errors import AwaitingApproval, GuardRefused
from ..config.clock import iso, utcnow
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
        approval = _approval_from_original(ctx, name, now_state, rule)
        if approval is None:
            approval = _ask(ctx, name, rule)
        if approval is None:
            _stop_awaiting(ctx, name, diff, now_state, rule)
        ctx.journal.write(event="gate-passed", **approval.as_entry())
        step.note(approver=approval.approver, approved_at=iso(approval.at), reason=approval.reason)
        ctx.note(f"approval {name}", approval.describe())
        print(f"✓ gate {name}: {approval.describe()}")
        return approval


def _approval_from_original(ctx: Any, name: str, now_state: dict[str, Any] | None, rule: Any) -> Approval | None:
    """The approval the resumed run carries for this gate, checked again; None if it has none."""
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
    check_approver(rule, replay.operator, approval.approver)  # the rule may have tightened since
    if status.awaiting is not None and now_state is not None:
        drift = describe_drift(status.awaiting.get("state"), now_state)
        if drift:
            raise GuardRefused(f"drift since run {replay.run_id} stopped at gate {name}: {drift}. "
                               f"{approval.approver} approved a change to the cluster as it was then; "
                               "start a new run against the cluster as it is now")
    return approval


def _ask(ctx: Any, name: str, rule: Any) -> Approval | None:
    """Someone at the keyboard approves or denies; None when nobody can be asked (headless)."""
    if ctx.record_name is not None or not _can_prompt():
        return None
    try:
        approver = input(f"gate {name}: who approves this change? (empty: nobody, the run stops) ").strip()
    except (EOFError, OSError, RuntimeError, NotImplementedError):  # no stdin in this kernel: headless
        return None
    except Exception as e:  # ipykernel's StdinNotImplementedError (papermill gives kernels no stdin)
        if type(e).__name__ == "StdinNotImplementedError":
            return None
        raise
    if not approver:
        return None
    check_approver(rule, ctx.operator, approver)
    answer = input(f"{approver}, approve '{name}' in {ctx.env}? [yes/no] ").strip().lower()
    if answer not in ("y", "yes"):
        ctx.journal.write(event="denied", gate=name, approver=approver)
        raise GuardRefused(f"{approver} denied the change at gate {name}: nothing was changed")
    reason = input("why (for the record, optional)? ").strip()
    at = utcnow()
    approval = Approval(ctx.run_id, name, approver, at, at + timedelta(seconds=rule.expires_after_s), reason)
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


def _stop_awaiting(ctx: Any, name: str, diff: str, now_state: dict[str, Any] | None, rule: Any) -> None:
    """Headless: journal what would change, tell people, stop before the change (exit 3)."""
    from ..platform.notify import Notice, notifier_for

    ctx.journal.write(event="gate-awaiting", gate=name, what_changes=diff, state=now_state, operator=ctx.operator)
    who = ("one of " + ", ".join(rule.approvers)) if rule.approvers else "someone"
    if rule.four_eyes:
        who += f" other than {ctx.operator}"
    command = f"runbook approve {ctx.run_id} --as NAME --reason WHY, then runbook resume {ctx.run_id}"
    subject = " ".join(str(v) for v in (ctx.runbook, ctx.params.get("service"), ctx.params.get("version")) if v)
    delivery = notifier_for(None, ctx.profile).send(Notice(
        severity="approval", summary=f"{subject} awaits approval at gate {name} (operator {ctx.operator})",
        status="awaiting approval", service=str(ctx.params.get("service") or ctx.runbook), env=ctx.env,
        record=ctx.record_name, detail=command))
    ctx.note("awaiting approval", f"gate {name}: needs the approval of {who}; {command}")
    told = f"notified {delivery.target}" if delivery.delivered else f"NOT notified ({delivery.error})"
    raise AwaitingApproval(f"gate {name} needs the approval of {who} in {ctx.env}; nothing was changed; {told}. "
                           f"Next: {command}")
