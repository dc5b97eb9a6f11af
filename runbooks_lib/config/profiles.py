"""Environment profiles: which cluster, Vault, Prometheus, SLOs and services a run targets.

A profile is ``parameters/<env>.yaml``; the service catalog is ``parameters/services.yaml``.
Values may refer to the process environment, ``${env:NAME}`` or ``${env:NAME:-default}`` (the
default may be a reference itself), or to
the live sandbox, ``${sandbox:NAME}``, read from ``.sandbox/env`` (written by ``runbook sandbox
up``), so no tracked file is rewritten when the sandbox starts on new ports; ``${sandbox-dr:NAME}``
reads the sandbox's disaster-recovery region (``.sandbox-dr/env``, ``runbook sandbox up
--state-dir .sandbox-dr --dr-region-of .sandbox``). Sandbox values are
never taken from the shell: a ``KUBECONFIG`` exported for production cannot leak into a drill.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from ..errors import ProfileError
from .paths import project_home

__all__ = [
    "Profile",
    "ServiceSpec",
    "ServiceCatalog",
    "load_profile",
    "load_catalog",
    "available_envs",
    "project_home",
    "sandbox_env",
]

# Files in parameters/ that are not environment profiles.
_NOT_PROFILES = {"services", "gameday"}

# ${source:NAME} or ${source:NAME:-default}; the default may itself be one reference, resolved
# only when needed: ${env:VAULT_TOKEN:-${sandbox:VAULT_TOKEN}} (a person's login, else the sandbox's).
_REF = re.compile(r"\$\{(env|sandbox|sandbox-dr):([A-Za-z_][A-Za-z0-9_]*)(?::-((?:[^{}]|\$\{[^{}]*\})*))?\}")


class _Model(BaseModel):
    # Typos in a profile are errors, not silently ignored keys.
    model_config = ConfigDict(extra="forbid", frozen=True)


class ClusterIdentity(_Model):
    """How to recognise the cluster a profile is meant for (checked before any change)."""

    kind: Literal["namespace-uid", "configmap"] = "namespace-uid"
    namespace: str = "kube-system"
    name: str | None = Field(None, description="ConfigMap name, for kind=configmap")
    key: str | None = Field(None, description="ConfigMap key, for kind=configmap")
    expected: str = Field(min_length=1, description="The UID or ConfigMap value expected")


class ClusterSettings(_Model):
    kubeconfig: str | None = Field(None, description="Path of the kubeconfig; None = default loading")
    context: str | None = Field(None, description="kubeconfig context; None = current context")
    namespace: str = Field(min_length=1)
    identity: ClusterIdentity
    reach: Literal["apiserver", "direct"] = Field(
        "apiserver", description="How checks reach pods and Services: through the API server's proxy (from "
        "wherever kubectl works; needs get on pods/proxy and services/proxy) or directly at pod and cluster IPs "
        "(a runbook running inside the cluster)")
    retry_for_s: float = Field(20.0, ge=0, description="How long a request the API server refused (429/503), or a "
                               "read it failed, is sent again before the step fails (runbooks_lib.platform.api_retry)")


class VaultAuth(_Model):
    method: Literal["token", "kubernetes", "approle"] = "token"
    token: SecretStr | None = Field(None, description="For method=token; better taken from ${env:VAULT_TOKEN}")
    role: str | None = Field(None, description="For kubernetes/approle auth")


class VaultSettings(_Model):
    address: str
    auth: VaultAuth = VaultAuth()
    path: str = Field(description="KV v2 path including the mount, e.g. secret/veza/production")

    @property
    def mount(self) -> str:
        return self.path.split("/", 1)[0]

    @property
    def secret_path(self) -> str:
        return self.path.split("/", 1)[1] if "/" in self.path else ""


class PrometheusSettings(_Model):
    """Where Prometheus answers, and how its certificate is checked (verified unless said otherwise)."""

    url: str
    tls_verify: bool = Field(True, description="Check an https:// Prometheus' certificate (off only for a "
                                               "server you reach over a network you trust)")
    ca_bundle: str | None = Field(None, description="CA certificates (PEM file) that sign Prometheus' certificate, "
                                                    "when it is not a public CA's (an internal CA)")

    @model_validator(mode="after")
    def _one_way_to_verify(self) -> "PrometheusSettings":
        if self.ca_bundle is not None and not self.tls_verify:
            raise ValueError("ca_bundle is for checking the certificate: it means nothing with tls_verify: false")
        if self.ca_bundle is not None and not Path(self.ca_bundle).expanduser().is_file():
            raise ValueError(f"ca_bundle {self.ca_bundle}: no such file")
        return self

    @property
    def verify(self) -> bool | str:
        """What ``requests`` takes as ``verify``: the CA bundle's path, or whether to check at all."""
        return str(Path(self.ca_bundle).expanduser()) if self.ca_bundle else self.tls_verify


class DatabaseSettings(_Model):
    primary_dsn: SecretStr | None = None
    standby_dsn: SecretStr | None = None


class RedisSettings(_Model):
    """The platform's Redis (sessions and cache), checked by the health check's ping."""

    url: SecretStr | None = Field(None, description="redis://:password@host:port/db; holds a password, so secret")
class Retention(_Model):
    """How long backups are kept (the guide's 10.1): the newest backup of each day, ISO week
    and month is kept for that many days, weeks and months."""

    daily_days: int = Field(30, ge=1, description="Keep the newest backup of each of the last N days")
    weekly_weeks: int = Field(12, ge=0, description="Keep the newest backup of each of the last N ISO weeks")
    monthly_months: int = Field(24, ge=0, description="Keep the newest backup of each of the last N months")


class BackupSettings(_Model):
    """Where backups of veza_db go and how they are sealed (the guide's 10.1)."""

    url: str | None = Field(None, description="Off-site storage by URL (fsspec): s3://veza-backups/postgres/, or a folder")
    storage_options: dict[str, Any] = Field(default_factory=dict, description="fsspec options, e.g. {endpoint_url: ...}")
    transit_mount: str = Field("transit", description="Vault transit engine mount that wraps the data keys")
    transit_key: str = Field("veza", description="Transit key name (the key never leaves Vault)")
    wal_archive_url: str | None = Field(None, description="Where archive_command puts WAL segments (PITR)")
    pg_bin_dir: str | None = Field(None, description="pg_dump/pg_restore folder; None = /usr/lib/postgresql/15/bin or PATH")
    scratch_dsn: SecretStr | None = Field(
        None, description="Server where restores are proven in a scratch database; None = the primary's server")
    retention: Retention = Retention()
    full_backup_max_age_h: float = Field(
        26, gt=0, le=24 * 31, allow_inf_nan=False,
        description="The guide's 10.1 takes a full backup daily: the newest may be at most this many hours old "
                    "(a day and two hours' grace), or the health check fails. The RPO (1 h) is held by WAL "
                    "archiving, whose lag the health check compares with drill.rpo_target_s")
    restore_test_interval_days: float = Field(
        31, ge=0, le=366, allow_inf_nan=False,
        description="The guide's 10 (\"backups tested monthly\"): the newest backup a restore proved may be at most "
                    "this many days old, or the health check fails; 0 = a proof must be from today's drill")
    none_yet: Literal["fail", "warn"] = Field(
        "fail", description="What the health check makes of no backup, or no proven backup, at all: fail "
                            "(staging, production); warn on a practice platform that starts with none (the sandbox)")
    restore_dir: str | None = Field(
        None, description="Folder where a drill recovers a database server from a base backup "
                          "(None = a temporary folder)")
    restore_port: int | None = Field(
        None, ge=1, le=65535,
        description="The port the recovered database server listens on, so the region's network can reach it "
                    "(a firewall rule, a proxy, a mirror); a free port if unset")

    @field_validator("restore_port", mode="before")
    @classmethod
    def _unset_port(cls, port: Any) -> Any:
        # ``${...:RESTORE_PORT:-}`` resolves to "" where no value is set: that means unset, not port "".
        return None if port == "" else port


class DrillSettings(_Model):
    """How a disaster-recovery drill breaks and mends the database (argv lists, no shell).

    Production names its own (a fencing script, a Patroni command); the sandbox names
    `runbook sandbox postgres ...`.
    """

    kill_primary: tuple[str, ...] = Field((), description="Command that takes the primary down (the drill's fault)")
    rebuild_standby: tuple[str, ...] = Field((), description="Command that rebuilds a standby from the promoted primary")
    rto_target_s: float = Field(4 * 3600, gt=0, description="The guide's 10.2: RTO < 4 h")
    rpo_target_s: float = Field(3600, gt=0, description="The guide's 10.2: RPO < 1 h")
    failover_target_s: float = Field(300, gt=0, description="The guide's 10.2: failover to the standby < 5 min")
    dr_region: str | None = Field(
        None, description="The profile of the disaster-recovery region (its cluster, Vault, Prometheus), for the "
                          "region drill; e.g. production-dr")
    switch_entry_point: tuple[str, ...] = Field(
        (), description="Command that sends the platform's users to the DR region (a DNS change); empty = "
                        "the region drill reports it as a step done by hand")
    switch_entry_point_back: tuple[str, ...] = Field(
        (), description="Command that sends the users back to the primary region once a drill is over")


class MigrationSettings(_Model):
    """Where veza_db's schema migrations come from (runbooks_lib.platform.migrations)."""

    service: str = Field(description="The service whose releases ship the migrations (it owns the database)")
    url: str = Field(description="Folder or fsspec URL of NNNN_name.up.sql/.down.sql files; relative = the project's")


class SLO(_Model):
    """Service level objectives that post-deploy and canary checks hold a version to."""

    success_rate_min: float = Field(0.99, gt=0, le=1, description="Fraction of non-5xx requests")
    p99_latency_max_ms: float = Field(500, gt=0, description="99th percentile latency bound")


class Timeouts(_Model):
    rollout_s: float = Field(600, gt=0)
    rollback_s: float = Field(300, gt=0, description="The guide: rollback in under 5 minutes")
    health_s: float = Field(120, gt=0)


class Routing(_Model):
    """How traffic is split between a primary and a canary (runbooks_lib.platform.routing)."""

    router: Literal["istio", "replicas", "selector"] = Field(
        "istio", description="istio: VirtualService weights (exact %); replicas: pod ratio (nearest split); "
                             "selector: the Service's selector (all or nothing, blue-green)")
    replicas_total: int | None = Field(
        None, ge=2, description="replicas router: pods shared by primary and canary (default: the service's replicas)")


class Approvals(_Model):
    """Who must consent before a run changes this environment (``RunContext.gate``)."""

    required: bool = Field(False, description="A run stops at each gate until someone approves it")
    four_eyes: bool = Field(True, description="The approver must be another person than the run's operator")
    approvers: tuple[str, ...] = Field((), description="People allowed to approve; empty = anyone but (four eyes) the operator")
    expires_after_s: float = Field(3600, gt=0, description="An approval not acted on within this time must be given again")
    signing_key: str = Field("veza-approvals", min_length=1, description="Vault transit key an approver signs the "
                             "change with (only approvers' policies may sign with it; anyone may verify)")
    signing_mount: str = Field("transit", min_length=1, description="Vault transit mount of signing_key")

    @field_validator("approvers")
    @classmethod
    def _names(cls, approvers: tuple[str, ...]) -> tuple[str, ...]:
        names = tuple(a.strip() for a in approvers)
        if any(not a for a in names):
            raise ValueError("an approver must be a name, not empty")
        if len(set(names)) != len(names):
            raise ValueError("approvers are listed twice: " + ", ".join(sorted({a for a in names if names.count(a) > 1})))
        return names

    @model_validator(mode="after")
    def _consistent(self) -> "Approvals":
        if self.approvers and not self.required:
            raise ValueError("approvers are listed but approvals.required is false: say which you mean")
        return self


class Records(_Model):
    url: str = Field("outputs", description="Where records go: a folder, file:// or an archive URL (s3://...)")
    storage_options: dict[str, Any] = Field(
        default_factory=dict, description="fsspec options for an archive URL, e.g. {endpoint_url: ...}"
    )
    ledger_transit_key: str | None = Field(
        None, description="<mount>/<key> of the Vault transit key that MACs the ledger's lines (transit/hmac/<key>), "
                          "e.g. transit/veza-ledger; None = a key file outside the records folder (records.trust)")
    ledger_head_path: str | None = Field(
        None, description="Vault KV path where every seal anchors the ledger's head, one secret per writer below "
                          "it, e.g. secret/veza/production/ledger-head; None = no Vault anchor")


class Notify(_Model):
    """Where incident notices go (a Slack-compatible incoming webhook)."""

    webhook_url: SecretStr | None = Field(
        None, description="Incoming webhook URL; its path holds a token: take it from ${env:...}"
    )


class Rotation(_Model):
    """Which secrets the rotation runbook may generate, and how long the new values are."""

    generated_keys: tuple[str, ...] = Field(
        ("jwt_secret",), description="Vault keys whose values the runbook generates (others are issued elsewhere)")
    length: int = Field(48, ge=32, le=256, description="Characters of a generated value (URL-safe)")


class Profile(_Model):
    """One environment a runbook can target."""

    name: str
    description: str = ""
    cluster: ClusterSettings
    vault: VaultSettings
    prometheus: PrometheusSettings
    database: DatabaseSettings = DatabaseSettings()
    redis: RedisSettings = RedisSettings()
    rotation: Rotation = Rotation()
    slo: SLO = SLO()
    backups: BackupSettings = BackupSettings()
    drill: DrillSettings = DrillSettings()
    migrations: MigrationSettings | None = Field(None, description="Schema migrations shipped with a service's releases")
    canary_steps: tuple[int, ...] = (5, 25, 50, 100)
    routing: Routing = Routing()
    timeouts: Timeouts = Timeouts()
    approvals: Approvals = Approvals()
    records: Records = Records()
    notify: Notify = Field(default_factory=Notify, description="The default target of incident notices")
    load_report_url: str | None = Field(
        None, description="A load generator's report of failed requests (the sandbox has one)"
    )
    services: "ServiceCatalog"
    sandbox: dict[str, Any] | None = Field(
        None, description="Sandbox-only settings (image behaviours...), read by runbooks_sandbox alone"
    )

    @field_validator("canary_steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: tuple[int, ...]) -> tuple[int, ...]:
        if not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100 or steps[0] <= 0:
            raise ValueError("canary steps must increase strictly, start above 0 and end at 100")
        return steps


class ServiceSpec(_Model):
    """A Veza service as the runbooks know it."""

    port: int = Field(gt=0, lt=65536, description="Container port")
    health_path: str = "/health"
    ready_path: str = "/ready"
    replicas: int = Field(1, ge=0)
    smoke_routes: tuple[str, ...] = ()
    critical: bool = True


class ServiceCatalog(_Model):
    image_repository: str = Field(description="Images are <image_repository>/<service>:<version>")
    services: dict[str, ServiceSpec]

    def get(self, name: str) -> ServiceSpec:
        try:
            return self.services[name]
        except KeyError:
            raise ProfileError(
                f"unknown service {name!r}; known services: {', '.join(sorted(self.services))}"
            ) from None

    def image(self, service: str, version: str) -> str:
        self.get(service)
        return f"{self.image_repository}/{service}:{version}"


Profile.model_rebuild()


# Where each ``${source:...}`` of the sandbox kind is read: (variable naming the file, default folder).
_SANDBOX_ENVS = {"sandbox": ("RUNBOOKS_SANDBOX_ENV", ".sandbox"), "sandbox-dr": ("RUNBOOKS_DR_SANDBOX_ENV", ".sandbox-dr")}


def sandbox_env(home: Path | None = None, source: str = "sandbox") -> dict[str, str]:
    """The live sandbox's values (``.sandbox/env``, KEY=VALUE lines), or {} when it is down;
    ``source="sandbox-dr"``: its disaster-recovery region's (``.sandbox-dr/env``)."""
    variable, folder = _SANDBOX_ENVS[source]
    path = Path(os.environ.get(variable) or (home or project_home()) / folder / "env")
    if not path.is_file():
        return {}
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, _, value = line.partition("=")
            values[key.strip().removeprefix("export ").strip()] = value.strip().strip("'\"")
    return values


def available_envs(home: Path | None = None) -> list[str]:
    folder = (home or project_home()) / "parameters"
    return sorted(p.stem for p in folder.glob("*.yaml") if p.stem not in _NOT_PROFILES)


# libyaml's safe loader when PyYAML has it (its wheels do): ~10x the pure-Python one, and every
# run's start() reads a profile and the service catalog before it can change anything.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(), Loader=_SAFE_LOADER)
    except yaml.YAMLError as e:
        raise ProfileError(f"{path}: not valid YAML: {e}") from e


def _interpolate(value: Any, where: str, sandboxes: dict[str, dict[str, str]]) -> Any:
    if isinstance(value, dict):
        return {k: _interpolate(v, f"{where}.{k}", sandboxes) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, f"{where}[{i}]", sandboxes) for i, v in enumerate(value)]
    if not isinstance(value, str):
        return value

    def resolve(match: re.Match[str]) -> str:
        source, name, default = match.groups()
        found = os.environ.get(name) if source == "env" else sandboxes.get(source, {}).get(name)
        if found is not None:
            return found
        if default is not None:
            return str(_interpolate(default, where, sandboxes))
        if source == "sandbox":
            raise ProfileError(
                f"{where} needs the sandbox's {name}, but the sandbox is not running "
                "(no .sandbox/env): start it with `runbook sandbox up`"
            )
        if source == "sandbox-dr":
            raise ProfileError(
                f"{where} needs the sandbox's DR region's {name}, but that region is not running "
                "(no .sandbox-dr/env): start it with "
                "`runbook sandbox up --state-dir .sandbox-dr --dr-region-of .sandbox`"
            )
        raise ProfileError(f"{where} needs the environment variable {name}, which is not set")

    return _REF.sub(resolve, value)


def _format_validation(path: Path, error: ValidationError) -> str:
    lines = [f"{path}: invalid profile"]
    for item in error.errors():
        loc = ".".join(str(p) for p in item["loc"])
        lines.append(f"  {loc}: {item['msg']}")
    return "\n".join(lines)


def load_catalog(home: Path | None = None) -> ServiceCatalog:
    path = (home or project_home()) / "parameters" / "services.yaml"
    if not path.is_file():
        raise ProfileError(f"no service catalog at {path}")
    try:
        return ServiceCatalog.model_validate(_read_yaml(path))
    except ValidationError as e:
        raise ProfileError(_format_validation(path, e)) from None


def _raw_profile(env: str, home: Path, envs: list[str], extended_by: tuple[str, ...] = ()) -> dict[str, Any]:
    """``parameters/<env>.yaml`` as written; one that ``extends: OTHER`` is OTHER's with its own
    keys laid over (mappings merged key by key, anything else replaced), e.g. the sandbox with
    production's approval rule."""
    path = home / "parameters" / f"{env}.yaml"
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise ProfileError(f"{path}: expected a mapping at the top level")
    if raw.get("name", env) != env:
        raise ProfileError(f"{path}: name {raw.get('name')!r} does not match the file name {env!r}")
    base = raw.pop("extends", None)
    if base is None:
        return raw
    if base in (env, *extended_by):
        raise ProfileError(f"{path}: extends {base!r}, which extends it back: {' -> '.join((*extended_by, env, base))}")
    if base not in envs:
        raise ProfileError(f"{path}: extends {base!r}, which is not a profile here ({', '.join(envs)})")
    return _overlay(_raw_profile(base, home, envs, (*extended_by, env)), {**raw, "name": env})


def _overlay(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        merged[key] = _overlay(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def load_profile(env: str, home: Path | None = None) -> Profile:
    """Load and validate ``parameters/<env>.yaml``; every problem is a ProfileError."""
    home = home or project_home()
    envs = available_envs(home)
    if not re.fullmatch(r"[a-z][a-z0-9-]*", env or "") or env not in envs:
        raise ProfileError(f"unknown env {env!r}; profiles in {home / 'parameters'}: {', '.join(envs)}")
    path = home / "parameters" / f"{env}.yaml"
    raw = _raw_profile(env, home, envs)
    text = json.dumps(raw, default=str)  # only to see which sandboxes it names
    raw = _interpolate(raw, env, {source: sandbox_env(home, source) for source in _SANDBOX_ENVS
                                  if "${" + source + ":" in text})
    raw.setdefault("name", env)
    raw["services"] = load_catalog(home).model_dump()
    try:
        return Profile.model_validate(raw)
    except ValidationError as e:
        # from None: pydantic's own message would repeat the input values, secrets included.
        raise ProfileError(_format_validation(path, e)) from None
