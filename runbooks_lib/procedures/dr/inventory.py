"""What the backup store holds, backup by backup: size, age, key version, and whether it is proven.

``runbook backups list`` and the health check read it. A backup is *proven* when its manifest is
authentic (Vault's HMAC), its dump is the size its manifest says (and, with ``verify_files``, its
sha256), and a valid stamp of a drill that restored it is beside it (:mod:`.proof`). A backup
whose manifest is refused is listed too, saying why, and is never proven.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...config.clock import parse_time
from ...errors import CheckFailed, NotFound
from .proof import Proof, proofs
from .store import DUMP_SUFFIX, KEY_SUFFIX, BackupStore, Manifest, VaultSeal

if TYPE_CHECKING:
    from ...config.profiles import Profile

__all__ = ["BackupEntry", "backup_inventory", "inventory_of_profile", "inventory_table"]


@dataclass(frozen=True)
class BackupEntry:
    """One backup as the store shows it."""

    name: str
    taken_at: datetime | None
    size: int | None  # bytes of the encrypted dump, as its manifest says
    key_version: str  # the transit key version that wrapped its data key ("v1"), "?" if unreadable
    proof: Proof
    problem: str = ""  # why it cannot be trusted (manifest refused, dump not as its manifest says)

    @property
    def proven(self) -> bool:
        return not self.problem and self.proof.proven

    def age_s(self, now: datetime) -> float | None:
        return None if self.taken_at is None else round((now - self.taken_at).total_seconds(), 1)

    def status(self) -> str:
        if self.problem:
            return f"NOT PROVEN: {self.problem}"
        return self.proof.describe()


def _key_version(store: BackupStore, name: str) -> str:
    try:
        wrapped = store.read_text(name, KEY_SUFFIX).strip()
    except NotFound:
        return "?"
    parts = wrapped.split(":")
    return parts[1] if len(parts) > 2 and parts[0] == "vault" else "?"


def _file_problem(store: BackupStore, manifest: Manifest, verify_files: bool) -> str:
    """Why the stored dump is not the one the manifest names ('' when it is)."""
    try:
        size = store.size(manifest.name)
    except NotFound:
        return "its dump is missing"
    if size != manifest.size:
        return f"its dump is {size} bytes, its manifest says {manifest.size} (edited or cut short)"
    if verify_files:
        digest = hashlib.sha256()
        with store.open_read(manifest.name, DUMP_SUFFIX) as source:
            while chunk := source.read(1 << 20):
                digest.update(chunk)
        if digest.hexdigest() != manifest.sha256:
            return "its dump fails its sha256 check (edited or corrupted)"
    return ""


def backup_inventory(store: BackupStore, seal: Any, *, verify_files: bool = False) -> list[BackupEntry]:
    """Every backup in ``store`` (authentic or refused), newest first, with its proof. ``seal``
    vouches for manifests and stamps (a VaultSeal with the profile's transit key)."""
    sealed = BackupStore(store.url, store.storage_options, seal=seal)
    authentic = sealed.list()
    refused = dict(sealed.refused)
    raw = BackupStore(store.url, store.storage_options)
    read: list[Manifest] = list(authentic)
    for name in refused:
        try:
            read.append(raw.manifest(name))
        except CheckFailed:
            pass  # unreadable: listed by name only
    found = proofs(raw, read, seal)
    entries = []
    for manifest in read:
        problem = (f"its manifest is refused: {refused[manifest.name]}" if manifest.name in refused
                   else _file_problem(raw, manifest, verify_files))
        entries.append(BackupEntry(manifest.name, parse_time(manifest.taken_at), manifest.size,
                                   _key_version(raw, manifest.name), found[manifest.name], problem))
    listed = {e.name for e in entries}
    entries += [BackupEntry(name, None, None, "?", Proof(name, None), f"its manifest is refused: {why}")
                for name, why in refused.items() if name not in listed]
    return sorted(entries, key=lambda e: (e.taken_at is not None, e.taken_at), reverse=True)


def inventory_of_profile(profile: "Profile", *, verify_files: bool = False) -> list[BackupEntry]:
    """The inventory of the profile's backup store, vouched for by the profile's Vault."""
    from ...errors import ParameterError
    from ...platform.vault import Vault

    if not profile.backups.url:
        raise ParameterError(f"profile {profile.name} names no backup storage (backups.url)")
    store = BackupStore(profile.backups.url, profile.backups.storage_options)
    return backup_inventory(store, VaultSeal(Vault(profile.vault), profile.backups), verify_files=verify_files)


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * 86400 else f"{seconds / 86400:.1f} d"


def inventory_table(entries: list[BackupEntry], now: datetime) -> Any:
    """One row a backup: name, taken, age, size, key version, proof."""
    import pandas as pd

    rows = [{"backup": e.name, "taken (UTC)": f"{e.taken_at:%Y-%m-%d %H:%M}" if e.taken_at else "-",
             "age": _age(e.age_s(now)), "bytes": e.size, "key": e.key_version, "proof": e.status()} for e in entries]
    return pd.DataFrame(rows, columns=["backup", "taken (UTC)", "age", "bytes", "key", "proof"])
