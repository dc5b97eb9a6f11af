"""Profiles: every mistake is a clear ProfileError before anything runs."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from runbooks_lib.errors import ParameterError, ProfileError
from runbooks_lib.config.profiles import available_envs, load_catalog, load_profile


def _edit(home: Path, env: str, change) -> None:
    path = home / "parameters" / f"{env}.yaml"
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def test_shipped_profiles_validate(project_copy: Path) -> None:
    assert available_envs() == ["production", "sandbox", "sandbox-dr", "sandbox-gated", "staging"]
    sandbox = load_profile("sandbox")
    assert sandbox.cluster.identity.expected == "00000000-test-uid"
    assert sandbox.cluster.namespace == "veza-sandbox"
    assert sandbox.vault.mount == "secret" and sandbox.vault.secret_path == "veza/sandbox"
    assert sandbox.slo.success_rate_min == 0.99 and sandbox.slo.p99_latency_max_ms == 500
    assert sandbox.canary_steps == (5, 25, 50, 100)
    production = load_profile("production")
    assert production.cluster.namespace == "veza-production"
    assert production.vault.path == "secret/veza/production"
    assert production.approvals.required is True
    assert load_profile("staging").cluster.namespace == "veza-staging"


def test_a_profile_that_extends_another_is_the_other_with_its_own_keys_laid_over(project_copy: Path) -> None:
    gated, sandbox = load_profile("sandbox-gated"), load_profile("sandbox")
    assert gated.name == "sandbox-gated" and gated.approvals.required and gated.approvals.four_eyes
    assert not sandbox.approvals.required
    assert gated.model_dump(exclude={"name", "description", "approvals"}) == \
        sandbox.model_dump(exclude={"name", "description", "approvals"})
    # One key of a mapping laid over: the mapping's other keys stay the base's.
    _edit(project_copy, "sandbox-gated", lambda d: d.update(slo={"p99_latency_max_ms": 300}))
    slo = load_profile("sandbox-gated").slo
    assert (slo.p99_latency_max_ms, slo.success_rate_min) == (300, sandbox.slo.success_rate_min)


def test_a_profile_extending_an_unknown_or_circular_base_is_refused(project_copy: Path) -> None:
    _edit(project_copy, "sandbox-gated", lambda d: d.update(extends="sandbx"))
    with pytest.raises(ProfileError, match=r"extends 'sandbx', which is not a profile here"):
        load_profile("sandbox-gated")
    _edit(project_copy, "sandbox-gated", lambda d: d.update(extends="sandbox"))
    _edit(project_copy, "sandbox", lambda d: d.update(extends="sandbox-gated"))
    with pytest.raises(ProfileError, match=r"which extends it back: sandbox-gated -> sandbox -> sandbox-gated"):
        load_profile("sandbox-gated")


def test_catalog_knows_the_veza_services(project_copy: Path) -> None:
    catalog = load_catalog()
    backend = catalog.get("veza-backend-api")
    assert (backend.port, backend.health_path, backend.ready_path, backend.replicas) == (8080, "/health", "/ready", 3)
    assert catalog.get("veza-chat-server").port == 8081
    assert catalog.get("veza-frontend").port == 80
    assert catalog.image("veza-backend-api", "v1.5.0") == "registry.veza.app/veza-backend-api:v1.5.0"
    with pytest.raises(ProfileError, match="unknown service 'veza-backend'.*veza-backend-api"):
        catalog.get("veza-backend")


def test_unknown_env_lists_the_known_ones(project_copy: Path) -> None:
    with pytest.raises(ProfileError, match=r"unknown env 'prod'.*production, sandbox, sandbox-dr, sandbox-gated, staging"):
        load_profile("prod")
    with pytest.raises(ProfileError, match="unknown env"):
        load_profile("../parameters/sandbox")


def test_bad_slo_value_names_the_field(project_copy: Path) -> None:
    _edit(project_copy, "staging", lambda d: d["slo"].update(success_rate_min=99))
    with pytest.raises(ProfileError) as info:
        load_profile("staging")
    assert "slo.success_rate_min" in str(info.value)
    assert "less than or equal to 1" in str(info.value)


def test_missing_field_and_typo_are_reported(project_copy: Path) -> None:
    _edit(project_copy, "staging", lambda d: d["cluster"].pop("namespace"))
    with pytest.raises(ProfileError, match=r"cluster.namespace: Field required"):
        load_profile("staging")
    _edit(project_copy, "production", lambda d: d.update(timeoutz={"rollback_s": 1}))
    with pytest.raises(ProfileError, match=r"timeoutz: Extra inputs are not permitted"):
        load_profile("production")


def test_canary_steps_must_end_at_100(project_copy: Path) -> None:
    _edit(project_copy, "staging", lambda d: d.update(canary_steps=[5, 50, 25]))
    with pytest.raises(ProfileError, match="canary steps must increase"):
        load_profile("staging")


def test_sandbox_profile_without_a_running_sandbox_says_how_to_start_it(project_copy: Path) -> None:
    (project_copy / ".sandbox" / "env").unlink()
    with pytest.raises(ProfileError, match="runbook sandbox up"):
        load_profile("sandbox")


def test_sandbox_values_never_come_from_the_shell(project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KUBECONFIG", "/home/oncall/.kube/production")
    assert load_profile("sandbox").cluster.kubeconfig == "/nonexistent/kubeconfig"


def test_env_reference_without_default_must_be_set(project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _edit(project_copy, "staging", lambda d: d["prometheus"].update(url="${env:VEZA_TEST_UNSET_VAR}"))
    monkeypatch.delenv("VEZA_TEST_UNSET_VAR", raising=False)
    with pytest.raises(ProfileError, match="VEZA_TEST_UNSET_VAR, which is not set"):
        load_profile("staging")
    monkeypatch.setenv("VEZA_TEST_UNSET_VAR", "http://prom:9090")
    assert load_profile("staging").prometheus.url == "http://prom:9090"


def test_profile_errors_are_parameter_errors_and_hide_secret_values(project_copy: Path) -> None:
    _edit(project_copy, "staging", lambda d: d["vault"]["auth"].update(token={"not": "a string s3cr3t-value"}))
    with pytest.raises(ParameterError) as info:
        load_profile("staging")
    assert "s3cr3t-value" not in str(info.value)
    assert "vault.auth.token" in str(info.value)


def test_vault_token_is_masked_in_repr(project_copy: Path) -> None:
    profile = load_profile("sandbox")
    assert "dev-token-not-a-secret" not in repr(profile)
    assert profile.vault.auth.token.get_secret_value() == "dev-token-not-a-secret"


@pytest.mark.parametrize("value, says", [(-1, "greater than or equal to 0"), (400, "less than or equal to 366"),
                                         (".inf", "finite number"), ("monthly", "valid number")])
def test_the_restore_test_interval_is_a_number_of_days_from_0_to_366(project_copy: Path, value: object,
                                                                     says: str) -> None:
    assert load_profile("production").backups.restore_test_interval_days == 31  # the guide: monthly
    assert load_profile("production").backups.none_yet == "fail"
    path = project_copy / "parameters" / "production.yaml"
    path.write_text(path.read_text().replace("backups:\n", f"backups:\n  restore_test_interval_days: {value}\n", 1))
    with pytest.raises(ProfileError) as info:
        load_profile("production")
    assert "backups.restore_test_interval_days" in str(info.value) and says in str(info.value)


def test_what_no_backup_yet_means_is_fail_or_warn(project_copy: Path) -> None:
    _edit(project_copy, "staging", lambda d: d.setdefault("backups", {}).update(none_yet="ignore"))
    with pytest.raises(ProfileError, match=r"backups.none_yet: Input should be 'fail' or 'warn'"):
        load_profile("staging")


@pytest.mark.parametrize("value, says", [(0, "greater than 0"), (1000, "less than or equal to 744"),
                                         (".nan", "finite number")])
def test_the_newest_backup_s_age_limit_is_hours_of_a_daily_schedule(project_copy: Path, value: object,
                                                                     says: str) -> None:
    assert load_profile("production").backups.full_backup_max_age_h == 26  # daily (the guide's 10.1), 2 h grace
    path = project_copy / "parameters" / "production.yaml"
    path.write_text(path.read_text().replace("backups:\n", f"backups:\n  full_backup_max_age_h: {value}\n", 1))
    with pytest.raises(ProfileError) as info:
        load_profile("production")
    assert "backups.full_backup_max_age_h" in str(info.value) and says in str(info.value)


def test_the_dr_region_s_restore_port_and_reach_come_from_its_env_and_are_unset_without(
        project_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RUNBOOKS_DR_SANDBOX_ENV", raising=False)
    env = project_copy / ".sandbox-dr" / "env"
    env.parent.mkdir()
    region = ("KUBECONFIG=/nonexistent/dr-kubeconfig\nCLUSTER_UID=dr-uid\nVAULT_ADDR=http://127.0.0.1:1\n"
              "VAULT_TOKEN=dev-token-not-a-secret\nPROMETHEUS_URL=http://127.0.0.1:1\n")
    env.write_text(region)  # an env without them: any free port, and pods through the apiserver's proxy
    dr = load_profile("sandbox-dr")
    assert dr.backups.restore_port is None and dr.cluster.reach == "apiserver"
    env.write_text(region + "RESTORE_PORT=15432\nCLUSTER_REACH=direct\n")
    dr = load_profile("sandbox-dr")
    assert dr.backups.restore_port == 15432 and dr.cluster.reach == "direct"
    env.write_text(region + "RESTORE_PORT=70000\n")
    with pytest.raises(ProfileError, match="backups.restore_port"):
        load_profile("sandbox-dr")
