"""Disaster-recovery drills against the real sandbox: PostgreSQL 15 primary + standby, OpenBao.

Library-level proofs first (backups, damaged files, Vault down, point-in-time recovery), then the
notebook's full drill (restore + failover), which swaps the database roles and must leave the
platform healthy (`runbook sandbox status`).
"""
from __future__ import annotations

import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from runbooks_lib.errors import BackendUnavailable, CheckFailed

pytestmark = [pytest.mark.sandbox, pytest.mark.slow]


@pytest.fixture
def live(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """The sandbox profile, read in this process."""
    from runbooks_lib.config.profiles import load_profile

    monkeypatch.setenv("RUNBOOKS_SANDBOX_ENV", str(sandbox.state_dir / "env"))
    yield load_profile("sandbox")


@pytest.fixture
def store(tmp_path: Path) -> Any:
    from runbooks_lib.procedures.dr.store import BackupStore

    return BackupStore(str(tmp_path / "offsite"))


def _primary(profile: Any) -> str:
    return profile.database.primary_dsn.get_secret_value()


def test_backup_is_encrypted_and_restores_with_every_check(live: Any, store: Any) -> None:
    from runbooks_lib.procedures.dr.backups import take_backup
    from runbooks_lib.procedures.dr.restore import restore_and_verify
    from runbooks_lib.platform.vault import Vault
    from runbooks_sandbox.servers.veza_schema import SEED_COUNTS

    vault = Vault(live.vault)
    manifest = take_backup(_primary(live), vault, live.backups, store=store)
    stored = Path(store.path(manifest.name, ".dump.enc")).read_bytes()
    assert not stored.startswith(b"PGDMP") and b"PGDMP" not in stored[:4096]
    assert hashlib.sha256(stored).hexdigest() == manifest.sha256 and len(stored) == manifest.size
    assert Path(store.path(manifest.name, ".key")).read_text().startswith("vault:v")
    for table, rows in SEED_COUNTS.items():
        assert manifest.row_counts[table] >= rows
    assert manifest.tool_versions["pg_dump"].startswith("15") and manifest.source_lsn

    report = restore_and_verify(store, manifest, vault, live.backups, _primary(live))
    assert report.passed, report.checks
    assert {c.name for c in report.checks} == {"row counts per table", "marker row", "pg_amcheck"}
    assert report.row_counts == manifest.row_counts
    from runbooks_lib.platform.database import connect

    with connect(_primary(live).replace("/veza_db", "/postgres"), autocommit=True) as conn:
        left = conn.execute("SELECT count(*) FROM pg_database WHERE datname LIKE 'veza_dr_scratch_%'").fetchone()[0]
    assert left == 0, "the scratch database was not dropped"


def test_corrupted_or_truncated_backup_is_detected_and_named(live: Any, store: Any) -> None:
    from dataclasses import replace

    from runbooks_lib.procedures.dr.backups import take_backup
    from runbooks_lib.procedures.dr.restore import restore_and_verify
    from runbooks_lib.platform.vault import Vault

    vault = Vault(live.vault)
    manifest = take_backup(_primary(live), vault, live.backups, store=store)
    dump = Path(store.path(manifest.name, ".dump.enc"))
    good = dump.read_bytes()

    damaged = bytearray(good)
    damaged[len(good) // 2] ^= 0xFF
    dump.write_bytes(bytes(damaged))
    with pytest.raises(CheckFailed, match=f"{dump}.*sha256.*corrupted"):
        restore_and_verify(store, manifest, vault, live.backups, _primary(live))

    dump.write_bytes(good[:-100])
    with pytest.raises(CheckFailed, match=f"{dump}.*truncated"):
        restore_and_verify(store, manifest, vault, live.backups, _primary(live))

    # A manifest rewritten to match the cut file: Vault does not vouch for it, and it is refused
    # by name before anything is fetched (the encryption's last-segment flag would tell too:
    # tests/test_dr_envelope.py).
    cut = good[:-100]
    forged = replace(manifest, size=len(cut), sha256=hashlib.sha256(cut).hexdigest())
    with pytest.raises(CheckFailed, match=f"backup {manifest.name}: .*fails authentication.*not restored"):
        restore_and_verify(store, forged, vault, live.backups, _primary(live))


def test_vault_unreachable_fails_the_backup_and_leaves_nothing(live: Any, store: Any) -> None:
    from runbooks_lib.procedures.dr.backups import take_backup
    from runbooks_lib.platform.vault import Vault

    down = Vault(live.vault.model_copy(update={"address": "http://127.0.0.1:9"}))
    tmp_before = set(os.listdir(tempfile.gettempdir()))
    with pytest.raises(BackendUnavailable, match="Vault .* unreachable"):
        take_backup(_primary(live), down, live.backups, store=store)
    assert store.files() == []
    new_tmp = set(os.listdir(tempfile.gettempdir())) - tmp_before
    assert not [n for n in new_tmp if "dump" in n or "veza" in n], new_tmp


def test_point_in_time_recovery_keeps_rows_before_the_target_only(live: Any) -> None:
    import time

    from runbooks_lib.platform.database import connect
    from runbooks_lib.procedures.dr.pitr import archived_up_to, force_wal_switch, recover_to_time, take_base_backup
    from runbooks_lib.platform.vault import Vault

    vault, dsn = Vault(live.vault), _primary(live)
    base = take_base_backup(dsn, vault, live.backups)
    with connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE pitr_test (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO pitr_test (id) SELECT generate_series(1, 50)")
        time.sleep(0.3)
        target = datetime.now(timezone.utc)
        time.sleep(0.3)
        conn.execute("INSERT INTO pitr_test (id) SELECT generate_series(51, 80)")
    archived_up_to(dsn, force_wal_switch(dsn))
    instance = recover_to_time(base, target, vault, live.backups)
    try:
        with connect(instance.dsn, autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM pitr_test ORDER BY id").fetchall()]
    finally:
        instance.stop()
    assert ids == list(range(1, 51))
    assert not instance.data_dir.exists()


@pytest.fixture
def dr_region(sandbox: Any) -> Iterator[Path]:
    """A second sandbox standing by as the DR region of the test sandbox; its state directory."""
    import shutil

    state = Path(tempfile.mkdtemp(prefix="veza-dr-region-"))  # private: the restored server lives elsewhere
    up = sandbox.runbook("sandbox", "up", "--state-dir", str(state), "--dr-region-of", str(sandbox.state_dir))
    try:
        assert up.returncode == 0, up.stdout + up.stderr
        yield state
    finally:
        sandbox.runbook("sandbox", "down", "--state-dir", str(state))
        shutil.rmtree(state, ignore_errors=True)


def _primary_facts(sandbox: Any) -> dict[str, Any]:
    """What the drill and its clean-up must leave as it was in the primary region: each object's
    spec (a Secret's data), labels and annotations, hashed (controllers may still write statuses)."""
    listed = json.loads(sandbox.kubectl("get", "deployments,services,secrets,ingresses,hpa", "-o", "json"))
    return {f"{o['kind']}/{o['metadata']['name']}": hashlib.sha256(json.dumps(
        [o.get("spec") or o.get("data"), o["metadata"].get("labels"), o["metadata"].get("annotations")],
        sort_keys=True).encode()).hexdigest() for o in listed["items"]}


def test_region_drill_rebuilds_the_platform_in_the_dr_region_and_leaves_the_primary_alone(
        sandbox: Any, dr_region: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import re

    from runbooks_lib.platform.database import connect
    from runbooks_lib.config.profiles import load_profile
    from runbooks_lib.platform.vault import Vault

    monkeypatch.setenv("RUNBOOKS_DR_SANDBOX_ENV", str(dr_region / "env"))
    monkeypatch.setenv("RUNBOOKS_SANDBOX_ENV", str(sandbox.state_dir / "env"))
    dr_profile, primary_profile = load_profile("sandbox-dr"), load_profile("sandbox")
    dr_vault = Vault(dr_profile.vault)
    replicated = dr_vault.read()
    # The DR region's cache is its own; everything else was replicated from the primary's Vault.
    assert replicated["redis_url"].reveal() == dr_profile.redis.url.get_secret_value()
    assert replicated["redis_url"].reveal() != Vault(primary_profile.vault).read()["redis_url"].reveal()
    # A rotation the replication has not carried yet: the drill must say so (and go on).
    dr_vault.write({**replicated, "jwt_secret": "rotated-in-the-primary-only-" + "x" * 20})

    before = _primary_facts(sandbox)
    run = sandbox.run("dr_drill", ("scenario", "region"), timeout=300,
                      RUNBOOKS_DR_SANDBOX_ENV=str(dr_region / "env"))
    assert run.exit_code == 0, run.output[-3000:]
    assert "differs from the primary's on jwt_secret: its replication is behind" in run.output
    import nbformat

    drawn = [o for c in nbformat.read(str(run.record), as_version=4).cells if "region.plot()" in c.source
             for o in c.get("outputs", []) if "image/png" in o.get("data", {})]
    assert drawn, "the rows kept and lost, and the RTO's parts, are drawn in the record"
    # The entry point was switched: users' requests reached every rebuilt service, none failed; and
    # switched back by the clean-up: no user traffic goes to the DR region after the drill.
    record_text = run.record.read_text()
    for service in ("veza-backend-api", "veza-chat-server", "veza-stream-server", "veza-frontend"):
        assert re.search(rf"{service} users' requests in the DR region.*?True.*?\d+ since the switch, 0 failed",
                         record_text, re.S), service
    import time

    ended = datetime.now(timezone.utc)
    time.sleep(1.5)
    after = json.loads(sandbox.runbook("sandbox", "traffic", "--json", "--since", ended.isoformat().replace("+00:00", "Z"),
                                       "--state-dir", str(dr_region)).stdout)
    assert sum(int(v.get("requests", 0)) for v in after.values() if isinstance(v, dict)) == 0, after
    figures = run.summary["figures"]
    for step in ("Keep off-site", "Lose the region", "Restore the database in the DR region",
                 "Recreate the platform from the off-site manifests", "Verify end to end in the DR region",
                 "Clean up the DR region"):
        assert f"✓ {step}: succeeded" in run.output, step

    # RPO and lost rows, recomputed from what happened: the primary (never harmed) still holds every
    # heartbeat row; those after the newest one the DR database got, up to the fault, were lost.
    fault = datetime.fromisoformat(re.search(r"fault at (\S+) \(", run.output).group(1))
    assert 0 < figures["rpo_s"] < 3600 and 0 < figures["rto_s"] < 4 * 3600 and figures["restore_s"] > 0
    from datetime import timedelta

    newest_in_dr = fault - timedelta(seconds=figures["rpo_s"])
    with connect(sandbox.env["PG_PRIMARY_DSN"], autocommit=True) as conn:
        expected_lost = conn.execute("SELECT count(*) FROM dr_heartbeat WHERE at > %s AND at <= %s",
                                     (newest_in_dr + timedelta(milliseconds=10), fault)).fetchone()[0]
    assert figures["lost_rows"] == expected_lost
    assert expected_lost >= 1, "rows written after the last archived WAL segment die with the region"

    # The primary region untouched by the drill and its clean-up; the DR region back to standing by.
    assert _primary_facts(sandbox) == before
    dr = json.loads(sandbox.runbook("sandbox", "status", "--json", "--state-dir", str(dr_region)).stdout)
    assert not dr.get("deployments"), dr.get("deployments")
    restored = Path(dr_profile.backups.restore_dir)
    assert restored.is_dir() and not restored.is_relative_to(dr_region) or os.geteuid() != 0
    assert not any(restored.iterdir()), "the recovered database was not removed"
    dr_values, primary_values = Vault(dr_profile.vault).read(), Vault(primary_profile.vault).read()
    assert dr_values["database_url"].reveal() == primary_values["database_url"].reveal(), \
        "the DR Vault's DSN is back to its replicated value"
    # No secret value of either Vault in the record or its HTML.
    record = run.record.read_text() + run.record.with_suffix(".html").read_text()
    for value in list(dr_values.values()) + list(primary_values.values()):
        assert value.reveal() not in record

    # What was kept off-site is checked before use: a damaged export is refused, naming the file.
    from runbooks_lib.procedures.dr.region import latest_manifests
    from runbooks_lib.procedures.dr.store import BackupStore, VaultSeal
    from runbooks_lib.errors import CheckFailed

    offsite = BackupStore(dr_profile.backups.url, seal=VaultSeal(dr_vault, dr_profile.backups))
    exported = latest_manifests(offsite)
    assert {"Deployment", "Service"} <= set(exported.counts()) and "veza-secrets" in exported.secrets
    yaml_file = Path(offsite.url) / "manifests" / f"{exported.name}.yaml"
    yaml_file.write_text(yaml_file.read_text()[:-40])
    with pytest.raises(CheckFailed, match=re.escape(str(yaml_file)) + ".*sha256"):
        latest_manifests(offsite)
    yaml_file.unlink()  # the next drill exports anew


def test_a_dr_region_whose_vault_lacks_the_transit_key_fails_the_drill_before_anything_is_built(
        sandbox: Any, dr_region: Path) -> None:
    """Without the key that wraps the backups' data keys, every backup is unreadable in the DR
    region: the drill says so while the DR region stands by, before a database or a Deployment is made."""
    import hvac

    from runbooks_sandbox.stack import Sandbox as Region

    env = Region(dr_region).env()
    dr_vault = hvac.Client(url=env["VAULT_ADDR"], token=env["VAULT_TOKEN"], timeout=5)
    dr_vault.secrets.transit.update_key_configuration(name="veza", deletion_allowed=True)
    dr_vault.secrets.transit.delete_key(name="veza")
    before = _primary_facts(sandbox)

    run = sandbox.run("dr_drill", ("scenario", "region"), RUNBOOKS_DR_SANDBOX_ENV=str(dr_region / "env"))
    assert run.exit_code == 1, run.output[-3000:]
    assert run.summary["failed_step"] == "DR region standing by"
    assert "cannot unwrap the primary's data keys" in run.summary["error"]
    assert "every backup is unreadable there" in run.summary["error"]
    dr = json.loads(sandbox.runbook("sandbox", "status", "--json", "--state-dir", str(dr_region)).stdout)
    restored = Path(env["RESTORE_DIR"])
    assert not dr.get("deployments") and not any(restored.glob("veza-pitr-*"))
    assert _primary_facts(sandbox) == before


def test_region_drill_without_a_running_dr_region_is_refused_before_any_change(sandbox: Any, tmp_path: Path) -> None:
    before = _primary_facts(sandbox)
    run = sandbox.run("dr_drill", ("scenario", "region"), RUNBOOKS_DR_SANDBOX_ENV=str(tmp_path / "no-such-env"))
    assert run.exit_code == 2, run.output[-2000:]
    assert "runbook sandbox up --state-dir .sandbox-dr --dr-region-of .sandbox" in run.output
    assert _primary_facts(sandbox) == before


def test_a_restore_drill_proves_its_backup_and_the_health_check_reads_it(sandbox: Any) -> None:
    """Issue 28 end to end: a fresh sandbox's health check warns that nothing is proven yet; the
    restore drill stamps its backup; `runbook backups list` shows it proven by the drill's run id;
    the health check's backup rows pass, each with its number and limit."""
    first = sandbox.run("health_check", ("window_minutes", 1))
    assert first.exit_code == 0, first.output[-3000:]
    text = first.record.read_text()
    assert "no backup was ever proven by a restore" in text and "WAL archive lag" in text

    drill = sandbox.run("dr_drill", ("scenario", "restore"), ("backup", "new"), timeout=400)
    assert drill.exit_code == 0, drill.output[-3000:]
    run_id = drill.summary["run_id"]
    listed = sandbox.runbook("backups", "list", "--env", "sandbox", "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [r["run_id"] for r in rows if r["proven"]] == [run_id]
    assert sandbox.env["VAULT_TOKEN"] not in listed.stdout

    after = sandbox.run("health_check", ("window_minutes", 1))
    assert after.exit_code == 0, after.output[-3000:]
    figures = after.summary["figures"]
    assert 0 <= figures["newest_proven_backup_age_s"] < 3600 and 0 <= figures["newest_backup_age_s"] < 3600
    assert figures["wal_archive_lag_s"] is not None and figures["wal_archive_lag_s"] < 3600
    assert f"by run {run_id}" in after.record.read_text()


def test_a_pitr_drill_stamps_the_base_backup_it_replayed(sandbox: Any, live: Any) -> None:
    """The point-in-time drill proves its base backup the same way: a signed stamp beside its manifest."""
    from runbooks_lib.platform.vault import Vault
    from runbooks_lib.procedures.dr.pitr import latest_base_backup
    from runbooks_lib.procedures.dr.proof import proofs
    from runbooks_lib.procedures.dr.store import BackupStore, VaultSeal

    drill = sandbox.run("dr_drill", ("scenario", "pitr"), timeout=400)
    assert drill.exit_code == 0, drill.output[-3000:]
    vault = Vault(live.vault)
    base = latest_base_backup(live.backups, vault)
    found = proofs(BackupStore(str(base.path.parent)), [base], VaultSeal(vault, live.backups))[base.name]
    assert found.proven and found.stamp.run_id == drill.summary["run_id"] and found.stamp.scenario == "pitr"
    assert found.stamp.checks == ("rows before the target present", "rows after the target absent")


def test_full_drill_restores_fails_over_and_leaves_the_platform_healthy(sandbox: Any) -> None:
    before = json.loads(sandbox.runbook("sandbox", "status", "--json", "--state-dir", str(sandbox.state_dir)).stdout)
    run = sandbox.run("dr_drill", ("scenario", "full"), ("backup", "new"), timeout=400)
    assert run.exit_code == 0, run.output[-3000:]
    figures = run.summary["figures"]
    assert set(figures) >= {"rpo_s", "rto_s", "failover_s", "lost_rows", "backup_bytes", "restore_s"}
    assert 0 < figures["failover_s"] < 300 and 0 < figures["rto_s"] < 4 * 3600
    assert figures["rpo_s"] is not None and 0 <= figures["rpo_s"] < 3600
    assert figures["backup_bytes"] > 0 and figures["restore_s"] > 0 and figures["lost_rows"] >= 0

    after = json.loads(sandbox.runbook("sandbox", "status", "--json", "--state-dir", str(sandbox.state_dir)).stdout)
    pg_before, pg_after = before["postgres"], after["postgres"]
    assert pg_after["primary"]["running"] and pg_after["standby"]["running"]
    assert pg_after["replication"]["state"] == "streaming"
    assert pg_after["primary"]["port"] == pg_before["standby"]["port"], "the promoted standby is the primary"
    assert all(d["ready"] == d["replicas"] for d in after["deployments"].values())
    assert all(part["alive"] for part in after["components"].values()), after["components"]
    # As the game day's closing health check: the drill's restore proved its backup, and the promoted
    # standby archives its WAL (its configuration is the old primary's), so the backup rows pass.
    health = sandbox.run("health_check", ("window_minutes", 1))
    assert health.exit_code == 0, health.output[-3000:]
    checked = health.summary["figures"]
    assert checked["newest_proven_backup_age_s"] < 3600 and checked["wal_archive_lag_s"] < 3600
