"""Who is operating: the person a Vault login proves; without one, a name (RUNBOOK_OPERATOR, a
kubeconfig user naming someone, the OS user) said to be unauthenticated; never a plain token's
display name, which everyone using that token shares."""
from __future__ import annotations

import getpass
from pathlib import Path
from typing import Any

import pytest
import yaml

from runbooks_lib.config.profiles import load_profile
from runbooks_lib.records.identity import operator_identity, operator_name, operator_source


def kubeconfig(path: Path, user: str, cluster: str = "veza-prod") -> Path:
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "work",
        "clusters": [{"name": cluster, "cluster": {"server": "https://127.0.0.1:1"}}],
        "users": [{"name": user, "user": {"token": "not-a-real-token"}}],
        "contexts": [{"name": "work", "context": {"cluster": cluster, "user": user}}],
    }))
    return path


def identity(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, user: str, **vault: Any) -> dict[str, Any]:
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig(tmp_path / "kc", user)))
    profile = load_profile("sandbox")
    profile = profile.model_copy(update={"cluster": profile.cluster.model_copy(update={"kubeconfig": None, "context": None})})
    found = operator_identity(profile, timeout=0.2)  # Vault at 127.0.0.1:1: unreachable, quickly
    found["vault"] = vault or None
    return found


@pytest.fixture(autouse=True)
def no_stated_operator(project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOK_OPERATOR", raising=False)


def test_the_kubeconfig_user_names_the_operator_not_the_vault_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = identity(tmp_path, monkeypatch, "alice@veza.app", display_name="token", accessor="acc-1")
    assert found["kubernetes"] == {"context": "work", "user": "alice@veza.app", "cluster": "veza-prod"}
    assert operator_name(found) == "alice@veza.app"
    assert operator_source(found) == "kubeconfig user of context work, not authenticated"
    assert found["vault"]["display_name"] == "token"  # kept, as the identity the run used


@pytest.mark.parametrize("generic", ["admin", "kubernetes-admin", "system:serviceaccount:ops:runner", "veza-prod", "work"])
def test_a_generic_kubeconfig_user_falls_back_to_the_os_user(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           generic: str) -> None:
    found = identity(tmp_path, monkeypatch, generic, display_name="token-bob")
    assert operator_name(found) == getpass.getuser() and operator_source(found) == "OS user, not authenticated"


def test_runbook_operator_names_someone_only_without_a_login(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    found = identity(tmp_path, monkeypatch, "alice@veza.app")
    monkeypatch.setenv("RUNBOOK_OPERATOR", "carol")
    assert operator_name(found) == "carol" and operator_source(found) == "RUNBOOK_OPERATOR, not authenticated"
    assert found["user"] == getpass.getuser()  # the OS user is still recorded beside it
    # A login proves who operates: the typed name is ignored, and the record says so.
    found = identity(tmp_path, monkeypatch, "alice@veza.app", display_name="userpass-alice", entity_id="e-1",
                     meta={"username": "alice"})
    assert operator_name(found) == "alice"
    assert operator_source(found) == "Vault login (userpass, entity e-1); RUNBOOK_OPERATOR=carol ignored: the token is alice's"


def test_the_operator_is_the_vault_login_of_the_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                    vault_people: dict[str, Any]) -> None:
    from runbooks_lib.records.identity import operator_entity

    monkeypatch.setenv("VAULT_TOKEN", vault_people["tokens"]["bob"])
    profile = load_profile("sandbox")
    vault = profile.vault.model_copy(update={"address": vault_people["address"],
                                             "auth": profile.vault.auth.model_copy(update={"token": None})})
    found = operator_identity(profile.model_copy(update={"vault": vault}))
    assert operator_name(found) == "bob" and operator_entity(found) and found["vault"]["method"] == "userpass"
    assert vault_people["tokens"]["bob"] not in str(found)  # the accessor names the token, never its value


def test_the_run_shows_and_records_the_person(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    import runbooks_lib

    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "dave")
    ctx = runbooks_lib.start("deploy", "sandbox", check_cluster=False, service="veza-backend-api", version="v1")
    assert "operator: dave (RUNBOOK_OPERATOR, not authenticated)" in capsys.readouterr().out
    summary = ctx.finish()
    assert summary["operator"] == "dave" and summary["identity"]["user"] == getpass.getuser()
