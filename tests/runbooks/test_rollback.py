"""The rollback runbook on the sandbox: to the previous revision, to an explicit one, and refusals.

The scenarios run in order on veza-stream-server and build on each other's history, mixing the
runbooks with plain kubectl as on-call engineers do; the last ones use veza-backend-api, whose
history the deploy tests filled with bad releases.
"""
from __future__ import annotations

import json
import time
from datetime import datetime, timezone

import pytest

from runbooks_lib.procedures.judging.judgement import evidence

from .conftest import Sandbox
from .test_deploy import image, resource_versions

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

STREAM = "veza-stream-server"
QUICK = ("analysis_s", 4)  # the deploys here only set up a history; their judgement is test_deploy's


def test_rollback_to_the_previous_revision_is_fast_and_linked(sandbox: Sandbox) -> None:
    deploy = sandbox.run("deploy", ("service", STREAM), ("version", "v1.6.0"), QUICK)
    assert deploy.exit_code == 0, deploy.output
    run = sandbox.run("rollback", ("service", STREAM), ("reason", "drill"))
    assert run.exit_code == 0, run.output
    summary = run.summary
    assert image(sandbox, STREAM).endswith(":v1.5.0")
    assert 0 < summary["figures"]["time_to_rollback_s"] <= 15  # goal for a few replicas
    assert summary["figures"]["to_revision"] == 1
    assert any(l["relation"] == "undoes" and deploy.summary["run_id"] in l["record"] for l in summary["links"])
    history = sandbox.kubectl("rollout", "history", f"deployment/{STREAM}")
    assert "\n2 " in history and "\n3 " in history and "\n1 " not in history  # revision 1 was reused as 3
    # What the run learned: the target recovered the service; the undone release served well
    # before the rollback (a drill), so it is rolled back, not blamed, and stays deployable.
    verdicts = {(v["version"], v["verdict"]) for v in summary["verdicts"]}
    assert verdicts == {("v1.5.0", "good")}, summary["verdicts"]
    assert summary["notes"]["not blamed"].startswith("v1.6.0 rolled back, not blamed: success 100.00 % of ")
    assert summary["notes"]["not blamed"].endswith(": drill")
    assert summary["figures"]["success_rate"] >= 0.99
    # Beside the verdict, what the judged requests could rule out, by the canary judge's test.
    figures = summary["figures"]
    weight = evidence(0.99, figures["judged_requests"], figures["success_rate"])
    assert weight is not None and figures["judged_requests_needed"] == weight.needed
    assert weight.text in run.record.with_suffix(".html").read_text()  # in the Verify table a person reads


def test_rolling_back_onto_a_known_bad_version_is_refused_then_overridden(sandbox: Sandbox) -> None:
    # v1.6.0 again, declared defective by the operator as it is rolled back (its signals were fine).
    deploy = sandbox.run("deploy", ("service", STREAM), ("version", "v1.6.0"), QUICK)
    assert deploy.exit_code == 0, deploy.output
    declared = sandbox.run("rollback", ("service", STREAM), ("reason", "drill: v1.6.0 corrupts uploads"),
                           ("defective", True))
    assert declared.exit_code == 0, declared.output
    assert ("v1.6.0", "bad") in {(v["version"], v["verdict"]) for v in declared.summary["verdicts"]}
    deploy = sandbox.run("deploy", ("service", STREAM), ("version", "v1.4.0"), QUICK)
    assert deploy.exit_code == 0, deploy.output
    before = resource_versions(sandbox)
    v160 = _revision_of(sandbox, STREAM, "v1.6.0")
    refused = sandbox.run("rollback", ("service", STREAM), ("to_revision", v160))
    assert refused.exit_code == 2, refused.output
    error = refused.summary["error"]
    assert "v1.6.0 is known bad: declared defective by" in error and "drill: v1.6.0 corrupts uploads" in error, error
    assert "record sandbox/" in error, error
    v150 = _revision_of(sandbox, STREAM, "v1.5.0")
    assert f"-p to_revision {v150}" in error and "(v1.5.0," in error, error  # the newest good revision, proposed
    assert refused.summary["failed_step"] == "Plan the rollback"
    assert resource_versions(sandbox) == before  # nothing changed

    run = sandbox.run("rollback", ("service", STREAM), ("to_revision", v160), ("allow_known_bad", True),
                      ("reason", "drill: v1.6.0 is fixed by a config change"))
    assert run.exit_code == 0, run.output
    assert image(sandbox, STREAM).endswith(":v1.6.0")
    override = run.summary["notes"]["override"]
    assert "v1.6.0 is known bad" in override and "drill: v1.6.0 is fixed by a config change" in override


def _revision_of(sandbox: Sandbox, deployment: str, version: str) -> int:
    """The revision whose ReplicaSet runs ``version`` (its number changes as revisions are reused)."""
    replica_sets = json.loads(sandbox.kubectl("get", "replicasets", "-l", f"app={deployment}", "-o", "json"))["items"]
    found = next(rs for rs in replica_sets if rs["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{version}")
                 and rs["metadata"]["labels"].get("version") == version)
    return int(found["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def test_kubectl_set_image_and_undo_mixed_with_the_runbook(sandbox: Sandbox) -> None:
    """`kubectl set image` leaves the template's version label stale: the runbook reads the image."""
    sandbox.kubectl("set", "image", f"deployment/{STREAM}", f"{STREAM}=registry.veza.app/{STREAM}:v1.5.0")
    sandbox.kubectl("rollout", "status", f"deployment/{STREAM}", "--timeout=120s")
    stale = sandbox.deployment(STREAM)["spec"]["template"]["metadata"]["labels"]["version"]
    assert stale == "v1.6.0"  # the label lies: v1.5.0 runs
    sandbox.kubectl("rollout", "undo", f"deployment/{STREAM}")
    sandbox.kubectl("rollout", "status", f"deployment/{STREAM}", "--timeout=120s")
    assert image(sandbox, STREAM).endswith(":v1.6.0")

    began = time.monotonic()
    run = sandbox.run("rollback", ("service", STREAM), ("reason", "back to what kubectl set"))
    assert run.exit_code == 0, run.output
    assert time.monotonic() - began < 120  # seconds, not the 300 s timeout of a wait for the wrong version
    assert image(sandbox, STREAM).endswith(":v1.5.0")
    summary = run.summary
    assert summary["figures"]["time_to_rollback_s"] < 30
    text = run.record.read_text()
    assert "label version=v1.6.0 disagrees with the image (v1.5.0)" in text  # the history's warning
    assert "(v1.5.0, registry.veza.app/veza-stream-server:v1.5.0" in text  # the plan names what runs
    assert "veza-stream-server serving v1.5.0" in text  # and the wait waits for it


def test_a_rollback_onto_an_erroring_version_is_reported_failed(sandbox: Sandbox) -> None:
    BACKEND = "veza-backend-api"
    replica_sets = json.loads(sandbox.kubectl("get", "replicasets", "-l", f"app={BACKEND}", "-o", "json"))["items"]
    erroring = next(rs for rs in replica_sets
                    if rs["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v1.5.1-errors"))
    revision = int(erroring["metadata"]["annotations"]["deployment.kubernetes.io/revision"])
    # A deploy record says v1.5.1-errors failed: refused without the override ...
    refused = sandbox.run("rollback", ("service", BACKEND), ("to_revision", revision))
    assert refused.exit_code == 2 and "v1.5.1-errors is known bad: deploy failed" in refused.summary["error"], refused.output
    # ... and with it, the rollback itself works, but Verify proves the service did not recover.
    run = sandbox.run("rollback", ("service", BACKEND), ("to_revision", revision), ("allow_known_bad", True),
                      ("reason", "drill: prove verify catches it"), ("verify_s", 10))
    assert run.exit_code == 1, run.output
    summary = run.summary
    assert summary["outcome"] == "failed" and summary["failed_step"] == "Verify"
    assert "did not recover" in summary["error"], summary["error"]
    assert summary["figures"]["success_rate"] < 0.99  # the numbers are in the record
    assert "success rate" in summary["error"] or "smoke checks failed" in summary["error"]

    # Leave the platform healthy: the previous revision (good) takes over again.
    restored = sandbox.run("rollback", ("service", BACKEND), ("reason", "drill over"))
    assert restored.exit_code == 0, restored.output
    settled = datetime.now(timezone.utc)
    time.sleep(2)
    assert sandbox.traffic(settled)[BACKEND]["failed"] == 0


def test_a_reused_revision_is_refused_clearly(sandbox: Sandbox) -> None:
    before = resource_versions(sandbox)
    run = sandbox.run("rollback", ("service", STREAM), ("to_revision", 1))
    assert run.exit_code == 2, run.output
    assert "unable to find revision 1" in run.summary["error"]
    assert resource_versions(sandbox) == before


def test_nothing_to_roll_back_to_is_refused(sandbox: Sandbox) -> None:
    before = resource_versions(sandbox)
    run = sandbox.run("rollback", ("service", "veza-frontend"))
    assert run.exit_code == 2, run.output
    assert run.summary["outcome"] == "rejected"  # exit 2: nothing was changed, as for bad parameters
    assert "nothing to roll back to" in run.summary["error"]
    assert resource_versions(sandbox) == before
