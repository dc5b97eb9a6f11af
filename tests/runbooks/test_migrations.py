"""Database migrations in the deploy and rollback runbooks, on the sandbox's veza_db.

One scenario, in order, on veza-backend-api (its releases ship veza_db's migrations): an expand
release deploys (backup, migration applied and verified, no failed request); a contract release
deploys; a release whose migration fails stops before any pod changes; rolling back across the
contract migration is refused (exit 2, nothing changed), then done with its down migration
after a backup, the older release (which checks its schema at start) serving again; and a
rollback across the expand migration alone keeps the schema. Each `runbook run` costs seconds,
so every run here proves something the issue asks for and none repeats another.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
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


def revision_of(sandbox: Sandbox, version: str) -> int:
    items = json.loads(sandbox.kubectl("get", "replicasets", "-l", f"app={BACKEND}", "-o", "json"))["items"]
    found = [i for i in items if i["spec"]["template"]["spec"]["containers"][0]["image"].endswith(f":{version}")]
    return int(found[0]["metadata"]["annotations"]["deployment.kubernetes.io/revision"])


def backup_names(sandbox: Sandbox) -> set[str]:
    from runbooks_lib.dr.store import BackupStore

    return {m.name for m in BackupStore(sandbox.env["BACKUP_URL"]).list()}


def test_a_dry_run_shows_the_sql_and_changes_nothing(sandbox: Sandbox) -> None:
    from runbooks_lib.migrations import Migrator, parse_migrations

    folder = REPO / "parameters" / "migrations" / BACKEND
    migrations = parse_migrations({p.name: p.read_text() for p in folder.glob("*.sql")})
    before = applied(sandbox)
    outcome = Migrator(sandbox.env["PG_PRIMARY_DSN"], migrations, dry_run=True).apply(migrations[0])
    assert outcome.dry_run and outcome.statements[0].startswith("ALTER TABLE tracks ADD COLUMN bpm")
    assert applied(sandbox) == before and "bpm" not in columns(sandbox, "tracks")


def test_migrations_with_the_release_and_no_rollback_across_a_contract_one(sandbox: Sandbox) -> None:
    start_version = image(sandbox, BACKEND).rsplit(":", 1)[1]
    start_revision = revision_of(sandbox, start_version)
    assert set(applied(sandbox)) == {1}  # the seed's baseline

    # 1. An expand release: backup, migration applied and verified, then the rollout; nothing failed.
    began = datetime.now(timezone.utc)
    expand = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.7.0"), QUICK)
    assert expand.exit_code == 0, expand.output
    summary = expand.summary
    backup = summary["notes"]["backup"].split()[0]
    assert backup in backup_names(sandbox)
    assert summary["notes"]["schema"] == f"applied 0002_tracks_bpm (expand) after backup {backup}"
    assert summary["figures"]["migrations_applied"] == 1 and summary["figures"]["failed_requests"] == 0
    assert applied(sandbox)[2] == ("expand", backup) and "bpm" in columns(sandbox, "tracks")
    steps = [s["name"] for s in summary["steps"]]
    assert steps.index("Database migrations") < steps.index("Rolling update and checks")
    assert "0002_tracks_bpm (expand): to apply before" in expand.record.read_text()  # the checklist row

    # 2. A contract release on top: only its own migration is pending.
    contract = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.8.0"), QUICK)
    assert contract.exit_code == 0, contract.output
    assert contract.summary["notes"]["schema"].startswith("applied 0003_users_full_name (contract)")
    assert {"full_name"} <= columns(sandbox, "users") and "display_name" not in columns(sandbox, "users")

    # 3. A migration with an SQL error: stopped before any pod changes, the schema as before.
    before, schema_before = resource_versions(sandbox), applied(sandbox)
    bad = sandbox.run("deploy", ("service", BACKEND), ("version", "v1.8.1-badmigration"))
    assert bad.exit_code == 1, bad.output
    error = bad.summary["error"]
    assert bad.summary["failed_step"] == "Database migrations"
    assert "0004_tracks_mood (up) failed at statement 2 of 2: UPDATE tracks SET mood" in error, error
    assert "genre_moods" in error and "the schema is as before" in error, error
    assert applied(sandbox) == schema_before and "mood" not in columns(sandbox, "tracks")  # the ALTER rolled back
    changed = {k for k, v in resource_versions(sandbox).items() if before.get(k) != v and not k.startswith("Lease/")}
    assert not {k for k in changed if k.startswith(("Deployment/", "ReplicaSet/"))}, changed

    # 4. Rolling back below the contract migration: refused, nothing changed, the ways out named.
    before = resource_versions(sandbox)
    refused = sandbox.run("rollback", ("service", BACKEND), ("reason", "drill"))
    assert refused.exit_code == 2, refused.output
    assert refused.summary["failed_step"] == "Plan the rollback"
    assert refused.summary["figures"]["blocked_by_migration"] == 3
    error = refused.summary["error"]
    assert "contract migration 0003_users_full_name" in error and "v1.7.0 (schema 2) cannot read" in error, error
    assert "roll forward" in error and "-p run_down_migrations True" in error, error
    assert f"from backup {applied(sandbox)[3][1]} taken " in error and "-p scenario pitr -p target_time 20" in error, error
    assert resource_versions(sandbox) == before and set(applied(sandbox)) == {1, 2, 3}

    # 5. With its down migration: a backup, 0003 reverted, then the rollback; v1.7.0 (which checks
    #    its schema at start) serves again.
    reverted = sandbox.run("rollback", ("service", BACKEND), ("reason", "drill"), ("run_down_migrations", True),
                           ("verify_s", 3))
    assert reverted.exit_code == 0, reverted.output
    notes = reverted.summary["notes"]
    fresh = notes["backup"].split()[0]
    assert fresh in backup_names(sandbox) and fresh != backup
    assert notes["schema"] == f"reverted 0003_users_full_name (contract) after backup {fresh}"
    assert set(applied(sandbox)) == {1, 2} and "display_name" in columns(sandbox, "users")
    assert image(sandbox, BACKEND).endswith(":v1.7.0")
    pods = json.loads(sandbox.kubectl("get", "pods", "-l", f"app={BACKEND}", "-o", "json"))["items"]
    serving = [p["metadata"]["name"] for p in pods if p["spec"]["containers"][0]["image"].endswith(":v1.7.0")]
    assert "schema check: veza_db has the migrations v1.7.0 needs (schema 2)" in sandbox.kubectl("logs", serving[0])

    # 6. Back across the expand migration alone: allowed, and the schema stays.
    kept = sandbox.run("rollback", ("service", BACKEND), ("to_revision", start_revision), ("reason", "drill over"),
                       ("verify_s", 3))
    assert kept.exit_code == 0, kept.output
    assert "all expand: the schema stays" in kept.record.read_text()
    assert image(sandbox, BACKEND).endswith(f":{start_version}")
    assert set(applied(sandbox)) == {1, 2} and "bpm" in columns(sandbox, "tracks")
    assert sandbox.traffic(began)[BACKEND]["failed"] == 0
