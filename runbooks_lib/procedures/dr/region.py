"""Region failover: the platform rebuilt in the disaster-recovery region from what was kept off-site.

The guide's third recovery procedure: a whole region lost, recovered in under 4 h. Before the
fault the primary region keeps off-site its manifests (:func:`export_manifests`: Deployments,
Services, ConfigMaps, Ingress, HPA, Istio rules; Secrets by name and key names only, their
values being Vault's), a base backup and its continuously archived WAL. At the fault the drill
freezes the WAL archive as it stands (what was shipped by then: a lost region's last segments
die with it) and from then on uses only the DR profile — its cluster, its Vault (replicated),
its Prometheus — and the off-site store. RPO and lost rows are read from the heartbeat rows the
rebuilt database holds; RTO runs from the fault to the first verified write and read through
the application in the DR region.

In a drill the primary region is declared lost, never harmed: the clean-up removes only what
the drill built in the DR region.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from ...config.clock import utcnow
from ...errors import CheckFailed, ParameterError, RunbookError
from ...records.secret import SecretValue
from .postgres import write_and_read
from .report import Measurement

if TYPE_CHECKING:
    import pandas as pd

    from ...platform.cluster import Cluster
    from ...run.context import RunContext
    from ...config.profiles import Profile
    from ...platform.vault import Vault
    from .heartbeat import Beat
    from .pitr import RecoveredInstance
    from .store import BackupStore, ManifestSeal

__all__ = ["KEPT_KINDS", "OffsiteManifests", "export_manifests", "latest_manifests", "RegionFailover"]

# What a region rebuild needs, in the order it is created (a Deployment's ConfigMaps first).
KEPT_KINDS = ("ConfigMap", "Service", "Deployment", "Ingress", "HorizontalPodAutoscaler",
              "VirtualService", "DestinationRule")
# Set by the API server, never carried to another cluster (as Velero strips them on restore).
_SERVER_METADATA = ("uid", "resourceVersion", "creationTimestamp", "generation", "managedFields", "selfLink",
                    "ownerReferences", "deletionTimestamp", "deletionGracePeriodSeconds", "namespace")
_SERVER_ANNOTATIONS = ("deployment.kubernetes.io/revision", "kubectl.kubernetes.io/last-applied-configuration")
_SERVICE_ADDRESSES = ("clusterIP", "clusterIPs", "healthCheckNodePort")  # the DR cluster assigns its own
# Made by the cluster itself in every namespace, never by the platform's deploys: the controller
# manager publishes its own cluster's CA certificate there. Another cluster's would be wrong, and
# the DR cluster has made its own already (creating it again is a 409).
_CLUSTER_MADE = frozenset({("ConfigMap", "kube-root-ca.crt")})
MANIFESTS_FOLDER = "manifests"
# Secret keys each region holds its own value of (never replicated): the cache's address.
REGIONAL_KEYS = frozenset({"redis_url"})
VAULT_DSN_KEY = "database_url"


def made_by_the_cluster(obj: dict[str, Any]) -> bool:
    """Whether the cluster makes this object in every namespace by itself (never kept off-site)."""
    return (obj.get("kind"), (obj.get("metadata") or {}).get("name")) in _CLUSTER_MADE


def portable(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as another cluster can create it: no status, no server-set metadata, no address."""
    meta = {k: v for k, v in (obj.get("metadata") or {}).items() if k not in _SERVER_METADATA}
    notes = {k: v for k, v in (meta.get("annotations") or {}).items() if k not in _SERVER_ANNOTATIONS}
    meta.pop("annotations", None)
    if notes:
        meta["annotations"] = notes
    body = {k: v for k, v in obj.items() if k not in ("status", "metadata")}
    body["metadata"] = meta
    if obj.get("kind") == "Service":
        body["spec"] = {k: v for k, v in (body.get("spec") or {}).items() if k not in _SERVICE_ADDRESSES}
    return body


@dataclass(frozen=True)
class OffsiteManifests:
    """One export of a namespace, as kept off-site: the objects and an index that checks them."""

    name: str
    taken_at: str
    source_cluster: str
    namespace: str
    objects: tuple[dict[str, Any], ...]
    secrets: dict[str, list[str]]  # Secret name -> its key names (values stay in Vault)
    sha256: str

    def counts(self) -> dict[str, int]:
        from collections import Counter

        return dict(Counter(obj["kind"] for obj in self.objects))

    def names(self) -> set[tuple[str, str]]:
        return {(o["kind"], o["metadata"]["name"]) for o in self.objects}


_INDEX_TAG = b"veza-offsite-manifests-v1\n"


def _index_bytes(index: dict[str, Any]) -> bytes:
    """What the index's HMAC covers: all of it but the HMAC (the objects through their sha256)."""
    fields = {k: v for k, v in index.items() if k != "authentication"}
    return _INDEX_TAG + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()


def export_manifests(cluster: "Cluster", backups: "BackupStore", source_cluster: str,
                     seal: "ManifestSeal") -> OffsiteManifests:
    """Write the namespace's objects (portable) and an index with their sha256 beside the backups;
    the index is vouched for by ``seal`` (Vault's HMAC): the DR region creates only what it holds."""
    import yaml

    objects = tuple(portable(o) for o in cluster.namespaced_objects(KEPT_KINDS) if not made_by_the_cluster(o))
    secrets = {s["metadata"]["name"]: sorted((s.get("data") or {}))
               for s in cluster.namespaced_objects(("Secret",))}
    text = yaml.safe_dump_all(objects, sort_keys=True)
    taken = utcnow()
    exported = OffsiteManifests(f"manifests-{taken:%Y%m%dT%H%M%S%fZ}", taken.isoformat(), source_cluster,
                                cluster.namespace, objects, secrets, hashlib.sha256(text.encode()).hexdigest())
    store = backups.folder(MANIFESTS_FOLDER)
    store.write_text(exported.name, ".yaml", text)
    index = {"name": exported.name, "taken_at": exported.taken_at, "source_cluster": source_cluster,
             "namespace": cluster.namespace, "secrets": secrets, "sha256": exported.sha256,
             "counts": {kind: exported.counts().get(kind, 0) for kind in KEPT_KINDS}}
    index["authentication"] = seal.sign(_index_bytes(index))
    store.write_text(exported.name, ".index.json", json.dumps(index, indent=2))  # last: an export without it is incomplete
    return exported


def latest_manifests(backups: "BackupStore") -> OffsiteManifests:
    """The newest complete export whose index the store's seal vouches for (under its own name),
    its sha256 checked; a damaged file is named, and so are the exports passed over."""
    import yaml

    if backups.seal is None:
        raise ParameterError("reading the off-site manifests needs a store with a seal (the DR Vault's transit key)")
    store = backups.folder(MANIFESTS_FOLDER)
    names = sorted((p.rsplit("/", 1)[-1].removesuffix(".index.json") for p in store.files()
                    if p.endswith(".index.json")), reverse=True)
    refused = []
    for name in names:
        index = json.loads(store.read_text(name, ".index.json"))
        mac = str(index.get("authentication") or "")
        if index.get("name") == name and mac and backups.seal.verify([(_index_bytes(index), mac)])[0]:
            break
        refused.append(name)
    else:
        passed = f" ({len(refused)} not vouched for by Vault: {', '.join(refused)})" if refused else ""
        raise CheckFailed(f"no authentic manifests kept off-site in {store.url}: nothing to rebuild the platform "
                          f"from{passed}")
    text = store.read_text(name, ".yaml")
    if hashlib.sha256(text.encode()).hexdigest() != index["sha256"]:
        raise CheckFailed(f"{store.path(name, '.yaml')} does not match the sha256 of its index: damaged or truncated")
    objects = tuple(o for o in yaml.safe_load_all(text) if o)
    return OffsiteManifests(name, index["taken_at"], index["source_cluster"], index["namespace"], objects,
                            index["secrets"], index["sha256"])


def _with_address(dsn: SecretValue, host: str, port: int) -> SecretValue:
    """The DSN with another server's address: same database, user and password."""
    parts = urlsplit(dsn.reveal())
    credentials = parts.netloc.rpartition("@")[0]
    netloc = f"{credentials}@{host}:{port}" if credentials else f"{host}:{port}"
    return SecretValue(urlunsplit(parts._replace(netloc=netloc)), name=dsn.name or VAULT_DSN_KEY)


class DrillLog(Protocol):
    """What the region scenario needs of its drill (runbooks_lib.procedures.dr.drill.Drill): the primary
    region's handles, and the timeline, measurements, checks and findings it reports."""

    ctx: "RunContext"
    params: Any
    profile: "Profile"
    cluster: "Cluster"
    vault: "Vault"
    primary: SecretValue
    rto_target: float
    rpo_target: float
    measurements: list[Measurement]
    checks: list[Any]
    findings: list[str]

    def mark(self, what: str, at: datetime | None = None) -> datetime: ...

    def stop_heartbeat(self) -> None: ...

    def acked_beats(self, moment: datetime) -> list["Beat"]: ...


@dataclass
class RegionFailover:
    """The region scenario of a drill, a method per notebook step. ``drill`` keeps the timeline,
    the measurements and the findings; ``dr`` is the DR region's profile."""

    drill: DrillLog
    dr: "Profile"
    parts: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        from ...platform.cluster import Cluster
        from ...platform.vault import Vault
        from .store import BackupStore, VaultSeal

        if not self.dr.backups.url or not self.dr.backups.wal_archive_url:
            raise ParameterError(f"profile {self.dr.name} names no off-site backups.url and wal_archive_url: "
                                 "the DR region would have nothing to restore from")
        self.archive = Path(str(self.dr.backups.wal_archive_url).removeprefix("file://"))
        if "://" in str(self.archive) or not self.archive.is_dir():
            raise ParameterError(f"the region drill replays the WAL archive from a folder this machine reads; "
                                 f"{self.dr.backups.wal_archive_url} is not one")
        self.cluster = Cluster(self.dr, dry_run=self.drill.params.dry_run)
        self.vault = Vault(self.dr.vault)
        # Read in the DR region, vouched for by its Vault (the transit key is replicated).
        self.offsite = BackupStore(self.dr.backups.url, self.dr.backups.storage_options,
                                   seal=VaultSeal(self.vault, self.dr.backups))
        self.fault_at: datetime | None = None
        self.wal_at_fault: Path | None = None
        self.instance: "RecoveredInstance | None" = None
        self.manifests: OffsiteManifests | None = None
        self.vault_before: dict[str, SecretValue] | None = None
        self.namespace_created = False
        self.beats: list[tuple[datetime, bool]] = []
        self.switched_at: datetime | None = None  # when users were sent to the DR region
        self.created: list[tuple[str, str]] = []  # (kind, name) of each object the drill made there

    # -- before the fault (the primary region) -------------------------------------------
    def steady_state(self) -> "pd.DataFrame":
        """The DR region stands by: its cluster is the one named, its namespace is free, its Vault
        is unsealed and unwraps the primary's data keys (the transit key is replicated)."""
        import pandas as pd

        from ...run.cluster_identity import check_cluster_identity

        primary = self.drill
        identity = check_cluster_identity(self.dr)
        health = self.vault.health()
        key, wrapped = primary.vault.data_key(primary.profile.backups.transit_key, primary.profile.backups.transit_mount)
        why_not = "it unwrapped a different key"
        try:
            unwrapped = self.vault.unwrap_data_key(wrapped, self.dr.backups.transit_key, self.dr.backups.transit_mount)
            replicated = unwrapped == key
        except RunbookError as e:  # the finding is the point: a DR Vault without the key cannot read a backup
            replicated, why_not = False, str(e)
        del key
        lagging = self._secrets_behind()
        occupied = self.cluster.namespace_exists() and bool(self.cluster.namespaced_objects(("Deployment",)))
        rows = [("DR cluster", identity.matches, f"{identity.server}, {self.dr.cluster.namespace}"),
                ("DR namespace free", not occupied, "no Veza Deployment there yet" if not occupied else "occupied"),
                ("DR Vault unsealed", bool(health.reachable and not health.sealed), health.address),
                ("DR Vault unwraps the primary's data keys", replicated,
                 f"transit key {self.dr.backups.transit_key} replicated" if replicated else "NOT replicated"),
                ("DR Vault's secrets in step with the primary's", not lagging,
                 f"differ: {', '.join(lagging)} (sha256 compared)" if lagging else
                 f"{self.dr.vault.path}: same values (sha256 compared)"),
                ("off-site store", self.offsite.url, f"WAL archive {self.dr.backups.wal_archive_url}")]
        if lagging:
            primary.findings.append(f"the DR Vault's {self.dr.vault.path} differs from the primary's on "
                                    f"{', '.join(lagging)}: its replication is behind, and the platform rebuilt "
                                    "there would run with those values")
        if occupied:
            raise CheckFailed(f"the DR region's namespace {self.dr.cluster.namespace} already runs Deployments: "
                              "the drill rebuilds into a free namespace; clean it up first")
        if not replicated:
            raise CheckFailed(f"the DR region's Vault cannot unwrap the primary's data keys (transit key "
                              f"{self.dr.backups.transit_key} not replicated: {why_not}): every backup is "
                              "unreadable there")
        primary.mark("DR region standing by")
        return pd.DataFrame(rows, columns=["check", "value", "detail"]).set_index("check")

    def _secrets_behind(self) -> list[str]:
        """Keys of the platform's secret whose values differ between the two Vaults (compared by
        hash), except the regional ones (a cache's address is each region's own)."""
        from ...platform.vault import fingerprint

        ours, theirs = self.drill.vault.read(), self.vault.read(self.dr.vault.path)
        keys = (set(ours) | set(theirs)) - REGIONAL_KEYS
        return sorted(k for k in keys if k not in ours or k not in theirs
                      or fingerprint(ours[k]) != fingerprint(theirs[k]))

    def keep_off_site(self) -> "pd.DataFrame":
        """What a region keeps elsewhere: the manifests, a base backup, the WAL archived up to now."""
        import pandas as pd

        from .pitr import archived_up_to, force_wal_switch, take_base_backup
        from .store import VaultSeal

        primary = self.drill
        exported = export_manifests(primary.cluster, self.offsite, primary.ctx.cluster.get("identity") or "",
                                    VaultSeal(primary.vault, primary.profile.backups))
        base = take_base_backup(primary.primary, primary.vault, primary.profile.backups)
        archived_up_to(primary.primary, force_wal_switch(primary.primary))
        primary.ctx.figure("backup_bytes", base.size)
        primary.mark(f"off-site: manifests {exported.name}, base backup {base.path.name}")
        rows = [{"kept": f"{kind} objects", "count": n} for kind, n in exported.counts().items()]
        rows += [{"kept": f"Secret {name} (key names only; values from Vault)", "count": len(keys)}
                 for name, keys in exported.secrets.items()]
        rows.append({"kept": f"base backup {base.path.name} (encrypted)", "count": base.size})
        return pd.DataFrame(rows).set_index("kept")

    def lose_region(self, after_s: float = 3.0) -> str:
        """The fault: the primary region is lost ``after_s`` seconds after the last forced WAL switch.

        Those seconds of heartbeat rows sit in a WAL segment not yet archived (archive_timeout
        closes one every 30 s in the sandbox), as the newest rows of a real region do when it
        dies: the RPO and lost rows measured afterwards are what a loss at that instant costs.
        Then the heartbeat stops (no write lands there any more) and the WAL archive is frozen
        as it stands."""
        from ...display import progress_bar
        from .pitr import scratch_folder

        primary = self.drill
        for _ in progress_bar(range(int(after_s * 10)), desc="the region keeps writing until the fault", unit="0.1 s"):
            time.sleep(0.1)
        self.fault_at = primary.mark("fault: the primary region is lost")
        primary.stop_heartbeat()
        self.wal_at_fault = scratch_folder(self.dr.backups, "wal-at-fault-")
        kept = 0
        for segment in self.archive.iterdir():
            try:
                os.link(segment, self.wal_at_fault / segment.name)  # a hard link: the frozen view costs nothing
            except OSError:
                shutil.copy2(segment, self.wal_at_fault / segment.name)
            kept += 1
        primary.ctx.on_finish(self._remove_wal_snapshot)
        return (f"fault at {self.fault_at.isoformat()} ({after_s:g} s after the last forced WAL switch); "
                f"{kept} archived WAL files had reached the off-site store")

    # -- after the fault (the DR region only) ----------------------------------------------
    def restore_database(self) -> str:
        """The newest base backup plus every archived WAL segment, on a new server in the DR region."""
        from .pitr import latest_base_backup, recover_to_time

        assert self.wal_at_fault is not None, "declare the region lost first"
        began = time.monotonic()
        base = latest_base_backup(self.dr.backups, self.vault)
        self.instance = recover_to_time(base, None, self.vault, self.dr.backups, wal_dir=self.wal_at_fault)
        self.drill.ctx.on_finish(self._stop_instance)
        self.parts["database"] = round(time.monotonic() - began, 3)
        self.drill.ctx.figure("restore_s", self.parts["database"])
        self.drill.mark(f"database recovered in the DR region (port {self.instance.port})")
        return (f"{base.path.name} (taken {base.taken_at:%H:%M:%S} UTC, its manifest authentic) + "
                f"{self.instance.wal_files} archived WAL files unsealed in {self.instance.unseal_s:.1f} s and replayed "
                f"to their end in {self.instance.replay_s:.1f} s; the DR database listens on port {self.instance.port}")

    def resync_secrets(self) -> "pd.DataFrame":
        """The DR Vault's DSN now names the DR database; the Secret is built from the DR Vault."""
        from ..rotation import sync_secret

        assert self.instance is not None, "restore the database first"
        began = time.monotonic()
        path = self.dr.vault.path
        current = self.vault.read(path)
        if VAULT_DSN_KEY not in current:
            raise CheckFailed(f"the DR Vault's {path} has no {VAULT_DSN_KEY}: the replicated secret is incomplete")
        self.vault_before = current
        dsn = _with_address(current[VAULT_DSN_KEY], "127.0.0.1", self.instance.port)
        self.vault.write({**current, VAULT_DSN_KEY: dsn}, path)
        self.drill.ctx.on_finish(self._restore_vault)
        if not self.cluster.namespace_exists():
            self.cluster.create_namespace({"app.kubernetes.io/part-of": "veza"})
            self.namespace_created = True
        # Whatever happens next, nothing the drill built is left in the DR region (a half-built
        # platform there, its database gone, would only mislead the next look or drill).
        self.drill.ctx.on_finish(self._remove_platform)
        table = sync_secret(self.cluster, self.vault, path)
        self.created.append(("Secret", "veza-secrets"))
        self.parts["secrets"] = round(time.monotonic() - began, 3)
        self.drill.mark("secrets re-synced from the DR Vault")
        return table

    def recreate_platform(self) -> "pd.DataFrame":
        """Every object kept off-site, created in the DR cluster; then every rollout, waited for."""
        import pandas as pd

        from ...platform.rollout import wait_for_rollout

        began = time.monotonic()
        self.manifests = latest_manifests(self.offsite)
        rows = []
        for obj in sorted(self.manifests.objects, key=lambda o: KEPT_KINDS.index(o["kind"])):
            self.cluster.create_object(obj)
            self.created.append((obj["kind"], obj["metadata"]["name"]))
            rows.append({"kind": obj["kind"], "name": obj["metadata"]["name"], "created": True})
        deployments = [o["metadata"]["name"] for o in self.manifests.objects if o["kind"] == "Deployment"]
        for name in deployments:
            state = wait_for_rollout(self.cluster, name, self.dr.timeouts.rollout_s * 2)
            rows.append({"kind": "rollout", "name": name, "created": state.rolled_out})
        self.parts["platform"] = round(time.monotonic() - began, 3)
        self.drill.mark(f"platform recreated from {self.manifests.name}: {len(self.manifests.objects)} objects, "
                        f"{len(deployments)} rollouts complete")
        return pd.DataFrame(rows)

    def switch_entry_point(self) -> str:
        from .failover import run_drill_command

        began = time.monotonic()
        command = self.dr.drill.switch_entry_point
        if command:
            out = run_drill_command(command, "switch the entry point")
            self.switched_at = utcnow()
            self.drill.ctx.on_finish(self._switch_back)
        else:
            out = "no drill.switch_entry_point in the DR profile: the switch (DNS) is a step done by hand"
            self.drill.findings.append(f"profile {self.dr.name} names no entry-point switch: the DNS change that "
                                       "sends users to the DR region is manual, and not in this RTO")
        self.parts["entry point"] = round(time.monotonic() - began, 3)
        self.drill.mark("entry point switched to the DR region" if command else "entry point: manual")
        return out

    def verify(self) -> "pd.DataFrame":
        """End to end in the DR region: every pod answers, smoke requests through each Service pass,
        and a row is written and read through the DSN the application's pods read. Then the region's
        RTO and RPO, from the fault to that write and to the newest heartbeat the DR database holds."""
        import pandas as pd

        from ...platform.vault import SECRET_NAME
        from .failover import application_dsn
        from .restore import Check

        assert self.manifests is not None and self.instance is not None and self.fault_at is not None
        began = time.monotonic()
        services = sorted({o["metadata"]["name"] for o in self.manifests.objects if o["kind"] == "Deployment"}
                          & set(self.dr.services.services))
        rows = [row for service in services for row in self._service_checks(service)]
        rows += self._users_served(services)
        dsn = application_dsn(self.cluster)
        wrote = write_and_read(dsn)
        verified = utcnow()
        rows.append({"check": "write and read through the application's DSN", "passed": wrote,
                     "detail": f"Secret {SECRET_NAME} → the DR database"})
        self.parts["validation"] = round(time.monotonic() - began, 3)
        self.drill.mark("DR region verified: writes and reads through the application"
                        if all(r["passed"] for r in rows) else "DR region verification FAILED", verified)
        self._measure(dsn, verified)
        self.drill.checks += [Check(r["check"], r["passed"], r["detail"]) for r in rows]
        return pd.DataFrame(rows).set_index("check")

    def _service_checks(self, service: str) -> list[dict[str, Any]]:
        """A service's pods (health, readiness, version) and smoke requests through its Service, each a row."""
        from ...platform.checks import pod_checks, service_url, smoke_checks

        spec = self.dr.services.get(service)
        checks = (("pods", lambda: pod_checks(self.cluster, service, spec),
                   lambda t: f"{len(t)} pods answered health, ready and version"),
                  ("smoke", lambda: smoke_checks(service_url(self.cluster, service), spec, reach=self.cluster.reach),
                   lambda t: f"{int(t['requests'].sum())} requests over {len(t)} routes, all 2xx"))
        rows = []
        for what, check, said in checks:
            try:
                rows.append({"check": f"{service} {what}", "passed": True, "detail": said(check())})
            except CheckFailed as e:
                rows.append({"check": f"{service} {what}", "passed": False, "detail": str(e)})
        return rows

    def _measure(self, dsn: Any, verified: datetime) -> None:
        """RTO (fault -> the verified write), RPO (fault -> the newest heartbeat there) and the
        acknowledged rows lost, as figures and measurements with their parts."""
        from .heartbeat import lost_rows, newest_beat

        assert self.fault_at is not None
        acked = self.drill.acked_beats(self.fault_at)
        newest = newest_beat(dsn, before=self.fault_at)
        rpo = round((self.fault_at - newest[1]).total_seconds(), 3) if newest else None
        missing = set(lost_rows(dsn, acked))
        lost = len(missing)
        self.beats = [(b.at, b.seq in missing) for b in acked]  # for the plot: each acknowledged row, lost or kept
        rto = round((verified - self.fault_at).total_seconds(), 3)
        ctx = self.drill.ctx
        ctx.figure("rto_s", rto)
        ctx.figure("rpo_s", rpo)
        ctx.figure("lost_rows", lost)
        self.drill.measurements += [
            Measurement("region RTO (fault -> verified write and read in the DR region)", rto, self.drill.rto_target, "s"),
            Measurement("  database: base backup + WAL replay", self.parts.get("database"), None, "s"),
            Measurement("  secrets re-synced from the DR Vault", self.parts.get("secrets"), None, "s"),
            Measurement("  platform recreated, rollouts complete", self.parts.get("platform"), None, "s"),
            Measurement("  entry point switched", self.parts.get("entry point"), None, "s"),
            Measurement("  validation", self.parts["validation"], None, "s"),
            Measurement("region RPO (fault -> newest heartbeat in the DR database)", rpo, self.drill.rpo_target, "s"),
            Measurement("heartbeat rows lost (acknowledged, absent in the DR region)", lost, None, "rows"),
        ]
        if lost:
            self.drill.findings.append(f"{lost} acknowledged heartbeat rows were lost with the region: WAL not yet "
                                       "archived off-site dies with it (archive_timeout bounds the RPO)")

    def plot(self) -> Any:
        """The region's recovery at a glance: each heartbeat row the primary acknowledged before the
        fault, kept or lost in the DR region (the RPO is the gap before the fault), and the RTO's parts."""
        import matplotlib.pyplot as plt

        assert self.fault_at is not None
        fig, (rows, parts) = plt.subplots(1, 2, figsize=(12, 3.2), gridspec_kw={"width_ratios": [3, 2]})
        for lost, colour, label in ((False, "tab:green", "in the DR database"), (True, "tab:red", "lost with the region")):
            xs = [(at - self.fault_at).total_seconds() for at, gone in self.beats if gone is lost]
            rows.scatter(xs, [1] * len(xs), color=colour, label=f"{label} ({len(xs)})", s=30)
        rows.axvline(0, color="black", linestyle="--", label="fault")
        rpo = self.drill.ctx.figures.get("rpo_s")
        if rpo is not None:
            rows.axvspan(-rpo, 0, color="tab:red", alpha=0.1, label=f"RPO {rpo:.1f} s")
        rows.set_yticks([])
        rows.set_xlabel("seconds from the fault")
        rows.set_title("Heartbeat rows acknowledged by the primary")
        rows.legend(loc="upper left", fontsize=8)
        names = [name for name in ("database", "secrets", "platform", "entry point", "validation") if name in self.parts]
        left = 0.0
        for name in names:
            parts.barh(0, self.parts[name], left=left, label=f"{name} {self.parts[name]:.1f} s")
            left += self.parts[name]
        parts.set_yticks([])
        parts.set_xlabel("seconds")
        parts.set_title(f"RTO {self.drill.ctx.figures.get('rto_s')} s (target {self.drill.rto_target:g} s)")
        parts.legend(loc="upper left", fontsize=8, ncol=2)
        fig.tight_layout()
        return fig

    def _users_served(self, services: list[str], wait_s: float = 10.0) -> list[dict[str, Any]]:
        """What the users' own requests got in the DR region since the switch (the profile's load
        report), once each service has had some; nothing to read without a report or a switch."""
        from ...display import progress_bar
        from ...platform.load_report import load_report

        if self.switched_at is None or not self.dr.load_report_url:
            return []
        deadline = time.monotonic() + wait_s
        with progress_bar(total=len(services), desc="services with users' requests in the DR region",
                          unit="service") as bar:
            while True:
                report = load_report(self.dr.load_report_url, self.switched_at) or {}
                got = {s: report.get(s) or {} for s in services}
                bar.n = sum(int(g.get("requests", 0)) >= 3 for g in got.values())
                bar.refresh()
                if bar.n == len(services) or time.monotonic() > deadline:
                    break
                time.sleep(0.5)
        return [{"check": f"{s} users' requests in the DR region", "passed": bool(g.get("requests")) and not g.get("failed"),
                 "detail": f"{int(g.get('requests', 0))} since the switch, {int(g.get('failed', 0))} failed"}
                for s, g in got.items()]

    def _switch_back(self) -> None:
        from .failover import run_drill_command

        if self.switched_at is not None and self.dr.drill.switch_entry_point_back:
            run_drill_command(self.dr.drill.switch_entry_point_back, "switch the entry point back")
        self.switched_at = None

    def missing(self) -> "pd.DataFrame":
        """What the primary ran that the DR region does not (compared by kind and name; Secrets by key names)."""
        import pandas as pd

        assert self.manifests is not None
        live = {(o["kind"], o["metadata"]["name"]) for o in self.cluster.namespaced_objects(KEPT_KINDS)}
        rows = [{"object": f"{kind}/{name}", "in the DR region": (kind, name) in live}
                for kind, name in sorted(self.manifests.names())]
        secrets = {s["metadata"]["name"]: set(s.get("data") or {}) for s in self.cluster.namespaced_objects(("Secret",))}
        for name, keys in sorted(self.manifests.secrets.items()):
            absent = sorted(set(keys) - secrets.get(name, set()))
            rows.append({"object": f"Secret/{name}", "in the DR region": not absent})
            if absent:
                self.drill.findings.append(f"Secret {name} in the DR region lacks {', '.join(absent)}: "
                                           "those keys are not in the DR Vault")
        gone = [r["object"] for r in rows if not r["in the DR region"]]
        if gone:
            self.drill.findings.append(f"missing in the DR region: {', '.join(gone)}")
        return pd.DataFrame(rows).set_index("object")

    # -- clean-up: only what the drill built in the DR region --------------------------------
    def clean_up(self) -> str:
        done = []
        if self.switched_at is not None:
            self._switch_back()
            done.append("users sent back to the primary region")
        done.append(self._remove_platform())
        self._stop_instance()
        done.append("DR database stopped")
        self._restore_vault()
        done.append("DR Vault's DSN back to the replicated value")
        self._remove_wal_snapshot()
        self.drill.mark("DR region cleaned up; the primary region untouched")
        return "; ".join(done)

    def _remove_platform(self) -> str:
        """The namespace the drill created, or else each object it created there."""
        if self.namespace_created:
            self.cluster.delete_namespace()
            self.namespace_created, self.created = False, []
            return f"namespace {self.cluster.namespace} deleted in the DR cluster"
        removed = [f"{kind}/{name}" for kind, name in reversed(self.created) if self.cluster.delete_object(kind, name)]
        self.created = []
        return f"{len(removed)} objects the drill created deleted in the DR cluster"

    def _stop_instance(self) -> None:
        if self.instance is not None:
            self.instance.stop()
            self.instance = None

    def _restore_vault(self) -> None:
        if self.vault_before is not None:
            self.vault.write(self.vault_before, self.dr.vault.path)
            self.vault_before = None

    def _remove_wal_snapshot(self) -> None:
        if self.wal_at_fault is not None:
            shutil.rmtree(self.wal_at_fault, ignore_errors=True)
            self.wal_at_fault = None
