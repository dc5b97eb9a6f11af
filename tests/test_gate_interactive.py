"""The gate in a live kernel, as in JupyterLab: someone at the keyboard logs in and approves or denies.

No browser: a jupyter_client drives a real IPython kernel and answers its input() and getpass()
requests on the stdin channel, as JupyterLab's prompt would. The profile requires approvals; its
Vault is a real OpenBao with the sandbox's people, the run is alice's login; no cluster is needed
(``check_cluster=False``). A typed name approves nothing: the approver logs in at the prompt.
"""
from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any, Iterator

import pytest

from .live_kernel import live_kernel

def profile(address: str) -> dict[str, Any]:
    return {
        "name": "gated",
        "cluster": {"namespace": "veza-gated", "identity": {"expected": "uid-of-nothing"}},
        "vault": {"address": address, "path": "secret/veza/gated"},
        "prometheus": {"url": "http://127.0.0.1:9"},
        "approvals": {"required": True, "four_eyes": True, "approvers": ["bob", "carol"]},
    }


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory, vault_people: dict[str, Any]) -> Iterator[tuple[Any, Path]]:
    # Alice operates (her login in the kernel's VAULT_TOKEN); RUNBOOK_OPERATOR says bob, and is ignored.
    with live_kernel(tmp_path_factory.mktemp("gated-home"), profile(vault_people["address"]),
                     VAULT_TOKEN=vault_people["tokens"]["alice"], RUNBOOK_OPERATOR="bob") as started:
        yield started


def run_cell(kc: Any, code: str, answers: list[str], timeout: float = 60) -> dict[str, Any]:
    """Execute ``code`` with stdin allowed, answering each input() prompt in turn; the reply's content."""
    # stop_on_error=False: each cell is awaited anyway; after a failing cell the kernel would
    # otherwise abort a request that arrives while it still drains its queue (seen under load).
    msg_id = kc.execute(code, allow_stdin=True, stop_on_error=False)
    prompts: list[str] = []
    while True:
        try:
            request = kc.get_stdin_msg(timeout=0.2)
            prompts.append(request["content"]["prompt"])
            kc.input(answers.pop(0))
            continue
        except queue.Empty:
            pass
        try:
            reply = kc.get_shell_msg(timeout=0.2)
        except queue.Empty:
            continue
        if reply["parent_header"].get("msg_id") == msg_id:
            return {**reply["content"], "prompts": prompts, "unanswered": answers}


def journal(records: Path, run_id: str) -> list[dict[str, Any]]:
    path = records / "journal" / "gated" / f"{run_id}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def run_id_of(kc: Any) -> str:
    msg_id = kc.execute("", user_expressions={"run_id": "ctx.run_id"})
    reply = kc.get_shell_msg(timeout=30)
    assert reply["parent_header"]["msg_id"] == msg_id
    return reply["content"]["user_expressions"]["run_id"]["data"]["text/plain"].strip("'")


def test_a_listed_approver_logs_in_at_the_keyboard_and_a_denial_stops_the_change(
        kernel: Any, vault_people: dict[str, Any]) -> None:
    kc, records = kernel
    passwords = vault_people["passwords"]
    start = run_cell(kc, "import runbooks_lib\nctx = runbooks_lib.start('deploy', 'gated', check_cluster=False)", [])
    assert start["status"] == "ok", start
    run_id = run_id_of(kc)
    assert journal(records, run_id)[0]["operator"] == "alice"  # the login, not RUNBOOK_OPERATOR

    approved = run_cell(kc, "approval = ctx.gate('rollout', '+ image: v2')",
                        ["bob", passwords["bob"], "yes", "CHG-9 reviewed"])
    assert approved["status"] == "ok", approved
    assert len(approved["prompts"]) == 4 and "Vault user name" in approved["prompts"][0]
    entries = journal(records, run_id)
    passed = [e for e in entries if e["event"] == "gate-passed"]
    assert passed and passed[-1]["approver"] == "bob" and passed[-1]["reason"] == "CHG-9 reviewed"
    assert passed[-1]["signature"].startswith("vault:v1:") and passed[-1]["approver_entity"]
    assert not any(passwords["bob"] in json.dumps(e) for e in entries)  # a password never reaches the journal

    # Alice operates: her own login is refused (four eyes), and a token belonging to nobody is too.
    mine = run_cell(kc, "ctx.gate('flip', '+ color: green')", ["alice", passwords["alice"]])
    assert mine["status"] == "error" and mine["ename"] == "GuardRefused" and "cannot approve" in mine["evalue"]
    ctx_reset = run_cell(kc, "ctx = runbooks_lib.start('deploy', 'gated', check_cluster=False)", [])
    assert ctx_reset["status"] == "ok"
    nobody = run_cell(kc, "ctx.gate('flip', '+ color: green')", ["", vault_people["root"]])
    assert nobody["status"] == "error" and "belongs to no person" in nobody["evalue"]
    ctx_reset = run_cell(kc, "ctx = runbooks_lib.start('deploy', 'gated', check_cluster=False)", [])
    run_id = run_id_of(kc)
    denied = run_cell(kc, "ctx.gate('flip', '+ color: green')", ["carol", passwords["carol"], "no"])
    assert denied["status"] == "error" and denied["ename"] == "GuardRefused" and "carol denied" in denied["evalue"]
    entries = journal(records, run_id)
    assert any(e["event"] == "denied" and e["approver"] == "carol" for e in entries)
    assert not any(e["event"] == "gate-passed" for e in entries)
    finished = [e for e in entries if e["event"] == "run-finished"]
    assert finished and finished[-1]["outcome"] == "refused"  # the failure hook ended the run
