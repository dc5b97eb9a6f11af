"""Issue 25, findings 1 and 2: an approval is a person's Vault login signing the exact change.

Against a real OpenBao with the sandbox's people (alice on call, bob an approver, carol a viewer),
a production-like profile and real journals, ledger and gates (no cluster: the gate needs none).

1. Four eyes rested on names anyone can type (`runbook approve RUN --as bob` from alice's shell was
   taken). Now the approver is whoever the token belongs to; alice's login is refused whatever name
   it gives, and so is a plain token belonging to nobody.
2. An approval was not bound to what was approved (a line in an editable journal; resume compared
   neither the notebook nor the parameters). Now it signs the change's digest; a resume whose
   notebook, parameters or change differ, or whose approval was written by hand, is refused
   (exit 4) naming what differs.
"""
from __future__ import annotations

import hashlib
import re
import json
from pathlib import Path
from typing import Any, Iterator

import pytest

from runbooks_lib.errors import AwaitingApproval, GuardRefused
from runbooks_lib.records.ledger import Ledger
from runbooks_lib.run.approvals import approve
from runbooks_lib.run.journal import Journal

PARAMS = {"service": "veza-backend-api", "version": "v1.6.0"}
RUN = "a1b2c3d4e5f6"
CHANGE = "deployment/veza-backend-api: image v1.5.0 → v1.6.0 (change-cause: release 1.6, run {run})\n" \
         "database migrations: none will run"


@pytest.fixture
def production(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vault_people: dict[str, Any]) -> Iterator[Path]:
    """The production profile, its Vault the test's OpenBao, its records under tmp_path."""
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))
    monkeypatch.setenv("VAULT_ADDR", vault_people["address"])
    monkeypatch.delenv("VEZA_INCIDENT_WEBHOOK_URL", raising=False)
    monkeypatch.delenv("RUNBOOK_OPERATOR", raising=False)
    notebook = tmp_path / "deploy.ipynb"
    notebook.write_text('{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}')
    yield notebook


def as_person(monkeypatch: pytest.MonkeyPatch, vault_people: dict[str, Any], name: str) -> None:
    monkeypatch.setenv("VAULT_TOKEN", vault_people["tokens"][name] if name != "root" else vault_people["root"])


def context(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notebook: Path, run_id: str,
            params: dict[str, Any] = PARAMS, resume_of: Journal | None = None) -> Any:
    """A run's context as `runbook run` (or `runbook resume`) makes it in the kernel."""
    from runbooks_lib.config.profiles import load_profile
    from runbooks_lib.run.context import RunContext

    facts = {"run_id": run_id, "record": f"production/2026-12-01/deploy-160000Z-{run_id}.ipynb",
             "notebook": str(notebook), "notebook_sha256": hashlib.sha256(notebook.read_bytes()).hexdigest(),
             "parameters": params}
    if resume_of is not None:
        facts.update(resume_of=resume_of.run_id, replay_journal=str(resume_of.path))
    run_file = tmp_path / f"run-{run_id}.json"
    run_file.write_text(json.dumps(facts))
    monkeypatch.setenv("RUNBOOK_RUN_FILE", str(run_file))
    return RunContext("deploy", "production", load_profile("production"), dict(params))


def stopped_at_the_gate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notebook: Path,
                        vault_people: dict[str, Any], operator: str = "alice") -> Journal:
    as_person(monkeypatch, vault_people, operator)
    ctx = context(tmp_path, monkeypatch, notebook, RUN)
    with pytest.raises(AwaitingApproval, match=f"runbook approve {RUN}"):
        ctx.gate("rollout", CHANGE.format(run=RUN), state=lambda: {"generation": 4})
    ctx.journal.write(event="run-finished", outcome="awaiting approval")  # as the runner does
    return ctx.journal


def resume(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, notebook: Path, vault_people: dict[str, Any],
           original: Journal, params: dict[str, Any] = PARAMS, change: str = CHANGE) -> Any:
    as_person(monkeypatch, vault_people, "alice")
    ctx = context(tmp_path, monkeypatch, notebook, "f0f0f0f0f0f0", params, resume_of=original)
    return ctx.gate("rollout", change.format(run="f0f0f0f0f0f0"), state=lambda: {"generation": 4})


def test_the_run_knows_its_operator_from_the_login(production: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                   vault_people: dict[str, Any]) -> None:
    monkeypatch.setenv("RUNBOOK_OPERATOR", "bob")  # a typed name: ignored, a login says who
    journal = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people)
    started = journal.entries()[0]
    assert started["operator"] == "alice" and started["operator_entity"]
    waiting = next(e for e in journal.entries() if e["event"] == "gate-awaiting")
    assert len(waiting["change"]["digest"]) == 64 and set(waiting["change"]["parts"]) == {
        "notebook", "parameters", "profile", "cluster", "changes"}


def test_alice_cannot_approve_her_own_run_whatever_name_she_gives(production: Path, tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  vault_people: dict[str, Any]) -> None:
    journal = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people)
    alice = vault_people["tokens"]["alice"]
    with pytest.raises(GuardRefused, match="--as bob, but the Vault token belongs to alice"):
        approve(journal.run_id, "bob", token=alice)
    with pytest.raises(GuardRefused, match="alice started this run and cannot approve it"):
        approve(journal.run_id, token=alice)
    with pytest.raises(GuardRefused, match="belongs to no person"):
        approve(journal.run_id, "bob", token=vault_people["root"])  # a plain token is nobody
    with pytest.raises(GuardRefused, match="permission denied"):
        approve(journal.run_id, token=vault_people["tokens"]["carol"])  # a viewer's policy cannot sign
    assert [e for e in journal.entries() if e["event"] == "approved"] == []


def test_a_run_nobody_logged_into_cannot_be_approved_under_four_eyes(production: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     vault_people: dict[str, Any]) -> None:
    journal = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people, operator="root")
    with pytest.raises(GuardRefused, match="was not authenticated by a Vault login"):
        approve(journal.run_id, token=vault_people["tokens"]["bob"])


def test_bob_signs_the_change_and_the_resume_goes_through(production: Path, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch,
                                                          vault_people: dict[str, Any]) -> None:
    original = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people)
    approval = approve(original.run_id, "bob", "CHG-7 reviewed", token=vault_people["tokens"]["bob"])
    assert approval.approver == "bob" and approval.signature.startswith("vault:v1:") and approval.digest
    line = Ledger(tmp_path / "records").entries()[-1]
    assert line["kind"] == "approval" and line["approver"] == "bob"
    document = json.loads((tmp_path / "records" / line["record"]).read_text())
    assert document["signature"] == approval.signature and document["change_digest"] == approval.digest
    passed = resume(tmp_path, monkeypatch, production, vault_people, original)
    assert passed.approver == "bob" and passed.digest == approval.digest


@pytest.mark.parametrize("tamper, names", [
    ("parameters", "the parameters differs"),
    ("notebook", "the notebook's content differs"),
    ("change", "what will change (the dry-run diff and the migrations that will run) differs"),
])
def test_a_resume_of_another_change_than_the_one_signed_is_refused(
        production: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, vault_people: dict[str, Any],
        tamper: str, names: str) -> None:
    original = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people)
    approve(original.run_id, token=vault_people["tokens"]["bob"])
    params, change = dict(PARAMS), CHANGE
    if tamper == "parameters":  # the journal's parameters edited between approval and resume
        params["version"] = "v1.5.1-errors"
    elif tamper == "notebook":
        production.write_text(production.read_text().replace('"cells": []', '"cells": [{"cell_type": "raw", '
                                                              '"metadata": {}, "source": "rm -rf"}]'))
    else:  # the cluster moved: the dry-run diff is another one
        change = CHANGE.replace("v1.5.0", "v1.4.0")
    with pytest.raises(GuardRefused, match="bob approved another change than this run would make: " + re.escape(names)):
        resume(tmp_path, monkeypatch, production, vault_people, original, params, change)


def test_an_approval_written_into_the_journal_by_hand_proves_nothing(production: Path, tmp_path: Path,
                                                                     monkeypatch: pytest.MonkeyPatch,
                                                                     vault_people: dict[str, Any]) -> None:
    original = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people)
    approval = approve(original.run_id, token=vault_people["tokens"]["bob"])
    forged = {**approval.as_entry(), "approver": "bob", "reason": "looks fine to me", "expires_at": "2099-01-01T00:00:00.000Z"}
    original.write(event="approved", **forged)  # alice edits the journal: a later, longer approval
    with pytest.raises(GuardRefused, match="does not verify with Vault's veza-approvals key"):
        resume(tmp_path, monkeypatch, production, vault_people, original)


def test_an_approval_whose_document_left_the_ledger_is_refused(production: Path, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch,
                                                               vault_people: dict[str, Any]) -> None:
    original = stopped_at_the_gate(tmp_path, monkeypatch, production, vault_people)
    approval = approve(original.run_id, token=vault_people["tokens"]["bob"])
    document = tmp_path / "records" / approval.document
    document.write_text(document.read_text().replace('"reason": ""', '"reason": "edited"'))
    with pytest.raises(GuardRefused, match="missing from the ledger or was altered"):
        resume(tmp_path, monkeypatch, production, vault_people, original)
