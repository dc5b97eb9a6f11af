"""The four-eyes gate end to end on the sandbox: headless stop, approve, resume, drift.

The deploys run under ``sandbox-gated``, a copy of the sandbox profile with
``approvals: {required: true, four_eyes: true}``, in a temporary project home (RUNBOOKS_HOME),
so the checkout's parameters/ stay as they are. Alice operates; Bob approves.
"""
from __future__ import annotations

import base64
import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest
import yaml

from .conftest import REPO, Run, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

BACKEND = "veza-backend-api"
GOOD = ("v1.4.0", "v1.5.0", "v1.6.0")
ENV = "sandbox-gated"


@pytest.fixture(scope="module")
def gated_home() -> Iterator[Path]:
    home = Path(tempfile.mkdtemp(prefix="veza-gated-home-"))
    (home / "parameters").mkdir()
    shutil.copy(REPO / "parameters" / "services.yaml", home / "parameters" / "services.yaml")
    # the profile's migrations.url is relative to the project home
    shutil.copytree(REPO / "parameters" / "migrations", home / "parameters" / "migrations")
    profile = yaml.safe_load((REPO / "parameters" / "sandbox.yaml").read_text())
    profile.update(name=ENV, approvals={"required": True, "four_eyes": True, "expires_after_s": 900})
    (home / "parameters" / f"{ENV}.yaml").write_text(yaml.safe_dump(profile))
    yield home
    shutil.rmtree(home, ignore_errors=True)


_TOKENS: dict[str, str] = {}


def token_of(sandbox: Sandbox, person: str) -> str:
    """``runbook sandbox login PERSON``: the person's own Vault token (from its 0600 file)."""
    if person not in _TOKENS:
        done = sandbox.runbook("sandbox", "login", person, "--state-dir", str(sandbox.state_dir))
        assert done.returncode == 0, done.stdout + done.stderr
        path = done.stdout.split("token in ", 1)[1].split(" (mode 0600)", 1)[0]
        assert oct(Path(path).stat().st_mode & 0o777) == "0o600"
        _TOKENS[person] = Path(path).read_text().strip()
    return _TOKENS[person]


def runbook(sandbox: Sandbox, home: Path, *args: str, person: str = "alice") -> Any:
    """``runbook ARGS`` as ``person``: with their own Vault login, as they would run it."""
    return sandbox.runbook(*args, RUNBOOKS_HOME=str(home), VAULT_TOKEN=token_of(sandbox, person))


def deploy(sandbox: Sandbox, home: Path, version: str) -> Run:
    from datetime import datetime, timezone

    began = datetime.now(timezone.utc)
    result = runbook(sandbox, home, "run", str(REPO / "notebooks" / "deploy.ipynb"), "--env", ENV,
                     "-p", "service", BACKEND, "-p", "version", version, "-p", "analysis_s", "4")
    return Run(result, began, sandbox)


def image(sandbox: Sandbox) -> str:
    return sandbox.deployment(BACKEND)["spec"]["template"]["spec"]["containers"][0]["image"]


def another_good_version(sandbox: Sandbox, *avoid: str) -> str:
    running = image(sandbox).rsplit(":", 1)[1]
    return next(v for v in GOOD if v != running and v not in avoid)


def resource_versions(sandbox: Sandbox) -> dict[str, str]:
    items = json.loads(sandbox.kubectl("get", "deployments,services,secrets,replicasets,leases", "-o", "json"))["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def notifications(sandbox: Sandbox) -> list[dict[str, Any]]:
    out = sandbox.runbook("sandbox", "notifications", "--json", "--state-dir", str(sandbox.state_dir))
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def steps(run: Run) -> dict[str, str]:
    return {s["name"]: s["outcome"] for s in run.summary["steps"]}


def test_a_gated_deploy_stops_headless_then_is_approved_by_another_person_and_resumed(sandbox: Sandbox,
                                                                                    gated_home: Path) -> None:
    target = another_good_version(sandbox)
    # The Secret has drifted from Vault (a key edited by hand), so the run has a Secret to write: the
    # step the API server's fault below is aimed at. Without it, the outcome hung on test order: after
    # an earlier deploy in the same sandbox had synced it, nothing was written and no fault fired.
    stale = base64.b64encode(b"stale-by-hand").decode()
    sandbox.kubectl("patch", "secret", "veza-secrets", "-p", json.dumps({"data": {"stripe-api-key": stale}}))
    before = resource_versions(sandbox)
    stopped = deploy(sandbox, gated_home, target)

    # Stopped before any change: exit 3, every resourceVersion the same, the diff shown, people told.
    assert stopped.exit_code == 3, stopped.output
    summary = stopped.summary
    run_id = summary["run_id"]
    assert summary["outcome"] == "awaiting approval"
    assert summary["failed_step"] == "Approval: rollout"
    assert resource_versions(sandbox) == before
    assert f"+        image: registry.veza.app/{BACKEND}:{target}" in stopped.record.read_text()

    # Four eyes: Alice started it and cannot approve it, whatever name she gives; Bob's login can.
    for name in ("Alice ", "bob"):
        self_approval = runbook(sandbox, gated_home, "approve", run_id, "--as", name, "--reason", "mine")
        assert self_approval.returncode == 4, self_approval.stdout + self_approval.stderr
        assert "cannot approve" in self_approval.stderr or "belongs to alice" in self_approval.stderr
    approval = runbook(sandbox, gated_home, "approve", run_id, "--reason", "CHG-7 reviewed", person="bob")
    assert approval.returncode == 0, approval.stdout + approval.stderr
    assert "approved by bob" in approval.stdout and "signed" in approval.stdout
    assert f"+        image: registry.veza.app/{BACKEND}:{target}" in approval.stdout  # what Bob approved
    told = [m["text"] for m in notifications(sandbox) if run_id in m.get("text", "")]
    assert len(told) == 2 and "awaits approval at gate rollout" in told[0] and "approved by bob" in told[1], told

    # The resume replays the checklist and the lock (taken again) and passes the gate (the signature
    # verified by Vault, the change's digest the one signed); the API server drops the connection on
    # the Secret's write, so it fails at the secrets step, before the rollout.
    fault = sandbox.runbook("sandbox", "fault", "apiserver", "--fail-writes", "1", "--resource", "secrets",
                            "--no-answer", "--state-dir", str(sandbox.state_dir))
    assert fault.returncode == 0, fault.stderr
    try:
        failed = Run(runbook(sandbox, gated_home, "resume", run_id), stopped.began, sandbox)
    finally:
        sandbox.runbook("sandbox", "fault", "apiserver", "--clear", "--state-dir", str(sandbox.state_dir))
    assert failed.exit_code == 1, failed.output
    outcomes = steps(failed)
    assert outcomes["Pre-deployment checklist"] == outcomes["Lock"] == "replayed", outcomes
    assert outcomes["Approval: rollout"] == "succeeded" and failed.summary["failed_step"] == "Secrets from Vault"
    assert not image(sandbox).endswith(f":{target}")

    # Vault back: resuming the failed run replays up to the failed step and completes the deploy.
    resumed = Run(runbook(sandbox, gated_home, "resume", failed.summary["run_id"]), stopped.began, sandbox)
    assert resumed.exit_code == 0, resumed.output
    outcomes = steps(resumed)
    assert outcomes["Pre-deployment checklist"] == outcomes["Lock"] == "replayed", outcomes
    assert outcomes["Secrets from Vault"] == "succeeded" and outcomes["Rolling update and checks"] == "succeeded"
    assert "approved by bob" in resumed.summary["notes"]["approval rollout"]
    assert image(sandbox).endswith(f":{target}")
    assert {"relation": "resumes", "record": summary["record"]} in failed.summary["links"]
    assert {"relation": "resumes", "record": failed.summary["record"]} in resumed.summary["links"]
    assert not json.loads(sandbox.kubectl("get", "leases", "-o", "json"))["items"]

    # The records and the approval are chained in the ledger, intact.
    verify = sandbox.runbook("records", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    ledger = [json.loads(line) for line in (sandbox.records / "ledger.jsonl").read_text().splitlines()]
    assert any(e.get("kind") == "approval" and e.get("run_id") == run_id and e.get("approver") == "bob" for e in ledger)


def test_a_resume_refuses_when_the_deployment_changed_by_hand_meanwhile(sandbox: Sandbox, gated_home: Path) -> None:
    target = another_good_version(sandbox)
    stopped = deploy(sandbox, gated_home, target)
    assert stopped.exit_code == 3, stopped.output
    run_id = stopped.summary["run_id"]
    approval = runbook(sandbox, gated_home, "approve", run_id, person="bob")
    assert approval.returncode == 0, approval.stderr

    by_hand = another_good_version(sandbox, target)
    # By hand, image and version label together (a stale label would trip the canary tests that follow).
    by_hand_patch = {"spec": {"template": {"metadata": {"labels": {"version": by_hand}}, "spec": {"containers": [
        {"name": BACKEND, "image": f"registry.veza.app/{BACKEND}:{by_hand}"}]}}}}
    sandbox.kubectl("patch", "deployment", BACKEND, "-p", json.dumps(by_hand_patch))
    resumed = Run(runbook(sandbox, gated_home, "resume", run_id), stopped.began, sandbox)
    assert resumed.exit_code == 4, resumed.output
    assert resumed.summary["outcome"] == "refused"
    assert resumed.summary["failed_step"] == "Pre-deployment checklist"
    assert f"{BACKEND}:{by_hand}" in resumed.summary["error"] and "drift" in resumed.summary["error"]
    assert image(sandbox).endswith(f":{by_hand}")  # the resume changed nothing
    sandbox.kubectl("rollout", "status", f"deployment/{BACKEND}", "--timeout=60s")

    # A rollback under the same rule stops at its gate too, with the API server's diff, nothing changed.
    before = resource_versions(sandbox)
    rollback = Run(runbook(sandbox, gated_home, "run", str(REPO / "notebooks" / "rollback.ipynb"), "--env", ENV,
                           "-p", "service", BACKEND, "-p", "reason", "drill"), stopped.began, sandbox)
    assert rollback.exit_code == 3, rollback.output
    assert rollback.summary["failed_step"] == "Approval: rollback"
    assert f"-        image: registry.veza.app/{BACKEND}:{by_hand}" in rollback.record.read_text()
    assert resource_versions(sandbox) == before


def _vault_version(sandbox: Sandbox) -> int:
    import hvac

    client = hvac.Client(url=sandbox.env["VAULT_ADDR"], token=sandbox.env["VAULT_TOKEN"], timeout=5)
    return int(client.secrets.kv.v2.read_secret_version(path="veza/sandbox", mount_point="secret",
                                                         raise_on_deleted_version=True)["data"]["metadata"]["version"])


def test_a_gated_secret_rotation_stops_before_vault_is_written_then_resumes_once_approved(
        sandbox: Sandbox, gated_home: Path) -> None:
    from datetime import datetime, timezone

    version, before = _vault_version(sandbox), resource_versions(sandbox)
    began = datetime.now(timezone.utc)
    stopped = Run(runbook(sandbox, gated_home, "run", str(REPO / "notebooks" / "secrets_rotation.ipynb"), "--env", ENV,
                          "-p", "keys", "jwt_secret", "-p", "reason", "CHG-11 quarterly"), began, sandbox)
    assert stopped.exit_code == 3, stopped.output[-3000:]
    assert stopped.summary["failed_step"] == "Approval: rotation"
    assert _vault_version(sandbox) == version and resource_versions(sandbox) == before, "nothing written before consent"
    assert f"secret/veza/sandbox: version {version} -> {version + 1}, jwt_secret get new generated values" \
        in stopped.record.read_text()

    approval = runbook(sandbox, gated_home, "approve", stopped.summary["run_id"], person="bob")
    assert approval.returncode == 0, approval.stdout + approval.stderr
    resumed = Run(runbook(sandbox, gated_home, "resume", stopped.summary["run_id"]), began, sandbox)
    assert resumed.exit_code == 0, resumed.output[-3000:]
    assert steps(resumed)["Write the new Vault version"] == "succeeded"
    assert _vault_version(sandbox) == version + 1
    assert "approved by bob" in resumed.summary["notes"]["approval rotation"]


def test_a_gated_failover_drill_stops_before_the_primary_is_touched(sandbox: Sandbox, gated_home: Path) -> None:
    from datetime import datetime, timezone

    status = json.loads(sandbox.runbook("sandbox", "status", "--json", "--state-dir", str(sandbox.state_dir)).stdout)
    stopped = Run(runbook(sandbox, gated_home, "run", str(REPO / "notebooks" / "dr_drill.ipynb"), "--env", ENV,
                          "-p", "scenario", "failover"), datetime.now(timezone.utc), sandbox)
    assert stopped.exit_code == 3, stopped.output[-3000:]
    assert stopped.summary["failed_step"] == "Approval: drill"
    assert "- the primary taken down: runbook sandbox postgres kill-primary" in stopped.record.read_text()
    assert [s["name"] for s in stopped.summary["steps"]][-1] == "Approval: drill", "no heartbeat, no fault before it"
    after = json.loads(sandbox.runbook("sandbox", "status", "--json", "--state-dir", str(sandbox.state_dir)).stdout)
    assert after["postgres"]["primary"] == status["postgres"]["primary"] and after["postgres"]["primary"]["running"]


def test_the_game_day_gated_scenario_stops_is_approved_by_a_second_person_and_resumes(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    """The game day's own code path, with the shipped profile sandbox-gated (`extends: sandbox`):
    Alice's run stops at its gate, her own approval is refused, Bob's is taken, her resume rolls out."""
    from runbooks_lib.procedures.gameday.gameday import Scenario, ScenarioApproval, run_gameday

    monkeypatch.setenv("RUNBOOKS_HOME", str(REPO))
    monkeypatch.setenv("RUNBOOKS_SANDBOX_ENV", str(sandbox.state_dir / "env"))
    target = another_good_version(sandbox)
    scenario = Scenario(name="gated deploy", notebook="notebooks/deploy.ipynb", env="sandbox-gated",
                        approval=ScenarioApproval(operator="alice", approver="bob", reason="CHG-9 reviewed"),
                        parameters={"service": BACKEND, "version": target, "analysis_s": 4}, expect="succeeded")
    [result] = run_gameday("sandbox", [scenario], home=REPO)

    assert result.outcome == "succeeded", result.error
    assert result.as_expected, result.platform_after
    assert image(sandbox).endswith(f":{target}")
    from runbooks_lib.records.summary import read_summary

    resumed = read_summary(result.record)
    assert resumed is not None and resumed["operator"] == "alice"
    assert "approved by bob" in resumed["notes"]["approval rollout"]
    [original] = [link["record"] for link in resumed["links"] if link["relation"] == "resumes"]
    stopped = read_summary(sandbox.records / original)
    assert stopped is not None and stopped["outcome"] == "awaiting approval" and stopped["operator"] == "alice"
    ledger = [json.loads(line) for line in (sandbox.records / "ledger.jsonl").read_text().splitlines()]
    approvals = [e for e in ledger if e.get("kind") == "approval" and e.get("run_id") == stopped["run_id"]]
    assert [e.get("approver") for e in approvals] == ["bob"]  # Alice's own was refused, not recorded
