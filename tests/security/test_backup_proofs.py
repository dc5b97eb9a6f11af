"""Issue 28: a backup is proven by the drill that restored it, and the proof cannot be faked.

A restore whose every check passed appends a stamp signed by Vault's transit key to the backup's
entry in the store; the inventory (``runbook backups list``) then shows "proven at ... by run ...".
An edited stamp, a stamp copied beside another backup, or a backup edited after it was stamped
all show as not proven, saying why. Real OpenBao and PostgreSQL 15 (tests/security/conftest.py).
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from runbooks_lib.config.clock import utcnow
from runbooks_lib.errors import CheckFailed
from runbooks_lib.procedures.dr.backups import take_backup
from runbooks_lib.procedures.dr.inventory import backup_inventory, inventory_table
from runbooks_lib.procedures.dr.proof import stamp_backup
from runbooks_lib.procedures.dr.restore import Check, restore_and_verify
from runbooks_lib.procedures.dr.store import BackupStore, Manifest, VaultSeal

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]


def _seal(backing: Any) -> VaultSeal:
    return VaultSeal(backing.vault, backing.settings)


def _store(backing: Any, folder: str) -> BackupStore:
    return BackupStore(str(Path(backing.settings.url) / folder))


def restore_drill(backing: Any, store: BackupStore, manifest: Manifest, run_id: str) -> Any:
    """What the drill's restore step does: restore into scratch, check, stamp when every check passed."""
    report = restore_and_verify(store, manifest, backing.vault, backing.settings, backing.postgres.primary_dsn)
    assert report.passed, report.checks
    return stamp_backup(store, manifest, _seal(backing), run_id=run_id, scenario="restore", checks=report.checks,
                        restore_s=report.timings["total_s"], rows=sum(report.row_counts.values()))


def _by_name(backing: Any, store: BackupStore, **kwargs: Any) -> dict[str, Any]:
    return {e.name: e for e in backup_inventory(store, _seal(backing), **kwargs)}


def test_a_restore_drill_stamps_its_backup_and_the_list_says_by_which_run(backing: Any) -> None:
    store = _store(backing, "stamped")
    proven = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    never = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    stamp = restore_drill(backing, store, proven, run_id="run-7f3a")

    entries = _by_name(backing, store)
    assert entries[proven.name].proven and not entries[never.name].proven
    assert entries[proven.name].proof.stamp.run_id == "run-7f3a"
    assert entries[proven.name].proof.stamp.rows == sum(proven.row_counts.values())
    assert entries[proven.name].proof.stamp.restore_s == stamp.restore_s > 0
    assert entries[never.name].status() == "never restored"
    assert entries[proven.name].key_version == "v1" and entries[proven.name].size == proven.size
    text = inventory_table(list(entries.values()), utcnow()).to_string()
    assert "by run run-7f3a" in text and "never restored" in text

    # A second drill appends: the newest valid stamp is the one shown.
    restore_drill(backing, store, proven, run_id="run-8b01")
    assert _by_name(backing, store)[proven.name].proof.stamp.run_id == "run-8b01"
    assert len(Path(store.path(proven.name, ".proofs.jsonl")).read_text().splitlines()) == 2


def test_a_backup_edited_after_stamping_shows_as_not_proven(backing: Any) -> None:
    store = _store(backing, "edited")
    manifest = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    restore_drill(backing, store, manifest, run_id="run-edit")
    assert _by_name(backing, store)[manifest.name].proven

    path = Path(store.path(manifest.name, ".manifest.json"))
    kept = path.read_text()
    edited = json.loads(kept)
    edited["taken_at"] = "2099-01-01T00:00:00+00:00"
    path.write_text(json.dumps(edited))
    entry = _by_name(backing, store)[manifest.name]
    assert not entry.proven
    assert "NOT PROVEN" in entry.status() and "refused" in entry.status()
    assert "edited after it was proven" in " ".join(entry.proof.invalid)
    path.write_text(kept)

    dump = Path(store.path(manifest.name, ".dump.enc"))
    original = dump.read_bytes()
    dump.write_bytes(original[:100] + bytes([original[100] ^ 1]) + original[101:])  # same size
    assert _by_name(backing, store)[manifest.name].proven  # the quick listing checks sizes only...
    entry = _by_name(backing, store, verify_files=True)[manifest.name]
    assert not entry.proven and "sha256" in entry.status()  # ...--verify-files reads every byte
    dump.write_bytes(original + b"x")
    assert "bytes" in _by_name(backing, store)[manifest.name].status()
    dump.write_bytes(original)
    assert _by_name(backing, store, verify_files=True)[manifest.name].proven


def test_an_edited_or_copied_stamp_proves_nothing(backing: Any) -> None:
    store = _store(backing, "forged")
    proven = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    other = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    restore_drill(backing, store, proven, run_id="run-real")
    stamps = Path(store.path(proven.name, ".proofs.jsonl"))
    shutil.copy(stamps, store.path(other.name, ".proofs.jsonl"))  # another backup's proof, copied
    entries = _by_name(backing, store)
    assert entries[proven.name].proven and not entries[other.name].proven
    assert "copied here" in entries[other.name].status()

    line = json.loads(stamps.read_text())
    line["restore_s"] = 0.01  # a nicer figure
    stamps.write_text(json.dumps(line) + "\n")
    entry = _by_name(backing, store)[proven.name]
    assert not entry.proven and "fails authentication" in entry.status()


def test_a_restore_with_a_failing_check_stamps_nothing(backing: Any) -> None:
    store = _store(backing, "failing")
    manifest = take_backup(backing.postgres.primary_dsn, backing.vault, backing.settings, store=store)
    checks = [Check("row counts per table", True, "equal"), Check("marker row", False, "missing")]
    with pytest.raises(CheckFailed, match=f"{manifest.name} not stamped.*marker row"):
        stamp_backup(store, manifest, _seal(backing), run_id="run-bad", scenario="restore", checks=checks,
                     restore_s=1.0, rows=10)
    assert not Path(store.path(manifest.name, ".proofs.jsonl")).exists()
    dry = stamp_backup(store, manifest, _seal(backing), run_id="run-dry", scenario="restore", checks=checks[:1],
                       restore_s=1.0, rows=10, dry_run=True)
    assert dry.run_id == "run-dry" and not dry.authentication
    assert not Path(store.path(manifest.name, ".proofs.jsonl")).exists()
    assert _by_name(backing, store)[manifest.name].status() == "never restored"
