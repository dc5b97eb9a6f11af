"""The deploy runbook end to end on the sandbox: rolling, blue-green, automatic rollback, lock, guard.

Rolling scenarios use veza-backend-api (3 replicas, the guide's maxSurge 1 / maxUnavailable 0),
blue-green ones veza-chat-server; the load generator's counts prove zero-downtime.
"""
from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from datetime import datetime, timezone

import pytest
import yaml

from .conftest import REPO, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

BACKEND = "veza-backend-api"
CHAT = "veza-chat-server"


def image(sandbox: Sandbox, deployment: str) -> str:
    return sandbox.deployment(deployment)["spec"]["template"]["spec"]["containers"][0]["image"]


def versions(deployment: dict) -> str:
    return deployment["spec"]["template"]["metadata"]["labels"]["version"]


def resource_versions(sandbox: Sandbox) -> dict[str, str]:
    items = json.loads(sandbox.kubectl("get", "deployments,services,secrets,replicasets,leases", "-o", "json"))["items"]
    return {f"{i['kind']}/{i['metadata']['name']}": i["metadata"]["resourceVersion"] for i in items}


def test_health_check_passes_on_the_fresh_sandbox(sandbox: Sandbox) -> None:
    run = sandbox.run("health_check", ("window_minutes", 2))
    assert run.exit_code == 0, run.output
    assert run.summary["outcome"] == "succeeded"
    assert run.summary["figures"]["services_ready"] == 4
    assert run.summary["figures"]["failed_checks"] == 0


def test_dry_run_changes_nothing_and_shows_the_diff(sandbox: Sandbox) -> None:
    before = resource_versions(sandbox)
    run = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.6.0"), ("dry_run", True))
    assert run.exit_code == 0, run.output
    assert resource_versions(sandbox) == before
    assert image(sandbox, BACKEND).endswith(":v1.5.0")
    text = run.record.read_text()
    assert "-        image: registry.veza.app/veza-backend-api:v1.5.0" in text
    assert "+        image: registry.veza.app/veza-backend-api:v1.6.0" in text


def test_rolling_deploy_of_a_good_version_loses_no_request(sandbox: Sandbox) -> None:
    run = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.6.0"), ("change_cause", "release 1.6"),
                      ("ticket", "CHG-42"))
    assert run.exit_code == 0, run.output
    summary = run.summary
    assert summary["outcome"] == "succeeded"
    assert image(sandbox, BACKEND).endswith(":v1.6.0")
    traffic = sandbox.traffic(run.began)[BACKEND]
    assert traffic["requests"] > 50 and traffic["failed"] == 0, traffic
    assert summary["figures"]["failed_requests"] == 0
    history = sandbox.kubectl("rollout", "history", f"deployment/{BACKEND}")
    assert "release 1.6 (ticket CHG-42" in history


def test_a_version_that_never_becomes_ready_is_rolled_back(sandbox: Sandbox) -> None:
    run = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.5.3-noready"))
    assert run.exit_code == 1, run.output
    summary = run.summary
    assert summary["outcome"] == "failed"
    assert summary["failed_step"] == "Rolling update and checks"
    assert "not rolled out" in summary["error"] and "rolled back to revision" in summary["error"]
    assert summary["figures"]["rolled_back"] is True
    assert 0 < summary["figures"]["time_to_rollback_s"] < 60
    assert image(sandbox, BACKEND).endswith(":v1.6.0")
    assert sandbox.traffic(run.began)[BACKEND]["failed"] == 0


def test_a_version_answering_errors_is_rolled_back_with_the_numbers(sandbox: Sandbox) -> None:
    run = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.5.1-errors"), ("analysis_s", 8))
    assert run.exit_code == 1, run.output
    summary = run.summary
    assert summary["outcome"] == "failed" and summary["figures"]["rolled_back"] is True
    error = summary["error"]
    # Whichever check caught it first (smoke requests or the golden signals), it names its numbers.
    assert re.search(r"smoke checks failed: /api/v1/\S+: \d+/\d+ failed \(\{'500'|v1\.5\.1-errors: success rate \d+\.\d+ %", error), error
    assert image(sandbox, BACKEND).endswith(":v1.6.0")
    rolled_back = datetime.now(timezone.utc)
    time.sleep(2)
    after = sandbox.traffic(rolled_back)[BACKEND]  # the previous version alone serves again
    assert after["requests"] > 0 and after["failed"] == 0 and set(after["by_version"]) == {"v1.6.0"}, after


def test_deploying_a_version_that_failed_before_needs_the_override(sandbox: Sandbox) -> None:
    before = resource_versions(sandbox)
    run = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.5.1-errors"))
    assert run.exit_code == 2, run.output
    error = run.summary["error"]
    assert "v1.5.1-errors is known bad: deploy failed and rolled back" in error and "record sandbox/" in error, error
    assert "-p allow_known_bad True -p change_cause" in error
    assert resource_versions(sandbox) == before


def test_two_deploys_at_once_one_is_refused_and_neither_is_half_applied(sandbox: Sandbox) -> None:
    first = subprocess.Popen(
        [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/deploy.ipynb", "--env", "sandbox",
         # A long analysis keeps the first deploy holding its lock while the second one starts,
         # even when a loaded machine takes many seconds to start the second kernel.
         "-p", "service", BACKEND, "-p", "version", "v1.4.0", "-p", "analysis_s", "30"],
        cwd=REPO, env=sandbox.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while "runbook-lock-veza-backend-api" not in sandbox.kubectl("get", "leases", "-o", "name"):
            assert time.monotonic() < deadline and first.poll() is None, "the first deploy never took the lock"
            time.sleep(0.1)
        second = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.5.0"))
        out, err = first.communicate(timeout=300)
    finally:
        first.kill() if first.poll() is None else None
    assert second.exit_code == 4, second.output
    assert second.summary["outcome"] == "refused" and "refusing a concurrent deploy" in second.summary["error"]
    assert first.returncode == 0, out + err
    assert image(sandbox, BACKEND).endswith(":v1.4.0")
    assert "runbook-lock" not in sandbox.kubectl("get", "leases", "-o", "name")  # released


def test_production_profile_pointed_at_the_sandbox_is_refused(sandbox: Sandbox) -> None:
    before = resource_versions(sandbox)
    kubeconfig = yaml.safe_load(open(sandbox.env["KUBECONFIG"]))
    run = sandbox.run(
        "deploy", ("service", BACKEND), ("version", "v1.6.0"), env="production",
        KUBECONFIG=sandbox.env["KUBECONFIG"], VEZA_PRODUCTION_CONTEXT=kubeconfig["current-context"],
    )
    assert run.exit_code == 4, run.output
    assert run.summary["outcome"] == "refused" and "wrong cluster for env 'production'" in run.summary["error"]
    assert resource_versions(sandbox) == before


def test_blue_green_deploy_flips_with_no_failed_request(sandbox: Sandbox) -> None:
    run = sandbox.run("deploy", ("service", CHAT), ("version", "v1.6.0"), ("strategy", "blue-green"),
                      ("analysis_s", 5), ("monitor_s", 5))
    assert run.exit_code == 0, run.output
    selector = json.loads(sandbox.kubectl("get", "service", CHAT, "-o", "json"))["spec"]["selector"]
    assert selector == {"app": CHAT, "color": "green"}
    assert image(sandbox, f"{CHAT}-green").endswith(":v1.6.0")
    assert f"deployment.apps/{CHAT}\n" not in sandbox.kubectl("get", "deployments", "-o", "name")
    assert sandbox.traffic(run.began)[CHAT]["failed"] == 0
    assert run.summary["figures"]["flip_s"] < 5


def test_blue_green_bad_version_is_caught_before_any_traffic_reaches_it(sandbox: Sandbox) -> None:
    run = sandbox.run("deploy", ("service", CHAT), ("version", "v1.5.1-errors"), ("strategy", "blue-green"),
                      ("analysis_s", 5), ("monitor_s", 5))
    assert run.exit_code == 1, run.output
    summary = run.summary
    assert summary["failed_step"] == "Deploy and test the new colour (blue)"  # green is live
    # Whichever pre-flip check caught it names its numbers: the smoke requests, or (when those ten
    # all passed, as they do at 8 % errors 43 % of the time) the error-budget test over 300 requests.
    assert re.search(r"/api/v1/rooms: \d+/10 failed|error budget: \d+/300 requests failed \(\d+\.\d%\); .* p = \S+ < 0\.01",
                     summary["error"]), summary["error"]
    selector = json.loads(sandbox.kubectl("get", "service", CHAT, "-o", "json"))["spec"]["selector"]
    assert selector["color"] == "green"  # never moved
    assert f"{CHAT}-blue" not in sandbox.kubectl("get", "deployments", "-o", "name")
    assert sandbox.traffic(run.began)[CHAT]["failed"] == 0  # users never saw the bad version


def test_blue_green_flips_back_when_green_degrades_under_traffic(sandbox: Sandbox) -> None:
    """A fault that smoke tests cannot see appears after the flip: the monitor flips back at once."""
    began = datetime.now(timezone.utc)
    deploy = subprocess.Popen(
        [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/deploy.ipynb", "--env", "sandbox",
         "-p", "service", CHAT, "-p", "version", "v1.4.0", "-p", "strategy", "blue-green",
         "-p", "analysis_s", "5", "-p", "monitor_s", "8"],
        cwd=REPO, env=sandbox.environ(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while json.loads(sandbox.kubectl("get", "service", CHAT, "-o", "json"))["spec"]["selector"].get("color") != "blue":
            assert time.monotonic() < deadline and deploy.poll() is None, "the deploy never flipped to blue"
            time.sleep(0.2)
        # In this process, at once: `runbook sandbox fault` is a new Python process, which a
        # loaded machine can take longer to start than the monitoring window lasts.
        from runbooks_sandbox.stack import Sandbox as Stack

        for pod in sandbox.kubectl("get", "pods", "-l", f"app={CHAT},color=blue", "-o", "name").split():
            Stack(sandbox.state_dir).fault(pod.removeprefix("pod/"), {"error_rate": 0.3})
        out, err = deploy.communicate(timeout=300)
    finally:
        deploy.kill() if deploy.poll() is None else None
    assert deploy.returncode == 1, out + err
    from runbooks_lib.run.runner import read_summary

    summary = read_summary(next(l[8:] for l in out.splitlines() if l.startswith("record: ")))
    assert summary["failed_step"] == "Monitor blue"
    assert "flipped back to green" in summary["error"] and "success rate" in summary["error"], summary["error"]
    assert summary["figures"]["flip_back_s"] < 5
    selector = json.loads(sandbox.kubectl("get", "service", CHAT, "-o", "json"))["spec"]["selector"]
    assert selector["color"] == "green"
    assert f"{CHAT}-blue" not in sandbox.kubectl("get", "deployments", "-o", "name")
    after_flip_back = datetime.now(timezone.utc)
    time.sleep(3)
    traffic = sandbox.traffic(after_flip_back)[CHAT]
    assert traffic["requests"] > 0 and traffic["failed"] == 0, traffic
    assert sandbox.traffic(began)[CHAT]["by_version"].get("v1.4.0", {}).get("failed", 0) > 0  # the fault was real
