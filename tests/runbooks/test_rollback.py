"""The rollback runbook on the sandbox: to the previous revision, to an explicit one, and refusals."""
from __future__ import annotations

import pytest

from .conftest import Sandbox
from .test_deploy import image, resource_versions

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

STREAM = "veza-stream-server"


def test_rollback_to_the_previous_revision_is_fast_and_linked(sandbox: Sandbox) -> None:
    deploy = sandbox.run("deploy", ("service", STREAM), ("version", "v1.6.0"))
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


def test_rollback_to_an_explicit_revision(sandbox: Sandbox) -> None:
    deploy = sandbox.run("deploy", ("service", STREAM), ("version", "v1.4.0"))
    assert deploy.exit_code == 0, deploy.output
    run = sandbox.run("rollback", ("service", STREAM), ("to_revision", 2))
    assert run.exit_code == 0, run.output
    assert image(sandbox, STREAM).endswith(":v1.6.0")
    assert run.summary["figures"]["to_revision"] == 2


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
