"""Required parameters: a mutating runbook never acts on a default the operator did not choose."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import papermill
import pytest

from runbooks_lib.errors import ParameterError
from runbooks_lib.config.parameters import required_parameters, resolve_parameters

NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"
REQUIRED = {
    "deploy": ["service", "version"],
    "rollback": ["service"],
    "canary_promotion": ["service", "version"],
    "incident_response": ["severity", "summary"],
    "dr_drill": ["scenario"],
}


SCHEMAS = {"deploy": "DeployParams", "rollback": "RollbackParams", "canary_promotion": "CanaryParams",
           "incident_response": "IncidentParams", "dr_drill": "DrillParams"}


@pytest.mark.parametrize("runbook", sorted(REQUIRED))
def test_the_mutating_runbooks_declare_what_must_be_given(runbook: str) -> None:
    import runbooks_lib.procedures as procedures

    declared = papermill.inspect_notebook(str(NOTEBOOKS / f"{runbook}.ipynb"))
    assert required_parameters(declared) == REQUIRED[runbook]
    # and the schema the notebook's start() validates with requires the same ones, for runs that
    # bypass `runbook run` (plain papermill)
    source = (NOTEBOOKS / f"{runbook}.ipynb").read_text()
    assert f"{SCHEMAS[runbook]}, " in source
    schema = getattr(procedures, SCHEMAS[runbook])
    assert sorted(n for n, f in schema.model_fields.items() if f.is_required()) == sorted(REQUIRED[runbook])


def test_a_required_parameter_left_out_or_none_is_rejected_naming_it() -> None:
    declared = papermill.inspect_notebook(str(NOTEBOOKS / "deploy.ipynb"))
    with pytest.raises(ParameterError, match=r"missing required parameter\(s\) service, version"):
        resolve_parameters(declared, [("env", "sandbox")], {})
    with pytest.raises(ParameterError, match=r"missing required parameter\(s\) version:.*-p version"):
        resolve_parameters(declared, [("service", "veza-backend-api"), ("version", "None")], {})
    # from a -f file too; given, a required parameter is kept as given
    values = resolve_parameters(declared, [("version", "1.10")], {"service": "veza-backend-api"})
    assert values == {"service": "veza-backend-api", "version": "1.10"}


def test_start_refuses_a_required_parameter_left_at_none(project_copy: Path, tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain papermill injects no check: the notebook's start() refuses, before any step."""
    import runbooks_lib

    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))
    with pytest.raises(ParameterError, match=r"missing required parameter\(s\) version"):
        from runbooks_lib.procedures import DeployParams

        runbooks_lib.start("deploy", "sandbox", DeployParams, check_cluster=False, service="veza-backend-api",
                           version=None)
    refused = runbooks_lib.run.context.current()
    assert refused is not None and refused.outcome == "rejected" and refused.steps == []


def test_deploy_without_version_exits_2_naming_it_before_the_kernel_runs_anything(
        project_copy: Path, tmp_path: Path, jupyter_dirs: None) -> None:
    records = tmp_path / "records"
    env = dict(os.environ, RUNBOOKS_HOME=str(project_copy), RUNBOOKS_RECORDS_URL=str(records))
    result = subprocess.run(
        [sys.executable, "-m", "runbooks_lib.cli", "run", str(NOTEBOOKS / "deploy.ipynb"), "--env", "sandbox",
         "-p", "service", "veza-backend-api"], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 2, result.stdout + result.stderr
    assert "missing required parameter(s) version" in result.stderr
    # nothing ran: no record, no journal (the sandbox env points nowhere: a run would have failed, exit 1 or 4)
    assert not records.exists() or list(records.rglob("*")) == []
