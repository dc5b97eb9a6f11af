"""Fixtures shared by the library's tests."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

PROJECT = Path(__file__).resolve().parent.parent


@pytest.fixture
def project_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A throwaway copy of parameters/ (and a fake live sandbox env) as RUNBOOKS_HOME."""
    home = tmp_path / "home"
    shutil.copytree(PROJECT / "parameters", home / "parameters")
    (home / ".sandbox").mkdir()
    (home / ".sandbox" / "env").write_text(
        "KUBECONFIG=/nonexistent/kubeconfig\n"
        "CLUSTER_UID=00000000-test-uid\n"
        "VAULT_ADDR=http://127.0.0.1:1\n"
        "VAULT_TOKEN=dev-token-not-a-secret\n"
        "PROMETHEUS_URL=http://127.0.0.1:1\n"
    )
    monkeypatch.setenv("RUNBOOKS_HOME", str(home))
    monkeypatch.delenv("RUNBOOKS_SANDBOX_ENV", raising=False)
    return home


@pytest.fixture
def jupyter_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep Jupyter's and IPython's state out of $HOME."""
    for var in ("JUPYTER_CONFIG_DIR", "JUPYTER_RUNTIME_DIR", "IPYTHONDIR"):
        monkeypatch.setenv(var, os.environ.get(var) or str(tmp_path / var.lower()))
