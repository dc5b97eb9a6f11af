"""Database migrations in the deploy and rollback runbooks, on the sandbox's veza_db.

One scenario, in order, on veza-backend-api (its releases ship veza_db's migrations): a release
with an expand and a contract migration deploys (backup, both applied and verified, no failed
request), and an older version's pod then refuses to serve on that schema; a release whose
migration fails stops before any pod changes; rolling back across the contract migration is
refused (exit 2, nothing changed), then done with its down migration after a backup, the
expand one kept and the older version serving again. A `runbook run` costs 8-10 s, so the
expand and contract cases share runs; the planning across expand-only migrations (the rollback
proceeds without reverting) is tested without a sandbox in tests/test_migrations.py.
"""
from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from .conftest import REPO, Sandbox
from .test_deploy import image, resource_versions

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(600)]

BACKEND = "veza-backend-api"
QUICK = ("analysis_s", 4)  # the judgement of a deploy is test_deploy's; here the schema is


def _query(sandbox: Sandbox, sql: str, *params: Any) -> list[tuple[Any, ...]]:
    import psycopg

    with psycopg.connect(sandbox.env["PG_PRIMARY_DSN"], autocommit=True) as conn:
        return conn.execute(sql, params).fetchall()


def applied(sandbox: Sandbox) -> dict[int, tuple[str, str | None]]:
    return {int(v): (kind, backup) for v, kind, backup in _query(sandbox, "SELECT version, kind, backup FROM schema_migrations")}


def columns(sandbox: Sandbox, table: str) -> set[str]:
    return {c for (c,) in _query(sandbox, "SELECT column_name FROM information_schema.columns "
                                          "WHERE table_schema = 'public' AND table_name = %s", table)}


def backup_names(sandbox: Sandbox) -> set[str]:
    from runbooks_lib.procedures.dr.store import BackupStore

    return {m.name for m in BackupStore(sandbox.env["BACKUP_URL"]).list()}


def test_a_dry_run_shows_the_sql_and_changes_nothing(sandbox: Sandbox) -> None:
    from runbooks_lib.platform.migrations import Migrator, parse_migrations

    folder = REPO / "parameters" / "migrations" / BACKEND
    migrations = parse_migrations({p.name: p.read_text() for p in folder.glob("*.sql")})
    before = applied(sandbox)
    outcome = Migrator(sandbox.env["PG_PRIMARY_DSN"], migrations, dry_run=True).apply(migrations[0])
    assert outcome.dry_run and outcome.statements[0].startswith("ALTER TABLE tracks ADD COLUMN bpm")
    assert applied(sandbox) == before and "bpm" not in columns(sandbox, "tracks")


def refused_start(sandbox: Sandbox, folder: Path, version: str) -> str:
    """Start one backend process of ``version`` against veza_db; its log once it refused readiness."""
    from urllib.error import HTTPError
    from urllib.request import urlopen

    from runbooks_sandbox.workload import start_workload

    pod = start_workload(f"registry.veza.app/{BACKEND}:{version}", folder / "pod.log",
                         env={"DATABASE_URL": sandbox.env["PG_PRIMARY_DSN"]})
    try:
        deadline = time.monotonic() + 20
        while "schema check" not in pod.log() and time.monotonic() < deadline:
            time.sleep(0.1)
        with pytest.raises(HTTPError) as refused:
            urlopen(pod.url + "/ready", timeout=5)
        assert refused.value.code == 503
        return pod.log()
    finally:
        pod.stop()


def test_migrations_with_the_release_and_no_rollback_across_a_contract_one(sandbox: Sandbox, tmp_path: Path) -> None:
    start_version = image(sandbox, BACKEND).rsplit(":", 1)[1]
    assert set(applied(sandbox)) == {1}  # the seed's baseline

    # 1. v1.8.0 ships an expand migration (0002) and a contract one (0003): a backup, both applied
    #    and verified in their own transactions, then the rollout; no request failed.
    began = datetime.now(timezone.utc)
    deploy = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.8.0"), QUICK)
    assert deploy.exit_code == 0, deploy.output
    summary = deploy.summary
    backup = summary["notes"]["backup"].split()[0]
    assert backup in backup_names(sandbox)
    assert summary["notes"]["schema"] == \
        f"applied 0002_tracks_bpm (expand), 0003_users_full_name (contract) after backup {backup}"
    assert summary["figures"]["migrations_applied"] == 2 and summary["figures"]["failed_requests"] == 0
    assert applied(sandbox) == {1: ("expand", None), 2: ("expand", backup), 3: ("contract", backup)}
    assert "bpm" in columns(sandbox, "tracks") and "full_name" in columns(sandbox, "users")
    assert "display_name" not in columns(sandbox, "users")
    steps = [s["name"] for s in summary["steps"]]
    assert steps.index("Database migrations") < steps.index("Rolling update and checks")
    assert "0002_tracks_bpm (expand), 0003_users_full_name" in deploy.record.read_text()  # the checklist row
    # An older version cannot read this schema: a v1.7.0 pod started now stays not ready, saying why.
    assert "contract migration(s) 3 that v1.7.0 (schema 2) cannot read" in refused_start(sandbox, tmp_path, "v1.7.0")

    # 2. A migration with an SQL error: stopped before any pod changes, the schema as before.
    before, schema_before = resource_versions(sandbox), applied(sandbox)
    bad = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.8.1-badmigration"))
    assert bad.exit_code == 1, bad.output
    error = bad.summary["error"]
    assert bad.summary["failed_step"] == "Database migrations"
    assert "0004_tracks_mood (up) failed at statement 2 of 2: UPDATE tracks SET mood" in error, error
    assert "genre_moods" in error and "the schema is as before" in error, error
    assert applied(sandbox) == schema_before and "mood" not in columns(sandbox, "tracks")  # the ALTER rolled back
    changed = {k for k, v in resource_versions(sandbox).items() if before.get(k) != v}
    assert not {k for k in changed if k.startswith(("Deployment/", "ReplicaSet/"))}, changed

    # 3. Rolling back below the contract migration: refused, nothing changed, the ways out named.
    before = resource_versions(sandbox)
    refused = sandbox.run("rollback", ("service", BACKEND), ("reason", "drill"))
    assert refused.exit_code == 2, refused.output
    assert refused.summary["failed_step"] == "Plan the rollback"
    assert refused.summary["figures"]["blocked_by_migration"] == 3
    error = refused.summary["error"]
    assert "contract migration 0003_users_full_name" in error and f"{start_version} (schema 1) cannot read" in error, error
    assert "roll forward" in error and "-p run_down_migrations True" in error, error
    assert f"from backup {backup} taken " in error and "-p scenario pitr -p target_time 20" in error, error
    assert resource_versions(sandbox) == before and set(applied(sandbox)) == {1, 2, 3}

    # 4. With the down migration: a fresh backup, 0003 reverted, 0002 kept (expand: the older
    #    version runs on it), then the rollback; the older version serves again, nothing failed.
    reverted = sandbox.run("rollback", ("service", BACKEND), ("reason", "drill"), ("run_down_migrations", True),
                           ("verify_s", 3))
    assert reverted.exit_code == 0, reverted.output
    notes = reverted.summary["notes"]
    fresh = notes["backup"].split()[0]
    assert fresh in backup_names(sandbox) and fresh != backup
    assert notes["schema"] == f"reverted 0003_users_full_name (contract) after backup {fresh}"
    assert set(applied(sandbox)) == {1, 2} and "bpm" in columns(sandbox, "tracks")
    assert "display_name" in columns(sandbox, "users") and "full_name" not in columns(sandbox, "users")
    assert image(sandbox, BACKEND).endswith(f":{start_version}")
    assert sandbox.traffic(began)[BACKEND]["failed"] == 0

    # 5. Across an expand migration only: v1.7.0 needs 0002, which is there (nothing to apply);
    #    rolling it back proceeds without any flag and keeps the schema, the older version serving.
    expand = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.7.0"), ("analysis_s", 3))
    assert expand.exit_code == 0, expand.output
    assert expand.summary["figures"].get("migrations_applied", 0) == 0 and set(applied(sandbox)) == {1, 2}
    back = sandbox.run("rollback", ("service", BACKEND), ("reason", "drill: expand only"), ("verify_s", 3))
    assert back.exit_code == 0, back.output
    assert back.summary["figures"].get("migrations_reverted", 0) == 0
    assert "0002_tracks_bpm" in back.record.read_text()  # the plan names the expand migration it keeps
    assert set(applied(sandbox)) == {1, 2} and "bpm" in columns(sandbox, "tracks")
    assert image(sandbox, BACKEND).endswith(f":{start_version}")
