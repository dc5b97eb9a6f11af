"""The cluster identity guard refuses the wrong cluster before any change."""
from __future__ import annotations

from pathlib import Path

import pytest

from runbooks_lib.errors import GuardRefused
from runbooks_lib.run.cluster_identity import check_cluster_identity
from runbooks_lib.config.profiles import load_profile

from .kube_stub import KubeSystemStub


def _point_sandbox_at(home: Path, kubeconfig: Path, expected_uid: str) -> None:
    env = home / ".sandbox" / "env"
    text = env.read_text().replace("KUBECONFIG=/nonexistent/kubeconfig", f"KUBECONFIG={kubeconfig}")
    env.write_text(text.replace("CLUSTER_UID=00000000-test-uid", f"CLUSTER_UID={expected_uid}"))


def test_matching_cluster_passes(project_copy: Path, tmp_path: Path) -> None:
    with KubeSystemStub("uid-sandbox-1") as stub:
        _point_sandbox_at(project_copy, stub.write_kubeconfig(tmp_path / "kc"), "uid-sandbox-1")
        check = check_cluster_identity(load_profile("sandbox"))
    assert check.matches and check.found == "uid-sandbox-1" and check.server == stub.url


def test_other_cluster_is_refused_and_named(project_copy: Path, tmp_path: Path) -> None:
    with KubeSystemStub("uid-of-staging") as stub:
        _point_sandbox_at(project_copy, stub.write_kubeconfig(tmp_path / "kc"), "uid-of-production")
        with pytest.raises(GuardRefused) as info:
            check_cluster_identity(load_profile("sandbox"))
    message = str(info.value)
    assert "wrong cluster" in message and "uid-of-staging" in message and "uid-of-production" in message
    assert stub.url in message
    # The guard only read: one GET, nothing written.
    assert stub.paths() == ["/api/v1/namespaces/kube-system"]


def test_unreachable_cluster_is_refused(project_copy: Path, tmp_path: Path) -> None:
    with KubeSystemStub("x") as stub:
        kubeconfig = stub.write_kubeconfig(tmp_path / "kc")
    _point_sandbox_at(project_copy, kubeconfig, "x")  # the stub is gone: nothing listens
    with pytest.raises(GuardRefused, match="cannot confirm the cluster"):
        check_cluster_identity(load_profile("sandbox"))


def test_missing_kubeconfig_is_refused(project_copy: Path) -> None:
    with pytest.raises(GuardRefused, match="does not exist"):
        check_cluster_identity(load_profile("sandbox"))
