"""The extras install: pip resolves them against the package index as a user's pip would.

`pip install -e .[archive]` once ended in ResolutionImpossible after minutes of backtracking
(kubernetes 37.0.2 wants python-dateutil >= 3, botocore < 3). This resolves the project's
dependencies plus the extra with ``pip install --dry-run`` into this venv (nothing is
installed), exactly what a user of the project's venv runs, so CI (a fresh venv with the newest
versions the bounds allow) meets the next such conflict before a user does during an outage.
Already installed packages are kept when they fit, which makes it take seconds
(``--ignore-installed`` re-fetched every wheel: 140 s here). It needs the package index: a
resolution that cannot reach it is skipped, not passed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent
# Backtracking is what fails slowly: a healthy resolution takes seconds, a conflict minutes.
RESOLVE_TIMEOUT_S = 240


def requirements(*extras: str) -> list[str]:
    project = tomllib.loads((PROJECT / "pyproject.toml").read_text())["project"]
    found = list(project["dependencies"])
    for extra in extras:
        found += project["optional-dependencies"][extra]
    return found


def resolve(requirements: list[str], report: Path) -> dict:
    argv = [sys.executable, "-m", "pip", "install", "--dry-run", "--quiet",
            "--disable-pip-version-check", "--report", str(report), *requirements]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=RESOLVE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pip did not resolve in {RESOLVE_TIMEOUT_S} s: it is backtracking through a conflict")
    if result.returncode != 0 and ("No matching distribution" in result.stderr or "Could not fetch" in result.stderr
                                   or "connection" in result.stderr.lower()) and "ResolutionImpossible" not in result.stderr:
        pytest.skip(f"the package index is not reachable: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, f"pip cannot resolve {requirements}:\n{result.stderr[-3000:]}"
    return {item["metadata"]["name"].lower(): item["metadata"]["version"] for item in json.loads(report.read_text())["install"]}


def test_requirements_list_the_archive_extra() -> None:
    assert any(r.startswith("s3fs") for r in requirements("archive"))


@pytest.mark.slow
@pytest.mark.resolve
def test_archive_extra_resolves(tmp_path: Path) -> None:
    from importlib import metadata

    chosen = resolve(requirements("archive"), tmp_path / "report.json")
    # What the extra adds is planned, or already installed in this venv (`make test` installs
    # .[dev,archive]) at versions that fit the rest: either way pip found one consistent set.
    for name in ("s3fs", "botocore"):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        assert name in chosen or installed, f"{name} neither planned nor installed: {sorted(chosen)}"
