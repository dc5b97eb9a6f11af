"""Secrets rotation (guide §8): a new Vault version, the Kubernetes Secret synced, the services
that read it restarted, and proof by hashes that every pod runs with the new version.

    vault kv put secret/veza/production jwt_secret="new-secret"      # the guide's rotation

What the guide's one line leaves to the person at the keyboard, this does and records:

1. **Plan**: the keys to rotate (only those the profile says may be generated: a database URL
   or a Stripe key is issued elsewhere), the Vault version now, and the Deployments whose pods
   read the keys (``secretKeyRef``/``secretRef`` on the synced Secret).
2. **Rotate**: a new KV version where only those keys change (the previous version stays in
   Vault for rollback). With ``rollback``, the keys take back their values of an earlier version
   (default: the one before the current), as ``vault kv rollback`` does, but key by key, so a
   change made since to another key (a failover's database URL) is kept.
3. **Sync** the Kubernetes Secret from Vault (keys and hashes shown, never values).
4. **Restart** the readers: a pod reads its environment when it starts, so each Deployment's
   pod template gets the hash of the Secret it must run with (the Helm "checksum/secret"
   annotation), which rolls every pod, all Deployments at once.
5. **Verify**: every pod of every reader is ready and carries the new hash (only pods created
   by the restart, after the sync, do); the Secret's hashes equal Vault's; smoke requests pass
   through each Service.

Dry run: Vault is not written (it has no server-side dry run; the plan says what would be
written), the Secret and Deployment changes go to the API server with ``dryRun=All``.
"""
from __future__ import annotations

import base64
import contextlib
import hashlib
import secrets as _random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import Field, field_validator, model_validator

from ..config.parameters import RunbookParams
from ..display import Tables, Titled, show, titled
from ..platform.vault import SECRET_NAME, vault_key_to_secret_key
from ..errors import CheckFailed, ParameterError
from ..records.secret import SecretValue

if TYPE_CHECKING:
    import pandas as pd

    from ..platform.cluster import Cluster
    from ..run.context import RunContext
    from ..platform.vault import Vault

__all__ = ["SECRET_HASH_ANNOTATION", "RotationParams", "RotationRun", "generate_value", "secret_data_hash",
           "readers_of", "sync_secret"]

SYNC_TITLE = f"{SECRET_NAME} after the sync (hashes only)"
VERIFY_TITLES = {"agreement": "Vault and the Secret (hashes)", "pods": "Pods of the readers",
                 "smoke": "Smoke requests through each Service", "served": "Requests served since the change began"}
#: On each reader's pod template: the hash of the Secret's data its pods must start with.
SECRET_HASH_ANNOTATION = "runbooks.veza.app/secret-sha256"


def generate_value(length: int) -> SecretValue:
    """A new random value (URL-safe, ``length`` characters), masked and registered at once."""
    return SecretValue(_random.token_urlsafe(length)[:length], name="generated")


def secret_data_hash(data: dict[str, str]) -> str:
    """One hash of a Secret's whole data (base64 values as stored): what a pod started with."""
    digest = hashlib.sha256()
    for key in sorted(data):
        digest.update(f"{key}={data[key]}\n".encode())
    return digest.hexdigest()[:16]


def readers_of(cluster: "Cluster", secret: str, keys: set[str]) -> dict[str, str]:
    """The Deployments whose containers read any of ``keys`` of ``secret`` (or all of it), each with
    its service (its ``app`` label: a blue-green Deployment is named by colour, its service is not)."""
    readers = {}
    for dep in cluster.deployments():
        containers = (dep["spec"]["template"].get("spec") or {}).get("containers") or []
        for container in containers:
            whole = any((src.get("secretRef") or {}).get("name") == secret for src in container.get("envFrom") or [])
            refs = {((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("key")
                    for env in container.get("env") or []
                    if ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name") == secret}
            if whole or refs & keys:
                name = dep["metadata"]["name"]
                readers[name] = (dep["metadata"].get("labels") or {}).get("app", name)
                break
    return dict(sorted(readers.items()))


def sync_secret(cluster: "Cluster", vault: "Vault", vault_path: str, name: str = SECRET_NAME, *,
                planned: dict[str, SecretValue] | None = None) -> "pd.DataFrame":
    """Vault's secret → the Kubernetes Secret the pods read; a table of keys and hashes only.
    ``planned`` values stand in for Vault's (a dry run, where Vault was not written)."""
    import pandas as pd

    from ..platform.cluster import secret_hashes
    from ..platform.vault import fingerprint

    values = {**vault.read(vault_path), **(planned or {})}
    wanted = {vault_key_to_secret_key(k): v for k, v in values.items()}
    live = cluster.secret(name)
    live_hashes = secret_hashes(live)
    body = {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": name, "annotations": {"veza.app/synced-from": vault_path}},
        "data": {k: base64.b64encode(v.reveal().encode()).decode() for k, v in wanted.items()},
    }
    cluster.apply_secret(body, live)
    rows = [{"key": k, "vault sha256": fingerprint(v), "cluster sha256 before": live_hashes.get(k, "(absent)"),
             "changed": live_hashes.get(k) != fingerprint(v)} for k, v in sorted(wanted.items())]
    rows += [{"key": k, "vault sha256": "(absent)", "cluster sha256 before": h, "changed": True}
             for k, h in sorted(live_hashes.items()) if k not in wanted]
    return pd.DataFrame(rows).set_index("key")


@dataclass
class RotationPlan:
    path: str
    version_now: int
    keys: tuple[str, ...]
    restore_from: int | None  # rollback: the version whose values come back
    readers: dict[str, str]  # Deployment → its service
    new_values: dict[str, SecretValue] = field(default_factory=dict)


class RotationParams(RunbookParams):
    """The rotation runbook's parameters, validated before Vault is read."""

    keys: str = Field(description="Vault keys to rotate, comma-separated (the profile's rotation.generated_keys)")
    rollback: bool = Field(False, description="Give the keys back their values of an earlier Vault version")
    to_version: int = Field(0, ge=0, description="With rollback: the Vault version whose values come back; 0 = previous")
    reason: str = Field("", max_length=500, description="Why: lands in the record")
    dry_run: bool = False

    @field_validator("keys")
    @classmethod
    def _named(cls, value: str) -> str:
        # An empty list once meant "every generated key": a rotation must name what it rotates.
        keys = [k.strip() for k in value.split(",")]
        if not any(keys) or not all(keys):
            raise ValueError(f"name the keys to rotate, comma-separated (got {value!r}): an empty name rotates nothing")
        return ",".join(keys)

    @model_validator(mode="after")
    def _version_with_rollback(self) -> "RotationParams":
        if self.to_version and not self.rollback:
            raise ValueError("to_version is for a rollback: add -p rollback True")
        return self


class RotationRun:
    """One rotation (or its rollback), step by step; each method is one step of the notebook."""

    def __init__(self, ctx: "RunContext", params: RotationParams) -> None:
        from ..platform.cluster import Cluster
        from ..platform.vault import Vault

        self.ctx = ctx
        self.params = params
        self.rules = ctx.profile.rotation
        self.keys = tuple(params.keys.split(","))
        unknown = [k for k in self.keys if k not in self.rules.generated_keys]
        if unknown:
            raise ParameterError(
                f"{', '.join(unknown)}: not a key this runbook may generate (profile rotation.generated_keys: "
                f"{', '.join(self.rules.generated_keys) or 'none'}); a database URL or a provider's API key is "
                "issued by its own system, then written to Vault and synced by a deploy")
        self.rollback, self.to_version = params.rollback, params.to_version or None
        self.cluster = Cluster(ctx.profile, dry_run=ctx.dry_run)
        self.vault = Vault(ctx.profile.vault)
        self.path = ctx.profile.vault.path
        self.plan_: RotationPlan | None = None
        self.began: datetime | None = None  # when the change began: failed requests are counted from here
        self.synced_at: datetime | None = None
        self.expected_hash: str | None = None

    # -- 1. plan -----------------------------------------------------------------------------

    def plan(self) -> Titled:
        """Which keys change, from which Vault version, and which Deployments must restart."""
        import pandas as pd

        from ..platform.vault import fingerprint

        version_now = self.vault.current_version(self.path)
        current = self.vault.read(self.path)
        missing = [k for k in self.keys if k not in current]
        if missing:
            raise ParameterError(f"{self.path} has no {', '.join(missing)}: nothing to rotate")
        restore_from = None
        if self.rollback:
            restore_from = self.to_version or version_now - 1
            if not 1 <= restore_from < version_now:
                raise ParameterError(f"no earlier version to restore: {self.path} is at version {version_now}"
                                     + (f", to_version={self.to_version}" if self.to_version else ""))
            earlier = self.vault.read(self.path, version=restore_from)
            absent = [k for k in self.keys if k not in earlier]
            if absent:
                raise ParameterError(f"version {restore_from} of {self.path} has no {', '.join(absent)}")
            new_values = {k: earlier[k] for k in self.keys}
        else:
            new_values = {k: generate_value(self.rules.length) for k in self.keys}
        readers = readers_of(self.cluster, SECRET_NAME, {vault_key_to_secret_key(k) for k in self.keys})
        self.plan_ = RotationPlan(self.path, version_now, self.keys, restore_from, readers, new_values)
        self.ctx.note("rotation", f"{'rollback to version ' + str(restore_from) if restore_from else 'rotation'} of "
                      f"{', '.join(self.keys)} at {self.path} (version {version_now} now)")
        rows = [{"key": k, "vault version now": version_now, "sha256 now": fingerprint(current[k]),
                 "new value": f"version {restore_from}'s" if restore_from else f"generated, {self.rules.length} chars",
                 "sha256 after": fingerprint(new_values[k]),
                 "restarts": ", ".join(readers) or "(no reader)"} for k in self.keys]
        return titled("The keys to rotate, from which Vault version, and the readers that restart", pd.DataFrame(rows).set_index("key"))

    def describe_change(self) -> str:
        """What the rotation will change, for its approval gate: never a value, only hashes."""
        from ..platform.vault import fingerprint

        plan = self._planned()
        what = f"version {plan.restore_from}'s values back" if plan.restore_from else "new generated values"
        lines = [f"{plan.path}: version {plan.version_now} -> {plan.version_now + 1}, {', '.join(plan.keys)} get {what}"]
        if plan.restore_from:  # generated values are drawn again by a resumed run: no hash to promise
            lines += [f"  {k}: sha256 {fingerprint(plan.new_values[k])} after" for k in plan.keys]
        lines.append(f"then Secret {SECRET_NAME} synced from it, and these Deployments restarted: "
                     + (", ".join(plan.readers) or "none"))
        return "\n".join(lines)

    def vault_facts(self) -> dict[str, Any]:
        """What an approval of the rotation rests on: the Vault version it starts from and the readers
        (a write to Vault or a new reader since is drift, and a resume refuses it)."""
        plan = self._planned()
        return {"vault path": plan.path, "vault version": self.vault.current_version(plan.path),
                "keys": ", ".join(plan.keys), "readers": ", ".join(sorted(plan.readers))}

    def _planned(self) -> RotationPlan:
        if self.plan_ is None:
            raise ParameterError("plan() first: the rotation acts on what the plan showed")
        return self.plan_

    # -- 2. rotate ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locks(self) -> Iterator[None]:
        """Every reader's deploy lock, the one a deploy of its service takes: a deploy running
        meanwhile would restart pods half-way."""
        from ..run.lock import DeployLock

        with contextlib.ExitStack() as stack:
            for service in sorted(set(self._planned().readers.values())):
                stack.enter_context(DeployLock(self.cluster, service, self.ctx.run_id))
            yield

    def apply(self) -> Titled:
        """Under every reader's deploy lock, three steps of the record: write the new Vault
        version, sync the Kubernetes Secret, restart the readers. Returns the synced Secret's table."""
        ctx = self.ctx
        with self.locks():
            show(ctx.run_step("Write the new Vault version", self.rotate, key=f"rotate-{','.join(self.keys)}"))
            synced = ctx.run_step("Sync the Kubernetes Secret", self.sync)
            show(ctx.run_step("Restart the readers", self.restart))
        return synced

    def rotate(self) -> str:
        """A new Vault version in which only the planned keys change."""
        plan = self._planned()
        self.began = datetime.now(timezone.utc)
        if self.ctx.dry_run:
            return (f"dry run: would write version {plan.version_now + 1} of {plan.path} with new "
                    f"{', '.join(plan.keys)} (Vault has no server-side dry run: nothing was written)")
        now = self.vault.current_version(self.path)
        if now != plan.version_now:  # someone wrote meanwhile: their change must not be overwritten blindly
            raise CheckFailed(f"{plan.path} moved from version {plan.version_now} to {now} since the plan; run again")
        data = {**self.vault.read(self.path), **plan.new_values}
        written = self.vault.write(data, self.path, cas=plan.version_now)
        self.ctx.figure("vault_version_before", plan.version_now)
        self.ctx.figure("vault_version_after", written)
        kept = f"version {plan.version_now} kept for rollback (-p rollback True)"
        return f"{plan.path}: version {written} written ({', '.join(plan.keys)} changed); {kept}"

    # -- 3. sync -----------------------------------------------------------------------------

    def sync(self) -> Titled:
        """The Kubernetes Secret from Vault's new version (hashes only)."""
        if self.ctx.dry_run:  # Vault was not written: the API server checks the Secret the plan would give
            return titled(SYNC_TITLE + " (dry run)",
                          sync_secret(self.cluster, self.vault, self.path, planned=self._planned().new_values))
        table = sync_secret(self.cluster, self.vault, self.path)
        self.synced_at = datetime.now(timezone.utc).replace(microsecond=0)
        live = self.cluster.secret(SECRET_NAME) or {}
        self.expected_hash = secret_data_hash(live.get("data") or {})
        return titled(SYNC_TITLE, table)

    # -- 4. restart --------------------------------------------------------------------------

    def restart(self) -> str:
        """Stamp each reader's pod template with the Secret's hash (every pod rolls), then wait
        for all of them: they roll at the same time, as `kubectl rollout restart a b c` does."""
        from ..platform.rollout import wait_for_rollout

        plan = self._planned()
        stamp = self.expected_hash or "dry-run"
        patch = {"spec": {"template": {"metadata": {"annotations": {
            SECRET_HASH_ANNOTATION: stamp,
            "kubectl.kubernetes.io/restartedAt": datetime.now(timezone.utc).isoformat(timespec="seconds")}}}}}
        for deployment in plan.readers:
            self.cluster.patch_deployment(deployment, patch, what="restart with the rotated secret")
        if self.ctx.dry_run:
            return f"dry run: the API server accepted the restart of {', '.join(plan.readers)}; nothing rolled"
        began = datetime.now(timezone.utc)
        lines = []
        for deployment in plan.readers:
            state = wait_for_rollout(self.cluster, deployment, self.ctx.profile.timeouts.rollout_s)
            lines.append(f"{deployment}: {state.ready}/{state.desired} ready")
        self.ctx.figure("restart_s", round((datetime.now(timezone.utc) - began).total_seconds(), 3))
        return "\n".join(lines)

    # -- 5. verify ---------------------------------------------------------------------------

    def verify(self) -> Tables:
        """Every reader's pods are ready and carry the new hash; Vault and the Secret agree; smoke
        requests pass through each Service."""
        import pandas as pd

        from ..platform.checks import service_url, smoke_checks
        from ..platform.cluster import pod_state
        from ..platform.vault import fingerprint

        if self.ctx.dry_run:
            return Tables({})
        plan = self._planned()
        vault_now = self.vault.read(self.path)
        in_secret = self.cluster.secret_keys(SECRET_NAME)
        agreement = [{"key": k, "vault sha256": fingerprint(vault_now[k]),
                      "secret sha256": in_secret.get(vault_key_to_secret_key(k), "(absent)"),
                      "rotated": fingerprint(vault_now[k]) == fingerprint(plan.new_values[k])} for k in plan.keys]
        pods, stale = [], []
        for deployment in plan.readers:
            selector = self.cluster.deployment(deployment)["spec"]["selector"].get("matchLabels") or {}
            for pod in self.cluster.pods(",".join(f"{k}={v}" for k, v in selector.items())):
                state = pod_state(pod)
                if state.deleting:
                    continue
                annotations = pod["metadata"].get("annotations") or {}
                started = pod["metadata"].get("creationTimestamp")
                row = {"pod": state.name, "deployment": deployment, "ready": state.ready,
                       "secret hash": annotations.get(SECRET_HASH_ANNOTATION, "(none)"), "created": started}
                pods.append(row)
                if row["secret hash"] != self.expected_hash or not state.ready:
                    stale.append(state.name)
        mismatched = [r["key"] for r in agreement if not r["rotated"] or r["vault sha256"] != r["secret sha256"]]
        smoke = {}
        for service in sorted(set(plan.readers.values())):
            spec = self.ctx.profile.services.get(service)
            smoke[service] = smoke_checks(service_url(self.cluster, service), spec,
                                          reach=self.cluster.reach).reset_index().assign(service=service)
        self.ctx.figure("pods_restarted", len(pods))
        served = self._served(services=list(smoke))
        tables = {"agreement": pd.DataFrame(agreement).set_index("key"),
                  "pods": pd.DataFrame(pods).set_index("pod") if pods else pd.DataFrame(),
                  "smoke": pd.concat(smoke.values()).set_index(["service", "route"]) if smoke else pd.DataFrame()}
        if served is not None:
            tables["served"] = served
        if mismatched:
            raise CheckFailed(f"Vault and the Secret disagree on {', '.join(mismatched)} after the sync")
        if stale:
            raise CheckFailed(f"{len(stale)} pod(s) not running with the rotated secret (hash {self.expected_hash}): "
                              + ", ".join(stale[:6]))
        if served is not None and int(served["failed"].sum()):
            raise CheckFailed(f"{int(served['failed'].sum())} request(s) failed while the readers restarted")
        return Tables(tables, VERIFY_TITLES)

    def _served(self, services: list[str]) -> "pd.DataFrame | None":
        """Requests and failures since the change began, per service, from the profile's load
        report (the sandbox's load generator); None without one (production: the signals tell)."""
        import pandas as pd

        from ..platform.load_report import load_report

        report = load_report(self.ctx.profile.load_report_url, self.began)
        if report is None:
            return None
        rows = [{"service": s, "requests": int((report.get(s) or {}).get("requests", 0)),
                 "failed": int((report.get(s) or {}).get("failed", 0))} for s in services]
        self.ctx.figure("failed_requests", sum(r["failed"] for r in rows))
        return pd.DataFrame(rows).set_index("service")
