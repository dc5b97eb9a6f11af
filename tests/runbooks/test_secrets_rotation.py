"""The secrets rotation runbook end to end on the sandbox: OpenBao's KV versions, the synced
Secret, every reader's pods restarted, under the load generator's traffic.

One sequence, as an on-call engineer would run it: a key the runbook may not generate is
refused, a dry run changes nothing, the rotation, then its rollback. Expected values are read
from OpenBao and the API server, never written down in the test.
"""
from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any, Iterator

import pytest

from .conftest import Sandbox

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]

READERS = ("veza-backend-api", "veza-chat-server", "veza-stream-server", "veza-frontend")


@pytest.fixture
def vault(sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    from runbooks_lib.config.profiles import load_profile
    from runbooks_lib.platform.vault import Vault

    monkeypatch.setenv("RUNBOOKS_SANDBOX_ENV", str(sandbox.state_dir / "env"))
    profile = load_profile("sandbox")
    yield Vault(profile.vault), profile.vault.path


def _sha(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:12]


def _deployments(sandbox: Sandbox) -> list[dict[str, Any]]:
    """The readers' Deployments, found by label (a blue-green deploy renames one by colour)."""
    import json

    items = json.loads(sandbox.kubectl("get", "deployments", "-o", "json"))["items"]
    return [d for d in items if d["metadata"].get("labels", {}).get("app") in READERS]


def _versions(sandbox: Sandbox) -> dict[str, str]:
    """resourceVersion of the Secret and of every reader."""
    found = {"secret": sandbox.kubectl("get", "secret", "veza-secrets", "-o", "jsonpath={.metadata.resourceVersion}")}
    for deployment in _deployments(sandbox):
        found[deployment["metadata"]["name"]] = deployment["metadata"]["resourceVersion"]
    return found


def _jwt_in_the_secret(sandbox: Sandbox) -> str:
    encoded = sandbox.kubectl("get", "secret", "veza-secrets", "-o", "jsonpath={.data.jwt-secret}")
    return base64.b64decode(encoded).decode()


def _pods_hashes(sandbox: Sandbox) -> set[str]:
    import json

    pods = json.loads(sandbox.kubectl("get", "pods", "-o", "json"))["items"]
    return {(p["metadata"].get("annotations") or {}).get("runbooks.veza.app/secret-sha256", "(none)")
            for p in pods if p["metadata"]["labels"].get("app") in READERS and not p["metadata"].get("deletionTimestamp")}


def _secret_hash(sandbox: Sandbox) -> str:
    import json

    from runbooks_lib.procedures.rotation import secret_data_hash

    return secret_data_hash(json.loads(sandbox.kubectl("get", "secret", "veza-secrets", "-o", "json"))["data"])


def _texts(run: Any) -> str:
    html = Path(str(run.record).removesuffix(".ipynb") + ".html")
    return run.record.read_text() + html.read_text() + run.output


def test_refused_dry_run_rotation_and_rollback(sandbox: Sandbox, vault: Any) -> None:
    client, path = vault
    version_before = client.current_version(path)
    original = client.read(path)["jwt_secret"].reveal()
    untouched = _versions(sandbox)

    refused = sandbox.run("secrets_rotation", ("keys", "database_url"))
    assert refused.exit_code == 2, refused.output
    assert "database_url: not a key this runbook may generate" in refused.summary["error"]

    dry = sandbox.run("secrets_rotation", ("keys", "jwt_secret"), ("dry_run", True))
    assert dry.exit_code == 0, dry.output
    assert client.current_version(path) == version_before and _versions(sandbox) == untouched

    rotated = sandbox.run("secrets_rotation", ("keys", "jwt_secret"), ("reason", "game day"))
    assert rotated.exit_code == 0, rotated.output
    new = client.read(path)["jwt_secret"].reveal()
    assert client.current_version(path) == version_before + 1 and new != original
    assert _jwt_in_the_secret(sandbox) == new  # synced
    assert _pods_hashes(sandbox) == {_secret_hash(sandbox)}  # every reader's pod started with it
    figures = rotated.summary["figures"]
    assert figures["vault_version_after"] == version_before + 1 and figures["failed_requests"] == 0
    assert figures["pods_restarted"] == sum(d["spec"]["replicas"] for d in _deployments(sandbox))
    for service in READERS:
        assert sandbox.traffic(rotated.began)[service]["failed"] == 0
    shown = _texts(rotated)
    assert new not in shown and original not in shown and _sha(new) in shown  # hashes only

    back = sandbox.run("secrets_rotation", ("keys", "jwt_secret"), ("rollback", True))
    assert back.exit_code == 0, back.output
    assert client.current_version(path) == version_before + 2
    assert client.read(path)["jwt_secret"].reveal() == original == _jwt_in_the_secret(sandbox)
    assert client.read(path, version=version_before + 1)["jwt_secret"].reveal() == new  # kept in Vault's history
    assert _pods_hashes(sandbox) == {_secret_hash(sandbox)}
    assert back.summary["figures"]["failed_requests"] == 0
    assert new not in _texts(back) and original not in _texts(back)
