"""`runbook schedule`: a CronJob that runs a runbook headless inside the cluster, end to end.

The scheduled health check is started at once as Kubernetes would on schedule
(`kubectl create job --from=cronjob/...`); its pod runs `runbook run` in the runner image and
its sealed record lands in the records folder the scheduling shell named (RUNBOOKS_RECORDS_URL).
"""
from __future__ import annotations

import json
import subprocess

import pytest

from runbooks_lib.run.runner import read_summary
from runbooks_lib.run.schedule import apply_cronjob, runbook_cronjob

from .conftest import REPO, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(400)]
CRONJOB = "runbook-health-check-sandbox"


def schedule(sandbox: Sandbox, *extra: str) -> subprocess.CompletedProcess[str]:
    return sandbox.runbook("schedule", "notebooks/health_check.ipynb", "--env", "sandbox", "--cron", "0 3 1 * *",
                           "-p", "window_minutes", "2", *extra)


def test_the_cronjob_runs_the_runbook_in_the_runner_image_and_a_dry_run_stores_nothing(
        sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in sandbox.environ().items():
        if key.startswith("RUNBOOKS_"):
            monkeypatch.setenv(key, value)
    cronjob = runbook_cronjob(REPO / "notebooks" / "health_check.ipynb", "sandbox", "0 3 1 * *",
                              [("window_minutes", "2")], home=REPO)
    assert cronjob["kind"] == "CronJob" and cronjob["metadata"]["name"] == CRONJOB
    assert cronjob["metadata"]["namespace"] == "veza-sandbox"
    assert cronjob["spec"]["schedule"] == "0 3 1 * *" and cronjob["spec"]["concurrencyPolicy"] == "Forbid"
    container = cronjob["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"][0]
    assert container["image"].startswith("registry.veza.app/veza-runbooks:v")
    assert container["command"] == ["runbook", "run", "notebooks/health_check.ipynb", "--env", "sandbox",
                                    "-p", "window_minutes", "2"]
    assert {"name": "RUNBOOKS_RECORDS_URL", "value": str(sandbox.records)} in container["env"]
    assert apply_cronjob(cronjob, "sandbox", dry_run=True, home=REPO) == "created"
    listed = json.loads(sandbox.kubectl("get", "cronjobs", "-o", "json"))["items"]
    assert CRONJOB not in [c["metadata"]["name"] for c in listed]  # a dry run stores nothing


def test_a_scheduled_health_check_runs_as_a_job_and_seals_its_record(sandbox: Sandbox) -> None:
    applied = schedule(sandbox, "--apply")
    assert applied.returncode == 0 and f"cronjob.batch/{CRONJOB} created" in applied.stdout, applied.stderr
    printed = schedule(sandbox)  # without --apply: the YAML, for a review or a GitOps repository
    assert printed.returncode == 0 and f"name: {CRONJOB}" in printed.stdout, printed.stderr
    before = set(sandbox.records.rglob("health_check-*.ipynb"))
    sandbox.kubectl("create", "job", "health-check-now", f"--from=cronjob/{CRONJOB}")
    waited = subprocess.run(["kubectl", "--kubeconfig", sandbox.env["KUBECONFIG"], "-n", "veza-sandbox", "wait",
                             "--for=condition=complete", "job/health-check-now", "--timeout=240s"],
                            capture_output=True, text=True, timeout=260)
    log = sandbox.kubectl("logs", "job/health-check-now")
    assert waited.returncode == 0, f"{waited.stderr}\n{log[-3000:]}"
    records = set(sandbox.records.rglob("health_check-*.ipynb")) - before
    assert len(records) == 1, log[-3000:]
    record = records.pop()
    assert f"record: {record}" in log
    summary = read_summary(record)
    assert summary is not None and summary["outcome"] == "succeeded" and summary["env"] == "sandbox"
    assert summary["parameters"]["window_minutes"] == 2
    verified = sandbox.runbook("records", "verify", "--root", str(sandbox.records))
    assert verified.returncode == 0, verified.stdout + verified.stderr
    cronjob = json.loads(sandbox.kubectl("get", "cronjob", CRONJOB, "-o", "json"))
    assert cronjob["status"].get("lastSuccessfulTime")
