"""Migrations without a database: files, statement splitting, planning, refusals, the workload's check."""
from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from runbooks_lib.procedures.delivery.events import rollback_status
from runbooks_lib.errors import ParameterError
from runbooks_lib.platform.migrations import (Applied, Expectation, blocking_contracts, parse_migrations, pending_for,
                                     schema_for, split_statements, to_revert_for)
from runbooks_sandbox.workload.schema import schema_problem

REPO = Path(__file__).resolve().parents[1]
FOLDER = REPO / "parameters" / "migrations" / "veza-backend-api"


@pytest.fixture(autouse=True)
def _records_in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The planning code reads the database URL as a secret: its fingerprint goes beside the
    records, which must not be the checkout's outputs/."""
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(tmp_path / "records"))


def shipped():
    return parse_migrations({p.name: p.read_text() for p in FOLDER.glob("*.sql")})


def applied(**kinds: str) -> dict[int, Applied]:
    rows = {1: Applied(1, "baseline", "expand")}
    rows.update({int(n.removeprefix("m")): Applied(int(n.removeprefix("m")), n, k) for n, k in kinds.items()})
    return rows


def test_the_shipped_migrations_parse_with_kind_down_file_and_expectations() -> None:
    migrations = shipped()
    assert [(m.label, m.kind) for m in migrations] == [
        ("0002_tracks_bpm", "expand"), ("0003_users_full_name", "contract"), ("0004_tracks_mood", "expand")]
    assert all(m.down for m in migrations)
    assert Expectation("column", "users.display_name", present=False) in migrations[1].expects
    assert split_statements(migrations[2].up)[1].startswith("UPDATE tracks SET mood")


def test_a_migration_without_a_kind_or_with_a_duplicate_number_is_refused() -> None:
    with pytest.raises(ParameterError, match="kind: expand"):
        parse_migrations({"0002_x.up.sql": "ALTER TABLE t ADD c int;"})
    with pytest.raises(ParameterError, match="two up migrations numbered 2"):
        parse_migrations({"0002_x.up.sql": "-- kind: expand\n", "02_y.up.sql": "-- kind: expand\n"})
    assert parse_migrations({"README.md": "notes", "0002_x.up.sql": "-- kind: expand\nSELECT 1"})[0].down is None


def test_statements_split_outside_quotes_dollar_quotes_and_comments() -> None:
    sql = ("INSERT INTO t VALUES ('a;b', 'it''s'); -- a comment; with a semicolon\n"
           "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql;\n/* ; */ SELECT \"x;y\" FROM t")
    assert split_statements(sql) == ["INSERT INTO t VALUES ('a;b', 'it''s')",
                                     "CREATE FUNCTION f() RETURNS int AS $body$ SELECT 1; $body$ LANGUAGE sql",
                                     'SELECT "x;y" FROM t']


def test_pending_migrations_are_those_up_to_the_release_schema_not_yet_applied() -> None:
    migrations = shipped()
    assert [m.number for m in pending_for(migrations, applied(), 3)] == [2, 3]
    assert [m.number for m in pending_for(migrations, applied(m2="expand"), 3)] == [3]
    assert pending_for(migrations, applied(m2="expand"), 1) == []
    with pytest.raises(ParameterError, match="migration\\(s\\) 5"):
        pending_for(migrations, applied(), 5)


def test_a_rollback_reverts_from_the_oldest_blocking_contract_up_and_keeps_expands_below() -> None:
    rows = applied(m2="expand", m3="contract", m4="expand")
    assert [a.number for a in blocking_contracts(rows, 2)] == [3]
    assert [a.number for a in to_revert_for(rows, 2)] == [4, 3]  # newest first
    assert [a.number for a in to_revert_for(rows, 1)] == [4, 3]  # 2 is expand: the baseline runs on it
    assert to_revert_for(applied(m2="expand"), 1) == []  # expand only: nothing to revert
    assert blocking_contracts(rows, 3) == []


def test_a_release_schema_comes_from_the_image_catalog_and_defaults_to_the_baseline() -> None:
    profile = SimpleNamespace(migrations=SimpleNamespace(service="veza-backend-api"),
                              sandbox={"images": {"veza-backend-api": {"v1.8.0": {"schema": 3}, "v1.5.0": {}}}})
    assert schema_for(profile, "v1.8.0") == 3  # type: ignore[arg-type]
    assert schema_for(profile, "v1.5.0") == 1  # type: ignore[arg-type]
    assert schema_for(SimpleNamespace(migrations=None, sandbox=None), "v1.8.0") == 1  # type: ignore[arg-type]


def test_the_workload_refuses_a_schema_missing_a_migration_or_with_a_newer_contract() -> None:
    assert "lacks migration(s) 2" in schema_problem(2, {1: "expand"}, "v1.7.0")
    assert "contract migration(s) 3" in schema_problem(2, {1: "expand", 2: "expand", 3: "contract"}, "v1.7.0")
    assert schema_problem(2, {1: "expand", 2: "expand", 4: "expand"}, "v1.7.0") is None


def test_delivery_counts_a_refused_rollback_as_blocked_but_not_one_that_reverted_migrations() -> None:
    assert rollback_status({"outcome": "rejected", "figures": {"blocked_by_migration": 3}}) == "blocked by migration"
    assert rollback_status({"outcome": "succeeded", "notes": {"schema": "reverted 0003_users_full_name (contract)"},
                            "figures": {"migrations_reverted": 1}}) == "succeeded"
    assert rollback_status({"outcome": "rejected", "figures": {}}) == "refused"


def test_applied_rows_read_back_with_their_backup() -> None:
    row = Applied(3, "users_full_name", "contract", datetime(2026, 12, 1, tzinfo=timezone.utc), "run1", "veza_db-x")
    assert row.label == "0003_users_full_name" and row.backup == "veza_db-x"


def schema_change(applied_rows: dict[int, Applied], dry_run: bool = False) -> tuple[Any, dict[str, Any]]:
    """A SchemaChange for veza-backend-api on the shipped migrations, with veza_db's rows given."""
    from pydantic import SecretStr

    from runbooks_lib.procedures.schema_change import SchemaChange

    figures: dict[str, Any] = {}
    profile = SimpleNamespace(
        name="t", migrations=SimpleNamespace(service="veza-backend-api", url=str(FOLDER)),
        database=SimpleNamespace(primary_dsn=SecretStr("postgresql://u@127.0.0.1:1/veza_db")),
        sandbox={"images": {"veza-backend-api": {"v1.7.0": {"schema": 2}, "v1.8.0": {"schema": 3}}}})
    ctx = SimpleNamespace(profile=profile, run_id="run1", env="sandbox", figure=figures.__setitem__)
    change = SchemaChange(ctx, "veza-backend-api", dry_run=dry_run)  # type: ignore[arg-type]
    change._applied = applied_rows
    return change, figures


def test_a_rollback_across_expand_migrations_only_goes_ahead_and_keeps_the_schema() -> None:
    change, figures = schema_change(applied(m2="expand"))
    plan = change.plan_rollback("v1.7.0", "v1.5.0", run_down_migrations=False, what="to roll back")
    assert "0002_m2 (expand); all expand: the schema stays, v1.5.0 runs on it" in plan
    assert change.to_revert == [] and change.revert() is None and figures == {}


def test_a_rollback_across_a_contract_migration_is_refused_unless_its_down_file_runs() -> None:
    rows = applied(m2="expand", m3="contract")
    change, figures = schema_change(rows)
    with pytest.raises(ParameterError) as refused:
        change.plan_rollback("v1.8.0", "v1.7.0", run_down_migrations=False, what="to roll back to v1.7.0")
    assert figures == {"blocked_by_migration": 3}
    message = str(refused.value)
    assert "v1.7.0 (schema 2) cannot read" in message and "roll forward" in message
    assert "-p run_down_migrations True" in message and "-p scenario pitr" in message
    change, _ = schema_change(rows)
    plan = change.plan_rollback("v1.8.0", "v1.5.0", run_down_migrations=True, what="to roll back")
    assert [a.number for a in change.to_revert] == [3] and "0003_m3 reverted" in plan


def test_a_dry_run_deploy_shows_each_pending_migration_sql_and_takes_no_backup(capsys: pytest.CaptureFixture[str]) -> None:
    change, figures = schema_change(applied(), dry_run=True)  # no database: a dry run must not need one
    table = change.apply_for("v1.8.0")
    assert list(table.index) == ["0002_tracks_bpm", "0003_users_full_name"] and set(table["verified"]) == {"(dry run)"}
    shown = capsys.readouterr().out
    assert "dry run: would apply 0002_tracks_bpm (expand):" in shown
    assert "    ALTER TABLE users RENAME COLUMN display_name TO full_name;" in shown
    assert change.backup is None and figures == {}
