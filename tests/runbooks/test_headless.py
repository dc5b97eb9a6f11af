"""The same runbook headless three ways: `runbook run`, plain papermill (then sealed), nbval."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from runbooks_lib.run.runner import read_summary

from .conftest import REPO, Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]


def test_plain_papermill_gives_a_record_that_seals(sandbox: Sandbox, tmp_path: Path) -> None:
    out = sandbox.records / "plain-papermill-health_check.ipynb"
    papermill = subprocess.run(
        [sys.executable, "-m", "papermill", "notebooks/health_check.ipynb", str(out), "-p", "env", "sandbox",
         "-p", "window_minutes", "2", "-p", "service", "veza-frontend", "--cwd", "notebooks"],
        cwd=REPO, env=sandbox.environ(), capture_output=True, text=True, timeout=240,
    )
    assert papermill.returncode == 0, papermill.stderr[-3000:]
    summary = read_summary(out)
    assert summary["outcome"] == "succeeded" and summary["runbook"] == "health_check"
    sealed = sandbox.runbook("records", "seal", str(out))
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    assert out.with_suffix(".html").exists() or any(sandbox.records.rglob("*health_check*.html"))
    verify = sandbox.runbook("records", "verify")
    assert verify.returncode == 0, verify.stdout + verify.stderr


def test_health_check_passes_under_nbval(sandbox: Sandbox) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "--nbval-lax", "-q", "-p", "no:cacheprovider", "notebooks/health_check.ipynb"],
        cwd=REPO, env=sandbox.environ(), capture_output=True, text=True, timeout=240,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert " passed" in result.stdout and " failed" not in result.stdout
