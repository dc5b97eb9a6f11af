"""vault: hvac against a fake OpenBao; each failure is a project error, no value is ever shown."""
from __future__ import annotations

import pytest

from runbooks_lib.errors import BackendUnavailable, GuardRefused, NotFound, ParameterError
from runbooks_lib.config.profiles import VaultSettings
from runbooks_lib.records.secret import SecretValue
from runbooks_lib.platform.vault import Vault, fingerprint

from ..kube_stub import HTTPStub
from .backends import VaultStub
from .conftest import TOKEN


def settings(url: str, token: str = TOKEN, path: str = "secret/veza/sandbox", method: str = "token") -> VaultSettings:
    return VaultSettings.model_validate({"address": url, "auth": {"method": method, "token": token}, "path": path})


def test_values_come_back_masked_and_fingerprinted(vault: VaultStub) -> None:
    values = Vault(settings(vault.url)).read()
    assert set(values) == {"database_url", "jwt_secret"}
    assert all(isinstance(v, SecretValue) for v in values.values())
    assert "hunter2" not in repr(values) and "hunter2" not in str(values["database_url"])
    assert values["jwt_secret"].reveal() == "s3cret-jwt"
    assert fingerprint(values["jwt_secret"]) == fingerprint("s3cret-jwt") and len(fingerprint("x")) == 12


def test_a_write_is_a_new_version(vault: VaultStub) -> None:
    client = Vault(settings(vault.url))
    assert client.write({"api_key": SecretValue("k1")}, "secret/veza/other") == 1
    assert client.write({"api_key": "k2"}, "secret/veza/other") == 2
    assert vault.kv["veza/other"] == {"api_key": "k2"}


def test_health_and_token_identity(vault: VaultStub) -> None:
    client = Vault(settings(vault.url))
    health = client.health()
    assert (health.reachable, health.initialized, health.sealed, health.version) == (True, True, False, "2.0.0")
    assert client.token_identity() == {"display_name": "token-oncall", "accessor": "acc-123"}


def test_an_unreachable_vault_is_unavailable_and_health_says_so() -> None:
    with HTTPStub() as gone:
        url = gone.url
    client = Vault(settings(url))
    with pytest.raises(BackendUnavailable, match=f"Vault at {url} unreachable"):
        client.read()
    assert not client.health().reachable


def test_a_sealed_vault_is_unavailable(vault: VaultStub) -> None:
    vault.sealed = True
    client = Vault(settings(vault.url))
    with pytest.raises(BackendUnavailable, match="Vault: read secret/veza/sandbox: Vault is sealed; once it is unsealed"):
        client.read()
    health = client.health()
    assert health.reachable and health.sealed


def test_a_refused_token_is_a_guard_refusal_without_the_token(vault: VaultStub) -> None:
    with pytest.raises(GuardRefused, match="permission denied") as refused:
        Vault(settings(vault.url, token="wrong-token-value")).read()
    assert "wrong-token-value" not in str(refused.value)


def test_a_missing_path_is_not_found(vault: VaultStub) -> None:
    with pytest.raises(NotFound, match="Vault: read secret/veza/nowhere: no such path"):
        Vault(settings(vault.url)).read("secret/veza/nowhere")


@pytest.mark.parametrize("status", [500, 502])
def test_a_vault_error_is_unavailable(vault: VaultStub, status: int) -> None:
    vault.fail(r"/v1/secret/", status=status)
    with pytest.raises(BackendUnavailable, match="Vault: read secret/veza/sandbox"):
        Vault(settings(vault.url)).read()


def test_bad_settings_are_parameter_errors_before_any_request(vault: VaultStub) -> None:
    with pytest.raises(ParameterError, match="must be <mount>/<path>"):
        Vault(settings(vault.url, path="secret")).read()
    with pytest.raises(ParameterError, match="auth method 'approle' is not supported"):
        Vault(settings(vault.url, method="approle")).read()
    assert vault.requests == []
