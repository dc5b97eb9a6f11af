"""Issue 25, finding 7: values that are not finite or make no sense are refused before anything changes.

Tried on main: `-p analysis_s inf` rolled a release out and never judged it; `verify_s inf` rolled
back and never ended; `max_hold_s inf` could not end a canary with no data; `-p keys ""` rotated
every generated key; a `target_time` without a zone failed after a backup was taken; health_check
had no schema at all. Now every notebook's schema refuses them in `start()`, before the profile's
cluster, Vault or database is touched (exit 2), and random values never end in anything but a
started run or that refusal.
"""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import runbooks_lib
import runbooks_lib.procedures as procedures
from runbooks_lib.errors import ParameterError

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"
SCHEMAS = {"deploy": "DeployParams", "rollback": "RollbackParams", "canary_promotion": "CanaryParams",
           "incident_response": "IncidentParams", "dr_drill": "DrillParams", "secrets_rotation": "RotationParams",
           "health_check": "HealthParams", "delivery_metrics": "DeliveryParams"}
GOOD = {"deploy": {"service": "veza-backend-api", "version": "v1.6.0"},
        "rollback": {"service": "veza-backend-api"},
        "canary_promotion": {"service": "veza-backend-api", "version": "v1.6.0"},
        "incident_response": {"service": "veza-backend-api", "severity": "P1", "summary": "5xx on the API"},
        "dr_drill": {"scenario": "restore"},
        "secrets_rotation": {"keys": "jwt_secret"},
        "health_check": {}, "delivery_metrics": {}}


@pytest.fixture(autouse=True)
def offline(project_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A project home whose sandbox points nowhere: a start() that got past validation would fail
    on the cluster, and none is asked (check_cluster=False): nothing can change."""
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))


def start(runbook: str, **params: Any) -> Any:
    return runbooks_lib.start(runbook, "sandbox", getattr(procedures, SCHEMAS[runbook]), check_cluster=False,
                              **{**GOOD[runbook], **params})


@pytest.mark.parametrize("runbook, name, value, says", [
    ("deploy", "analysis_s", math.inf, "analysis_s"),
    ("deploy", "analysis_s", math.nan, "analysis_s"),
    ("deploy", "monitor_s", -1.0, "monitor_s"),
    ("rollback", "verify_s", math.inf, "verify_s"),
    ("canary_promotion", "max_hold_s", math.inf, "max_hold_s"),
    ("secrets_rotation", "keys", "", "name the keys to rotate"),
    ("secrets_rotation", "keys", " , ", "name the keys to rotate"),
    ("dr_drill", "target_time", "2026-12-01T14:03", None),  # no zone: UTC, said in the record, accepted
    ("dr_drill", "target_time", "2999-01-01T00:00:00Z", "in the future"),
    ("dr_drill", "target_time", "yesterday", "not an ISO 8601 time"),
    ("health_check", "window_minutes", math.inf, "window_minutes"),
    ("health_check", "signal_window", "1 minute", "signal_window"),
    ("incident_response", "lookback_minutes", math.inf, "lookback_minutes"),
])
def test_a_value_that_makes_no_sense_is_refused_at_start(runbook: str, name: str, value: Any, says: str | None) -> None:
    if says is None:
        ctx = start(runbook, **{name: value})
        assert ctx.parameters.target_time.startswith("2026-12-01T14:03:00+00:00")
        return
    with pytest.raises(ParameterError, match=says):
        start(runbook, **{name: value})
    refused = runbooks_lib.run.context.current()
    assert refused is not None and refused.outcome == "rejected" and refused.steps == []


def test_runbook_run_with_an_infinite_window_exits_2_before_any_change(project_copy: Path, tmp_path: Path,
                                                                       jupyter_dirs: None) -> None:
    """Through `runbook run`, as an on-call engineer types it: exit 2, the record says rejected."""
    import os

    env = dict(os.environ, RUNBOOKS_HOME=str(project_copy), RUNBOOKS_RECORDS_URL=str(tmp_path / "records"))
    done = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "run", str(NOTEBOOKS / "deploy.ipynb"), "--env",
                           "sandbox", "-p", "service", "veza-backend-api", "-p", "version", "v1.6.0",
                           "-p", "analysis_s", "inf"], capture_output=True, text=True, env=env, timeout=180)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    assert "analysis_s" in done.stdout + done.stderr and "rejected" in done.stdout
    assert "Check cluster identity" not in done.stdout  # refused before the cluster was asked anything


def values() -> st.SearchStrategy[Any]:
    """What an on-call engineer (or papermill's -p) can hand a parameter: numbers of every kind,
    text, booleans, None."""
    return st.one_of(st.none(), st.booleans(), st.integers(min_value=-10**12, max_value=10**12),
                     st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=40),
                     st.sampled_from(["", " ", "inf", "-1", "1e309", "nan", "veza-backend-api", "all", "P1", "v1.6.0",
                                      "restore", "jwt_secret", "2026-12-01T14:03:00Z", "30d", "1m"]))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(runbook=st.sampled_from(sorted(SCHEMAS)), data=st.data())
def test_random_values_start_a_run_or_are_refused_never_anything_else(runbook: str, data: st.DataObject) -> None:
    schema = getattr(procedures, SCHEMAS[runbook])
    names = sorted(schema.model_fields)
    chosen = data.draw(st.dictionaries(st.sampled_from(names), values(), max_size=len(names)))
    try:
        ctx = start(runbook, **chosen)
    except ParameterError:
        refused = runbooks_lib.run.context.current()
        assert refused is not None and refused.outcome == "rejected" and refused.steps == []
        return
    # Started: every number it holds is finite, every required value given.
    for value in ctx.parameters.model_dump().values():
        assert not (isinstance(value, float) and not math.isfinite(value)), ctx.parameters
