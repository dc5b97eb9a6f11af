"""The public surface is small, pinned, and cheap to import."""
from __future__ import annotations

import json
import subprocess
import sys

import runbooks_lib

PINNED = [
    "AwaitingApproval", "BackendUnavailable", "CheckFailed", "Conflict", "GuardRefused", "LockHeld",
    "NoData", "NotFound", "ParameterError", "ProfileError", "RunbookError", "RunbookTimeout",
    "start", "RunContext", "SUMMARY_MIME", "Profile", "load_profile", "check_cluster_identity",
    "run_notebook", "read_summary", "SecretValue", "register_secret", "summaries",
]


def test_all_is_pinned() -> None:
    assert sorted(runbooks_lib.__all__) == sorted(PINNED)


def test_every_public_name_resolves() -> None:
    for name in runbooks_lib.__all__:
        assert getattr(runbooks_lib, name) is not None, name


def test_errors_form_one_hierarchy_with_exit_codes() -> None:
    for name in runbooks_lib.__all__:
        value = getattr(runbooks_lib, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, runbooks_lib.RunbookError), name
    assert runbooks_lib.ParameterError.exit_code == 2
    assert runbooks_lib.ProfileError.exit_code == 2
    assert runbooks_lib.AwaitingApproval.exit_code == 3
    assert runbooks_lib.GuardRefused.exit_code == 4
    assert runbooks_lib.LockHeld.exit_code == 4
    assert runbooks_lib.CheckFailed.exit_code == 1


def test_import_is_cheap() -> None:
    """No heavy client library is imported until a runbook uses it."""
    code = (
        "import sys, json, runbooks_lib;"
        "print(json.dumps(sorted(m for m in ('kubernetes','pandas','matplotlib','papermill','hvac',"
        "'psycopg','prometheus_api_client','nbformat','pydantic') if m in sys.modules)))"
    )
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout)
    assert loaded == []
