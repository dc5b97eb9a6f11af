"""Fault drills (issue 15): the platform fails under a deploy; the run ends honestly, nothing is lost.

Each drill breaks something real on the sandbox with `runbook sandbox fault` (or kills the
`runbook run` process), runs the deploy runbook as on-call engineers do, and reads what happened
from the cluster, the load generator, the record and the journal: the service kept serving
(0 failed requests), no Lease is left held, and the run either went through or ended with a
sealed record that a `runbook resume` completes.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from typing import Any

import nbformat
import pytest

from runbooks_lib.run.runner import read_summary

from .conftest import REPO, Run, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

BACKEND = "veza-backend-api"
GOOD = ("v1.4.0", "v1.5.0", "v1.6.0")
LOCK = f"runbook-lock-{BACKEND}"


def fault(sandbox: Sandbox, *args: str) -> str:
    out = sandbox.runbook("sandbox", "fault", *args, "--state-dir", str(sandbox.state_dir))
    assert out.returncode == 0, out.stdout + out.stderr
    return out.stdout


def image(sandbox: Sandbox) -> str:
    return sandbox.deployment(BACKEND)["spec"]["template"]["spec"]["containers"][0]["image"]


def another_good_version(sandbox: Sandbox) -> str:
    running = image(sandbox).rsplit(":", 1)[1]
    return next(v for v in GOOD if v != running)


def leases(sandbox: Sandbox) -> list[str]:
    return [i["metadata"]["name"] for i in json.loads(sandbox.kubectl("get", "leases", "-o", "json"))["items"]]


def resource_versions(sandbox: Sandbox) -> dict[str, str]:
    items = json.loads(sandbox.kubectl("get", "deployments,services,secrets,replicasets", "-o", "json"))["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def failed_requests(sandbox: Sandbox, since: datetime) -> int:
    return sandbox.traffic(since)[BACKEND]["failed"]


def outputs_text(record: Any) -> str:
    """Every stream output of a record, joined: what the run printed, as the record keeps it."""
    nb = nbformat.read(str(record), as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "stream")


def steps(summary: dict[str, Any]) -> dict[str, str]:
    return {s["name"]: s["outcome"] for s in summary["steps"]}


def deploy(sandbox: Sandbox, version: str) -> Run:
    return sandbox.run("deploy", ("service", BACKEND), ("version", version), ("analysis_s", 4))


def test_a_deploy_while_the_api_server_refuses_requests_and_a_dead_run_left_its_lease(sandbox: Sandbox) -> None:
    """The API server refuses a fifth of all requests (503) and a run of another machine died
    holding the lock a minute ago: the deploy takes the stale lock over, sends each refused
    request again, and rolls out with no failed request."""
    target = another_good_version(sandbox)
    a_minute_ago = datetime.fromtimestamp(time.time() - 60, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    stale = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": LOCK},
             "spec": {"holderIdentity": "run-elsewhere", "leaseDurationSeconds": 30,
                      "acquireTime": a_minute_ago, "renewTime": a_minute_ago}}
    applied = subprocess.run(["kubectl", "--kubeconfig", sandbox.env["KUBECONFIG"], "-n", "veza-sandbox", "apply",
                              "-f", "-"], input=json.dumps(stale), capture_output=True, text=True, timeout=60)
    assert applied.returncode == 0, applied.stderr
    began = datetime.now(timezone.utc)
    fault(sandbox, "apiserver", "--error-rate", "0.2")
    try:
        run = deploy(sandbox, target)
    finally:
        cleared = fault(sandbox, "apiserver", "--clear")

    assert run.exit_code == 0, run.output
    assert "took over a stale lock of run-elsewhere" in run.output
    printed = outputs_text(run.record)
    retried = printed.count("⟳ API server: HTTP 503 on ")
    assert retried > 0, printed[-2000:]
    assert run.summary["figures"]["api_server_retries"] == retried
    refused = int(cleared.split("(")[1].split(" ")[0])  # "... cleared (N request(s) were refused ...)"
    assert refused >= retried
    assert image(sandbox).endswith(f":{target}")
    assert LOCK not in leases(sandbox)
    assert failed_requests(sandbox, began) == 0


def test_a_deploy_whose_change_landed_but_whose_answer_was_lost_reads_it_back_and_carries_on(sandbox: Sandbox) -> None:
    """The API server applies the image change, then answers 500 (the answer lost after etcd's
    commit). The runbook neither reports "failed" while the new version rolls out unsupervised nor
    sends the change again blindly: it reads the Deployment back, sees the change, says so, and
    waits and checks as for any deploy."""
    target = another_good_version(sandbox)
    began = datetime.now(timezone.utc)
    fault(sandbox, "apiserver", "--fail-writes", "1", "--resource", "deployments")
    try:
        run = deploy(sandbox, target)
    finally:
        cleared = fault(sandbox, "apiserver", "--clear")
    assert run.exit_code == 0, run.output[-3000:]
    printed = outputs_text(run.record)
    assert "(HTTP 500)" in printed and f"read back: deployment/{BACKEND} has the change" in printed, printed[-2000:]
    assert steps(run.summary)["Rolling update and checks"] == "succeeded"
    assert image(sandbox).endswith(f":{target}")
    assert "1 write(s) were applied and their answer lost" in cleared, cleared  # the fault did hit the change
    assert LOCK not in leases(sandbox)
    assert failed_requests(sandbox, began) == 0


def test_vault_sealed_stops_a_deploy_before_any_change_and_it_resumes_once_unsealed(sandbox: Sandbox) -> None:
    target = another_good_version(sandbox)
    began = datetime.now(timezone.utc)
    before = resource_versions(sandbox)
    fault(sandbox, "vault", "--seal")
    try:
        failed = deploy(sandbox, target)
        assert failed.exit_code == 1, failed.output
        assert failed.summary["failed_step"] == "Secrets from Vault"
        assert "sealed" in failed.summary["error"]
        assert resource_versions(sandbox) == before  # nothing changed: not the Secret, not the Deployment
        assert LOCK not in leases(sandbox)
    finally:
        fault(sandbox, "vault", "--clear")

    resumed = Run(sandbox.runbook("resume", failed.summary["run_id"]), began, sandbox)
    assert resumed.exit_code == 0, resumed.output
    outcomes = steps(resumed.summary)
    assert outcomes["Pre-deployment checklist"] == outcomes["Lock"] == "replayed", outcomes
    assert outcomes["Secrets from Vault"] == "succeeded" and outcomes["Rolling update and checks"] == "succeeded"
    assert image(sandbox).endswith(f":{target}")
    assert LOCK not in leases(sandbox)
    assert failed_requests(sandbox, began) == 0


def test_runbook_run_killed_mid_rollout_is_ended_by_its_watcher_then_resumed(sandbox: Sandbox) -> None:
    """SIGKILL of `runbook run` while the pods roll: within seconds the run has a sealed record
    saying where it died, its lease is free and people are told; `runbook resume` finishes it."""
    target = another_good_version(sandbox)
    began = datetime.now(timezone.utc)
    runner = subprocess.Popen(
        [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/deploy.ipynb", "--env", "sandbox",
         "-p", "service", BACKEND, "-p", "version", target, "-p", "analysis_s", "4"],
        env=sandbox.environ(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    run_id = None
    deadline = time.monotonic() + 180
    try:
        while not image(sandbox).endswith(f":{target}"):  # the rollout has begun
            assert runner.poll() is None, "the deploy ended before its rollout began"
            assert time.monotonic() < deadline, "the rollout did not begin within 180 s"
            time.sleep(0.1)
        lease = json.loads(sandbox.kubectl("get", "lease", LOCK, "-o", "json"))
        run_id = lease["spec"]["holderIdentity"]
        journal = sandbox.records / "journal" / "sandbox" / f"{run_id}.jsonl"
        # Killed once the run has journaled its change (as it does when the controller takes it):
        # killed earlier, a resume refuses it as drift, which is the safe side but another test.
        while not any(e.get("event") == "state" and any(str(s.get("image", "")).endswith(f":{target}")
                                                        for s in e.get("states", []))
                      for e in map(json.loads, journal.read_text().splitlines())):
            assert runner.poll() is None and time.monotonic() < deadline, "the run never journaled its rollout"
            time.sleep(0.05)
    finally:
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
    killed_at = time.monotonic()

    ended: dict[str, Any] = {}
    while not ended and time.monotonic() - killed_at < 30:
        time.sleep(0.5)
        entries = [json.loads(line) for line in journal.read_text().splitlines()]
        ended = next((e for e in entries if e.get("event") == "run-finished"), {})
    assert ended.get("runner_died") is True, f"the run was not ended within 30 s: {entries[-3:]}"
    assert ended["failed_step"] == "Rolling update and checks"
    started = entries[0]
    summary = read_summary(sandbox.records / started["record"])
    assert summary is not None and summary["outcome"] == "failed"
    assert "runbook run process died at step" in summary["error"] and "Rolling update and checks" in summary["error"]
    assert LOCK not in leases(sandbox)
    told = [m["text"] for m in json.loads(sandbox.runbook("sandbox", "notifications", "--json", "--state-dir",
                                                          str(sandbox.state_dir)).stdout)]
    assert any(run_id in text and "died" in text for text in told), told

    resumed = Run(sandbox.runbook("resume", run_id), began, sandbox)
    assert resumed.exit_code == 0, resumed.output
    outcomes = steps(resumed.summary)
    assert outcomes["Pre-deployment checklist"] == outcomes["Lock"] == outcomes["Secrets from Vault"] == "replayed"
    assert outcomes["Rolling update and checks"] == "succeeded"
    assert {"relation": "resumes", "record": started["record"]} in resumed.summary["links"]
    assert image(sandbox).endswith(f":{target}")
    assert LOCK not in leases(sandbox)
    assert failed_requests(sandbox, began) == 0
    verify = sandbox.runbook("records", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_prometheus_stopped_during_a_deploy_fails_its_checks_without_blaming_the_version_then_it_resumes(
        sandbox: Sandbox) -> None:
    """Prometheus stops once the rollout has begun (the checklist saw it up): nothing can judge the
    new version, so the deploy fails at its checks, and the version is not marked bad for it.
    Once Prometheus is back, `runbook resume` finishes the deploy."""
    target = another_good_version(sandbox)
    began = datetime.now(timezone.utc)
    runner = subprocess.Popen(
        [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/deploy.ipynb", "--env", "sandbox",
         "-p", "service", BACKEND, "-p", "version", target, "-p", "analysis_s", "4"],
        env=sandbox.environ(), cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 180
        while not image(sandbox).endswith(f":{target}"):  # the checklist passed, the rollout has begun
            assert runner.poll() is None and time.monotonic() < deadline, "the rollout did not begin"
            time.sleep(0.1)
        fault(sandbox, "prometheus", "--down")
        output, _ = runner.communicate(timeout=300)
    finally:
        runner.kill()
        fault(sandbox, "prometheus", "--clear")
    failed = Run(subprocess.CompletedProcess(runner.args, runner.returncode, output, ""), began, sandbox)
    assert failed.exit_code == 1, failed.output
    assert failed.summary["failed_step"] == "Rolling update and checks", failed.summary["error"]
    assert "Prometheus" in failed.summary["error"]
    assert not [v for v in failed.summary["verdicts"] if v["version"] == target and v["verdict"] == "bad"]
    assert LOCK not in leases(sandbox)

    resumed = Run(sandbox.runbook("resume", failed.summary["run_id"]), began, sandbox)
    assert resumed.exit_code == 0, resumed.output
    assert steps(resumed.summary)["Rolling update and checks"] == "succeeded"
    assert image(sandbox).endswith(f":{target}")
    assert failed_requests(sandbox, began) == 0
