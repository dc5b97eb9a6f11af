"""The gate in a live kernel, as in JupyterLab: someone at the keyboard approves or denies.

No browser: a jupyter_client drives a real IPython kernel and answers its input() requests on the
stdin channel, as JupyterLab's prompt would. The profile requires approvals; no cluster is
needed (``check_cluster=False``), so this runs without the sandbox.
"""
from __future__ import annotations

import json
import queue
from pathlib import Path
from typing import Any, Iterator

import pytest

from .live_kernel import live_kernel

PROFILE = {
    "name": "gated",
    "cluster": {"namespace": "veza-gated", "identity": {"expected": "uid-of-nothing"}},
    "vault": {"address": "http://127.0.0.1:9", "path": "secret/veza/gated"},
    "prometheus": {"url": "http://127.0.0.1:9"},
    "approvals": {"required": True, "four_eyes": True, "approvers": ["bob", "carol"]},
}


@pytest.fixture(scope="module")
def kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    with live_kernel(tmp_path_factory.mktemp("gated-home"), PROFILE, RUNBOOK_OPERATOR="alice") as started:
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


def test_a_listed_approver_at_the_keyboard_lets_the_change_through_and_a_denial_stops_it(kernel: Any) -> None:
    kc, records = kernel
    start = run_cell(kc, "import runbooks_lib\nctx = runbooks_lib.start('deploy', 'gated', check_cluster=False)", [])
    assert start["status"] == "ok", start
    run_id = run_id_of(kc)

    approved = run_cell(kc, "approval = ctx.gate('rollout', '+ image: v2')", ["bob", "yes", "CHG-9 reviewed"])
    assert approved["status"] == "ok", approved
    assert len(approved["prompts"]) == 3 and "who approves" in approved["prompts"][0]
    entries = journal(records, run_id)
    passed = [e for e in entries if e["event"] == "gate-passed"]
    assert passed and passed[-1]["approver"] == "bob" and passed[-1]["reason"] == "CHG-9 reviewed"
    assert any(e["event"] == "approved" and e["approver"] == "bob" for e in entries)

    # Alice operates: her own approval is refused (four eyes), and dave is not a listed approver.
    mine = run_cell(kc, "ctx.gate('flip', '+ color: green')", ["alice"])
    assert mine["status"] == "error" and mine["ename"] == "GuardRefused" and "cannot approve" in mine["evalue"]
    ctx_reset = run_cell(kc, "ctx = runbooks_lib.start('deploy', 'gated', check_cluster=False)", [])
    assert ctx_reset["status"] == "ok"
    run_id = run_id_of(kc)
    denied = run_cell(kc, "ctx.gate('flip', '+ color: green')", ["carol", "no"])
    assert denied["status"] == "error" and denied["ename"] == "GuardRefused" and "carol denied" in denied["evalue"]
    entries = journal(records, run_id)
    assert any(e["event"] == "denied" and e["approver"] == "carol" for e in entries)
    assert not any(e["event"] == "gate-passed" for e in entries)
    finished = [e for e in entries if e["event"] == "run-finished"]
    assert finished and finished[-1]["outcome"] == "refused"  # the failure hook ended the run
