"""Issue 28: the health check reads the backups, and a restore drill is what makes it pass.

Real OpenBao and PostgreSQL 15 archiving its WAL (tests/security/conftest.py): the newest proven
backup older than the restore-test interval fails its row and the verdict; a restore drill of a
new backup makes the row pass again. The clock is the check's ``now``, the interval the profile's.
"""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

import pytest

from runbooks_lib.config.clock import utcnow
from runbooks_lib.config.profiles import Profile
from runbooks_lib.errors import CheckFailed
from runbooks_lib.procedures.dr.backups import take_backup
from runbooks_lib.procedures.health import HealthCheck
from runbooks_lib.run.context import RunContext

from .conftest import Backing, start_backing, stop_backing
from .test_backup_proofs import restore_drill

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]

PROVEN = "newest proven backup age"


@pytest.fixture(scope="module")
def archiving() -> Iterator[Backing]:
    started = start_backing(archive_wal=True)
    yield started
    stop_backing(started)


def profile_of(backing: Backing, interval_days: float) -> Profile:
    return Profile.model_validate({
        "name": "backup-health",
        "cluster": {"kubeconfig": "/nonexistent/kubeconfig", "context": "none", "namespace": "veza",
                    "identity": {"expected": "never-read"}},
        "vault": {"address": backing.openbao.address, "auth": {"method": "token", "token": backing.openbao.root_token},
                  "path": "secret/veza/sandbox"},
        "prometheus": {"url": "http://127.0.0.1:9"},
        "services": {"image_repository": "registry.veza.app", "services": {}},
        "database": {"primary_dsn": backing.postgres.primary_dsn},
        "backups": {"url": backing.settings.url, "wal_archive_url": backing.settings.wal_archive_url,
                    "restore_test_interval_days": interval_days},
    })


@pytest.fixture(autouse=True)
def records_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("RUNBOOKS_HOME", str(tmp_path))
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))
    monkeypatch.setenv("RUNBOOK_OPERATOR", "unit-test")
    return tmp_path


def health_of(backing: Backing, home: Path, interval_days: float = 1) -> HealthCheck:
    profile = profile_of(backing, interval_days)
    return HealthCheck(RunContext("health_check", profile.name, profile, {}, run_id="run-health", home=home))


def _store(backing: Backing) -> Any:
    from runbooks_lib.procedures.dr.store import BackupStore

    return BackupStore(backing.settings.url)


def test_a_stale_proof_fails_the_health_check_and_a_restore_drill_mends_it(archiving: Backing, tmp_path: Path) -> None:
    store = _store(archiving)
    old = take_backup(archiving.postgres.primary_dsn, archiving.vault, archiving.settings, store=store)
    restore_drill(archiving, store, old, run_id="run-last-month")

    later = utcnow() + timedelta(days=2)  # the interval is 1 day: the proof is a day overdue
    health = health_of(archiving, tmp_path)
    table = health.backups(now=later)
    assert table.loc[PROVEN, "passed"] == False  # noqa: E712
    assert table.loc["newest backup age", "passed"] == False  # noqa: E712  (2 days > a daily backup's 26 h)
    assert "run-last-month" in table.loc[PROVEN, "detail"] and table.loc[PROVEN, "limit"] == "≤ 24.00 h"
    assert health.ctx.figures["newest_proven_backup_age_s"] > 86400
    with pytest.raises(CheckFailed, match=f"backups: {PROVEN} 2.00 d \\(limit 24.00 h\\): .*run-last-month"):
        health.conclusion()

    fresh = take_backup(archiving.postgres.primary_dsn, archiving.vault, archiving.settings, store=store)
    restore_drill(archiving, store, fresh, run_id="run-today")
    health = health_of(archiving, tmp_path)
    table = health.backups()
    assert table["passed"].tolist() == [True, True, True], table
    assert "run-today" in table.loc[PROVEN, "detail"] and fresh.name in table.loc[PROVEN, "detail"]
    assert health.ctx.figures["wal_archive_lag_s"] is not None and health.ctx.figures["wal_archive_lag_s"] < 3600
    assert health.conclusion() == "healthy"

    zero = health_of(archiving, tmp_path, interval_days=0)  # a profile of 0 days: no proof is recent enough
    assert zero.backups().loc[PROVEN, "passed"] == False  # noqa: E712


def test_an_edited_proven_backup_no_longer_counts_as_proven(archiving: Backing, tmp_path: Path) -> None:
    store = _store(archiving)
    for manifest in store.list():
        store.delete(manifest.name)
    only = take_backup(archiving.postgres.primary_dsn, archiving.vault, archiving.settings, store=store)
    restore_drill(archiving, store, only, run_id="run-before-edit")
    assert health_of(archiving, tmp_path).backups().loc[PROVEN, "passed"] == True  # noqa: E712
    dump = Path(store.path(only.name, ".dump.enc"))
    dump.write_bytes(dump.read_bytes()[:-1])  # cut short after the drill proved it
    health = health_of(archiving, tmp_path)
    table = health.backups()
    assert table.loc[PROVEN, "passed"] == False and table.loc["newest backup age", "passed"] == False  # noqa: E712
    assert "no backup was ever proven" in table.loc[PROVEN, "detail"]


def test_runbook_backups_list_shows_each_backup_proven_or_not(archiving: Backing, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from click.testing import CliRunner

    import runbooks_lib.config.profiles as profiles
    from runbooks_lib.cli import cli

    store = _store(archiving)
    proven = take_backup(archiving.postgres.primary_dsn, archiving.vault, archiving.settings, store=store)
    restore_drill(archiving, store, proven, run_id="run-listed")
    never = take_backup(archiving.postgres.primary_dsn, archiving.vault, archiving.settings, store=store)
    monkeypatch.setattr(profiles, "load_profile", lambda env: profile_of(archiving, 31))

    shown = CliRunner().invoke(cli, ["backups", "list", "--env", "backup-health"])
    assert shown.exit_code == 0, shown.output
    lines = {line.split()[0]: line for line in shown.output.splitlines() if line.startswith("veza_db-")}
    assert "proven at" in lines[proven.name] and "by run run-listed" in lines[proven.name]
    assert "never restored" in lines[never.name] and " v1 " in lines[never.name]
    assert archiving.openbao.root_token not in shown.output

    rows = {r["backup"]: r for r in map(json.loads, CliRunner().invoke(
        cli, ["backups", "list", "--env", "backup-health", "--json"]).output.splitlines())}
    assert rows[proven.name]["proven"] is True and rows[proven.name]["run_id"] == "run-listed"
    assert rows[never.name]["proven"] is False and rows[never.name]["bytes"] == never.size
    assert list(rows)[0] == never.name  # newest first


def test_the_drills_restore_step_stamps_the_backup_with_its_run_id(archiving: Backing, tmp_path: Path) -> None:
    """The notebook's Drill, not a helper: its restore step stamps; a dry run stamps nothing."""
    from runbooks_lib.procedures.dr.drill import Drill, DrillParams
    from runbooks_lib.procedures.dr.inventory import inventory_of_profile

    profile = profile_of(archiving, 31)
    ctx = RunContext("dr_drill", profile.name, profile, {}, run_id="run-drill-42", home=tmp_path)
    drill = Drill(ctx, DrillParams(scenario="restore", backup="new"))
    manifest = drill.pick_backup()
    assert drill.restore().passed
    entries = {e.name: e for e in inventory_of_profile(profile)}
    assert entries[manifest.name].proven and entries[manifest.name].proof.stamp.run_id == "run-drill-42"
    assert entries[manifest.name].proof.stamp.restore_s == ctx.figures["restore_s"]
    assert any(f"{manifest.name} stamped as proven by run run-drill-42" in what for _, what in drill.timeline)

    dry_ctx = RunContext("dr_drill", profile.name, profile, {}, run_id="run-dry-43", home=tmp_path)
    dry = Drill(dry_ctx, DrillParams(scenario="restore", backup=manifest.name, dry_run=True))
    dry.pick_backup()
    assert dry.restore().passed
    stamp = {e.name: e for e in inventory_of_profile(profile)}[manifest.name].proof.stamp
    assert stamp.run_id == "run-drill-42"  # unchanged: the dry run wrote nothing
    assert any("would be stamped (dry run)" in what for _, what in dry.timeline)
