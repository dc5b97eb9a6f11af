"""Finding 8a: a backup's manifest is authenticated, so an old backup cannot be made "latest".

The manifest says which backup is newest and what a restore must find. Whoever could write to
the backup storage could edit it (its time, its name, its files) or rename an old backup to look
newest, and the drill would restore that. Now each manifest carries Vault's HMAC (transit
``hmac/veza``) of everything else in it: ``latest`` is the newest *authentic* manifest, and an
edited, renamed, stripped or key-swapped backup is refused, naming it, before anything is
restored (no scratch database is even created). Base backups (PITR, region) and the manifests
kept off-site for a region rebuild are vouched for the same way.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from runbooks_lib.errors import CheckFailed
from runbooks_lib.procedures.dr.backups import take_backup
from runbooks_lib.procedures.dr.restore import restore_and_verify
from runbooks_lib.procedures.dr.store import BackupStore, Manifest

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]


def _scratch_databases(backing: Any) -> list[str]:
    import psycopg

    with psycopg.connect(backing.postgres.dsn("primary", "postgres"), autocommit=True) as conn:
        return [r[0] for r in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE 'veza_dr_scratch%'")]


def _restore(backing: Any, store: BackupStore, manifest: Manifest) -> Any:
    return restore_and_verify(store, manifest, backing.vault, backing.settings, backing.postgres.primary_dsn)


def _rename(store: BackupStore, old: str, new: str) -> None:
    for suffix in (".dump.enc", ".key", ".manifest.json"):
        Path(store.path(old, suffix)).rename(store.path(new, suffix))


@pytest.fixture(scope="module")
def two_backups(backing: Any) -> tuple[Manifest, Manifest]:
    """An older and a newer backup of veza_db, as the drill takes them."""
    store = BackupStore(backing.settings.url)
    older = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    newer = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    return older, newer


def _sealed(backing: Any) -> BackupStore:
    from runbooks_lib.procedures.dr.store import VaultSeal

    return BackupStore(backing.settings.url, seal=VaultSeal(backing.vault, backing.settings))


def test_an_old_backup_whose_manifest_is_edited_to_look_newest_is_refused_by_name(
        backing: Any, two_backups: tuple[Manifest, Manifest]) -> None:
    older, newer = two_backups
    store = BackupStore(backing.settings.url)
    path = Path(store.path(older.name, ".manifest.json"))
    kept = path.read_text()
    try:
        forged = json.loads(kept)
        forged["taken_at"] = "2099-01-01T00:00:00+00:00"  # the insider's edit: "the newest backup"
        path.write_text(json.dumps(forged))
        edited = Manifest.from_json(path.read_text())
        with pytest.raises(CheckFailed, match=f"backup {older.name}: .*fails authentication.*not restored"):
            _restore(backing, store, edited)
        assert _scratch_databases(backing) == []  # refused before anything was created
        sealed = _sealed(backing)
        assert sealed.manifest("latest").name == newer.name  # the newest authentic one
        assert older.name in sealed.refused and "edited" in sealed.refused[older.name]
        with pytest.raises(CheckFailed, match=older.name):
            sealed.manifest(older.name)
    finally:
        path.write_text(kept)
    assert _sealed(backing).manifest(older.name) == older  # untouched again: authentic again


def test_an_old_backup_renamed_to_look_newest_is_refused(backing: Any, two_backups: tuple[Manifest, Manifest]) -> None:
    older, newer = two_backups
    store = BackupStore(backing.settings.url)
    posing = "veza_db-20991231T235959Z-ffffff"  # sorts after every real name and time
    _rename(store, older.name, posing)
    try:
        as_read = Manifest.from_json(Path(store.path(posing, ".manifest.json")).read_text())
        moved = replace(as_read, name=posing, files={"dump": posing + ".dump.enc", "key": posing + ".key"})
        with pytest.raises(CheckFailed, match=f"backup {posing}: .*fails authentication"):
            _restore(backing, store, moved)  # its name changed with the files: the HMAC does not follow
        sealed = _sealed(backing)
        assert sealed.manifest("latest").name == newer.name
        assert "renamed from another backup" in sealed.refused[posing]
        with pytest.raises(CheckFailed, match=f"backup {posing}: its manifest names backup {older.name!r}"):
            sealed.manifest(posing)
    finally:
        _rename(store, posing, older.name)


@pytest.mark.parametrize("edit", ["row_counts", "files", "sha256", "strip", "key file"])
def test_any_other_edit_or_a_swapped_key_is_refused_before_restoring(
        backing: Any, two_backups: tuple[Manifest, Manifest], edit: str) -> None:
    older, newer = two_backups
    store = BackupStore(backing.settings.url)
    key_file = Path(store.path(newer.name, ".key"))
    kept_key = key_file.read_text()
    changed = {"row_counts": lambda: replace(newer, row_counts={**newer.row_counts, "users": 0}),
               "files": lambda: replace(newer, files={"dump": older.name + ".dump.enc", "key": older.name + ".key"}),
               "sha256": lambda: replace(newer, sha256="0" * 64),
               "strip": lambda: replace(newer, authentication=""),
               "key file": lambda: newer}[edit]()
    if edit == "key file":
        key_file.write_text(Path(store.path(older.name, ".key")).read_text())  # another backup's data key
    try:
        with pytest.raises(CheckFailed, match=f"backup {newer.name}: .*(authentic|key file).*not restored"):
            _restore(backing, store, changed)
        assert _scratch_databases(backing) == []
    finally:
        key_file.write_text(kept_key)


def test_an_authentic_backup_still_restores(backing: Any, two_backups: tuple[Manifest, Manifest]) -> None:
    _, newer = two_backups
    assert newer.authentication.startswith("vault:v")
    report = _restore(backing, _sealed(backing), _sealed(backing).manifest("latest"))
    assert report.passed, report.checks


def test_the_newest_authentic_base_backup_is_the_regions_starting_point(backing: Any) -> None:
    from runbooks_lib.procedures.dr.pitr import latest_base_backup, take_base_backup

    older = take_base_backup(backing.postgres.primary_dsn, backing.vault, backing.settings)
    newer = take_base_backup(backing.postgres.primary_dsn, backing.vault, backing.settings)
    assert latest_base_backup(backing.settings, backing.vault).path == newer.path
    folder = newer.path.parent
    posing = folder / "base-20991231T235959000000Z"
    for suffix in (".tar.enc", ".tar.key", ".json"):  # the older one, renamed to look newest
        shutil.copyfile(folder / (older.path.name.removesuffix(".tar.enc") + suffix), str(posing) + suffix)
    manifest = Path(str(newer.path).removesuffix(".tar.enc") + ".json")
    kept = manifest.read_text()
    try:
        edited = json.loads(kept)
        edited["taken_at"] = "2099-01-02T00:00:00+00:00"
        manifest.write_text(json.dumps(edited))
        picked = latest_base_backup(backing.settings, backing.vault)
        assert picked.path == older.path  # the only one left that Vault vouches for
    finally:
        manifest.write_text(kept)
        for suffix in (".tar.enc", ".tar.key", ".json"):
            Path(str(posing) + suffix).unlink(missing_ok=True)


def test_the_manifests_kept_off_site_for_a_region_rebuild_are_vouched_for(backing: Any) -> None:
    from types import SimpleNamespace

    from runbooks_lib.procedures.dr.region import export_manifests, latest_manifests
    from runbooks_lib.procedures.dr.store import VaultSeal

    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "veza-frontend"},
                  "spec": {"template": {"spec": {"containers": [{"name": "web", "image": "registry.veza.app/veza-frontend:v1.6.0"}]}}}}
    cluster = SimpleNamespace(namespace="veza-sandbox",
                              namespaced_objects=lambda kinds: [deployment] if "Deployment" in kinds else [])
    seal = VaultSeal(backing.vault, backing.settings)
    store = _sealed(backing)
    exported = export_manifests(cluster, store, "cluster-uid", seal)
    assert latest_manifests(store).name == exported.name
    # The insider's edit: another image for the DR region to run (and the index's sha256 to match).
    folder = Path(store.url) / "manifests"
    text = (folder / f"{exported.name}.yaml").read_text().replace("veza-frontend:v1.6.0", "evil/miner:latest")
    (folder / f"{exported.name}.yaml").write_text(text)
    index = json.loads((folder / f"{exported.name}.index.json").read_text())
    import hashlib

    index["sha256"] = hashlib.sha256(text.encode()).hexdigest()
    (folder / f"{exported.name}.index.json").write_text(json.dumps(index))
    with pytest.raises(CheckFailed, match=f"no authentic manifests.*{exported.name}"):
        latest_manifests(store)
