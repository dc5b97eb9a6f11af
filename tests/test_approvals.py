"""Approval rules, expiry, four eyes and journal replay, on synthetic journals (no sandbox)."""
from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from runbooks_lib.records.identity import Person
from runbooks_lib.run.approvals import Approval, approve, check_approver, gate_status, pending_gate, what_changes
from runbooks_lib.errors import AwaitingApproval, GuardRefused, ParameterError
from runbooks_lib.config.clock import iso, utcnow
from runbooks_lib.run.journal import Journal, find_journal
from runbooks_lib.config.profiles import Approvals
from runbooks_lib.records.ledger import Ledger
from runbooks_lib.records.summary import masked_parameters
from runbooks_lib.run.replay import Replay, decode_result, describe_drift, encode_result
from runbooks_lib.run.resume import resumable


@pytest.fixture
def records(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path))
    monkeypatch.delenv("VEZA_INCIDENT_WEBHOOK_URL", raising=False)  # production's webhook: nobody is told
    return tmp_path


def stopped_run(records: Path, run_id: str = "a1b2c3d4e5f6", env: str = "production", operator: str = "alice",
                approved_by: str | None = None) -> Journal:
    journal = Journal(records / "journal" / env / f"{run_id}.jsonl")
    journal.write(event="run-started", runbook="deploy", env=env, operator=operator,
                  record=f"{env}/2026-12-01/deploy-160000Z-{run_id}.ipynb",
                  notebook_parameters={"service": "veza-backend-api", "version": "v1.6.0"})
    journal.write(event="step-started", step="Pre-deployment checklist", key="checklist")
    journal.write(event="step-result", step="Pre-deployment checklist", key="checklist", result="all pass",
                  state={"object": "deployment/x", "generation": 4, "image": "r/x:v1.5.0", "resourceVersion": "10"})
    journal.write(event="step-finished", step="Pre-deployment checklist", key="checklist", outcome="succeeded")
    journal.write(event="gate-awaiting", gate="rollout", what_changes="+ image", state={"generation": 4})
    journal.write(event="run-finished", outcome="awaiting approval")
    if approved_by:
        now = utcnow()
        journal.write(event="approved", **Approval(run_id, "rollout", approved_by, now, now + timedelta(hours=1)).as_entry())
    return journal


# -- the rule -------------------------------------------------------------------------------

def test_the_rule_is_validated() -> None:
    assert Approvals().four_eyes is True and Approvals().required is False
    with pytest.raises(ValueError, match="approvals.required is false"):
        Approvals(approvers=("bob",))
    with pytest.raises(ValueError, match="listed twice"):
        Approvals(required=True, approvers=("bob", " bob"))
    with pytest.raises(ValueError):
        Approvals(required=True, expires_after_s=0)
    with pytest.raises(ValueError):
        Approvals(required=True, approve_by="bob")  # a typo is an error, not ignored


def person(name: str, entity: str | None = None) -> Person:
    return Person(name, entity if entity is not None else f"entity-{name.strip().lower()}", f"userpass-{name}", "userpass")


def test_four_eyes_compares_logins_not_names() -> None:
    rule = Approvals(required=True)
    with pytest.raises(GuardRefused, match="cannot approve"):
        check_approver(rule, "alice", "entity-alice", person("Alice Smith", "entity-alice"))  # her login, any name
    check_approver(rule, "alice", "entity-alice", person("bob"))
    # A typed name with nobody's login behind it approves nothing, and a run nobody logged into
    # cannot show that its approver is someone else.
    with pytest.raises(GuardRefused, match="belongs to no person"):
        check_approver(rule, "alice", "entity-alice", Person("bob", None, "token", "token"))
    with pytest.raises(GuardRefused, match="operator \\(alice\\) was not authenticated"):
        check_approver(rule, "alice", None, person("bob"))
    check_approver(Approvals(required=True, four_eyes=False), "alice", "entity-alice", person("alice"))  # rule off


def test_listed_approvers_only() -> None:
    rule = Approvals(required=True, approvers=("bob", "carol"))
    check_approver(rule, "alice", "entity-alice", person("Carol"))
    with pytest.raises(GuardRefused, match="approvers: bob, carol"):
        check_approver(rule, "alice", "entity-alice", person("dave"))


def test_an_approval_expires() -> None:
    at = utcnow().replace(microsecond=0) - timedelta(hours=2)
    approval = Approval("r", "rollout", "bob", at, at + timedelta(hours=1))
    assert approval.expired()
    assert not approval.expired(at + timedelta(minutes=59))
    again = Approval.from_entry("r", json.loads(json.dumps(approval.as_entry())))
    assert again == approval


# -- what a journal says ----------------------------------------------------------------------

def test_gate_status_and_pending_gate(records: Path) -> None:
    journal = stopped_run(records)
    entries = journal.entries()
    assert pending_gate(entries) == "rollout"
    assert what_changes(entries, "rollout") == "+ image" and what_changes(entries, "flip") is None
    status = gate_status(entries, "rollout", journal.run_id)
    assert status.awaiting["state"] == {"generation": 4} and status.approval is None
    journal = stopped_run(records, run_id="b1b2c3d4e5f6", approved_by="bob")
    assert gate_status(journal.entries(), "rollout", journal.run_id).approval.approver == "bob"


def test_drift_names_what_changed_and_ignores_status_writes() -> None:
    before = {"object": "deployment/api", "generation": 4, "image": "r/api:v1.5.0", "resourceVersion": "10"}
    assert describe_drift(before, {**before, "resourceVersion": "11"}) is None
    drift = describe_drift(before, {**before, "generation": 5, "image": "r/api:v1.4.0", "resourceVersion": "12"})
    assert drift.startswith("deployment/api: ")
    assert "image r/api:v1.5.0 → r/api:v1.4.0" in drift and "generation 4 → 5" in drift and "resourceVersion 10 → 12" in drift


def test_a_table_result_comes_back_as_it_was() -> None:
    table = pd.DataFrame([("a", "pass", 1.5), ("b", "n/a", None)], columns=["item", "status", "x"]).set_index("item")
    back = decode_result(json.loads(json.dumps(encode_result(table))))
    assert list(back.index) == ["a", "b"] and back.index.name == "item"
    assert back.loc["a", "status"] == "pass" and back.loc["a", "x"] == 1.5 and pd.isna(back.loc["b", "x"])
    assert decode_result(encode_result("lock held")) == "lock held"


def test_replay_finds_completed_steps_only(records: Path) -> None:
    journal = stopped_run(records)
    journal.write(event="step-started", step="Secrets", key="secrets")
    journal.write(event="step-finished", step="Secrets", key="secrets", outcome="failed")
    replay = Replay.load(journal.path)
    done = replay.completed("checklist")
    assert done.result == "all pass" and done.state["generation"] == 4 and done.replayed_from is None
    assert replay.completed("secrets") is None  # failed: done again on resume
    assert replay.operator == "alice" and replay.record.endswith("a1b2c3d4e5f6.ipynb")
    # A step that was replayed once keeps pointing at the run that did it.
    journal.write(event="step-result", step="Secrets", key="secrets", result="ok", replayed_from="0000aaaa1111")
    journal.write(event="step-finished", step="Secrets", key="secrets", outcome="replayed")
    assert Replay.load(journal.path).completed("secrets").replayed_from == "0000aaaa1111"


# -- approve and resume, before any kernel ----------------------------------------------------

def test_resume_is_refused_before_a_kernel_starts(records: Path) -> None:
    waiting = stopped_run(records)
    with pytest.raises(AwaitingApproval, match="runbook approve"):
        resumable(waiting)
    approved = stopped_run(records, run_id="c1b2c3d4e5f6", approved_by="bob")
    assert resumable(approved)["runbook"] == "deploy"
    approved.write(event="resumed", by="d1d2d3d4d5d6")
    with pytest.raises(ParameterError, match="already resumed as run d1d2d3d4d5d6"):
        resumable(approved)
    done = stopped_run(records, run_id="e1b2c3d4e5f6")
    done.write(event="run-finished", outcome="succeeded")
    with pytest.raises(ParameterError, match="nothing to resume"):
        resumable(done)
    secret = Journal(records / "journal" / "production" / "f1b2c3d4e5f6.jsonl")
    secret.write(event="run-started", runbook="x", env="production",
                 notebook_parameters=masked_parameters({"db_password": "hunter2-not-kept", "service": "api"}))
    secret.write(event="run-finished", outcome="failed")
    with pytest.raises(ParameterError, match="db_password"):
        resumable(secret)


def test_a_resume_under_way_or_ended_is_marked_from_its_start(records: Path) -> None:
    """`runbook resume` marks the original as it starts (resuming): a second resume of the original
    is refused while the first runs or once it ended (the first must be resumed instead)."""
    import os
    import socket

    import psutil

    original = stopped_run(records, run_id="g1b2c3d4e5f6", approved_by="bob")
    original.write(event="resuming", by="h1h2h3h4h5h6")
    assert resumable(original)["runbook"] == "deploy"  # the resume stopped before its kernel: nothing done
    resume = Journal(records / "journal" / "production" / "h1h2h3h4h5h6.jsonl")
    resume.write(event="run-started", runbook="deploy", env="production",
                 runner={"pid": os.getpid(), "created": psutil.Process().create_time(), "host": socket.gethostname()})
    with pytest.raises(ParameterError, match="being resumed by run h1h2h3h4h5h6 right now"):
        resumable(original)
    resume.write(event="run-finished", outcome="failed")
    with pytest.raises(ParameterError, match="already resumed as run h1h2h3h4h5h6: resume that one"):
        resumable(original)


def test_iso_is_utc_milliseconds() -> None:
    assert iso(utcnow()).endswith("Z") and len(iso(utcnow())) == 24


def test_replay_compares_with_the_last_state_the_run_saw(records: Path) -> None:
    journal = stopped_run(records)
    checked = {"object": "deployment/x", "generation": 4, "image": "r/x:v1.5.0"}
    rolled = {"object": "deployment/x", "generation": 5, "image": "r/x:v1.6.0"}
    journal.write(event="state", states=[rolled, {"object": "secret/s", "keys": {"a": "1"}}])
    replay = Replay.load(journal.path)
    # The run's own rollout after the checklist is not drift; only a change after it would be.
    assert replay.latest_state(checked) == rolled
    assert describe_drift(replay.latest_state(checked), rolled) is None
    assert replay.latest_state({"object": "deployment/other", "generation": 1}) == {"object": "deployment/other", "generation": 1}


def test_a_replayed_step_reads_as_done_in_the_record_html_not_as_failed() -> None:
    from runbooks_lib.records.export import summary_html

    page = summary_html({"runbook": "deploy", "env": "sandbox", "outcome": "failed", "steps": [
        {"name": "Lock", "outcome": "replayed", "duration_s": 0.02},
        {"name": "Roll out", "outcome": "failed", "duration_s": 3.0}]})
    assert "<td>↺ Lock</td>" in page and "✗ Lock" not in page
    assert "<td>✗ Roll out</td>" in page


def test_the_record_html_shows_figures_as_a_person_reads_them() -> None:
    from runbooks_lib.records.export import summary_html

    page = summary_html({"runbook": "deploy", "env": "sandbox", "outcome": "succeeded",
                         "figures": {"p99_ms": 4.949999999999999, "backup_bytes": 48894211, "rto_s": None}})
    assert "<td>4.95</td>" in page and "4.9499" not in page
    assert "<td>48894211</td>" in page and "<td>None</td>" in page
