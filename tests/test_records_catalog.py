"""The catalog: summaries of every record, filtered, cached and as a DataFrame."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runbooks_lib.records.catalog import Catalog, RecordFilter, parse_since, summaries
from tests.generators.records import generate_records


@pytest.fixture
def root(tmp_path: Path) -> Path:
    generate_records(tmp_path / "records", 60, filler=2)
    return tmp_path / "records"


def test_rows_filters_and_incremental_cache(root: Path) -> None:
    catalog = Catalog(root)
    rows = catalog.rows()
    assert len(rows) == 60 and catalog.last_stats == {"records": 60, "read": 60}
    assert rows[0]["started"] > rows[-1]["started"]  # newest first
    failed = catalog.rows(RecordFilter(env="production", outcome="failed"))
    expected = [r for r in rows if r["env"] == "production" and r["outcome"] == "failed"]
    assert failed == expected and failed
    assert catalog.rows() == rows and catalog.last_stats["read"] == 0  # warm: nothing re-read

    # a changed record is re-read, and only it
    path = root / rows[0]["record"]
    path.write_text(path.read_text().replace('"outcome": "', '"outcome": "x', 1))
    again = catalog.rows()
    assert catalog.last_stats["read"] == 1
    assert [r for r in again if r["record"] == rows[0]["record"]][0]["outcome"].startswith("x")


def test_since_and_dataframe(root: Path) -> None:
    since = parse_since("2026-01-02T00:00:00Z")
    recent = Catalog(root).rows(RecordFilter(since=since))
    assert recent and all(r["started"] >= "2026-01-02" for r in recent)
    frame = summaries(root, runbook="rollback")
    assert set(frame["runbook"]) == {"rollback"}
    assert "figure.time_to_rollback_s" in frame.columns and frame["figure.time_to_rollback_s"].notna().all()
    assert str(frame["started"].dtype).startswith("datetime64")
    assert parse_since("7d") is not None


def test_record_without_summary_is_listed(root: Path) -> None:
    stray = root / "sandbox" / "stray.ipynb"
    stray.write_text(json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    [row] = [r for r in Catalog(root).rows() if r["record"] == "sandbox/stray.ipynb"]
    assert row["outcome"] == "no summary" and not row["sealed"]


def test_list_and_show_commands(root: Path, tmp_path: Path) -> None:
    env = dict(os.environ, RUNBOOKS_HOME=str(tmp_path), RUNBOOKS_RECORDS_URL=str(root))
    cli = [sys.executable, "-m", "runbooks_lib.cli", "records"]
    listed = subprocess.run([*cli, "list", "--runbook", "canary", "--json"], capture_output=True, text=True, env=env)
    rows = [json.loads(line) for line in listed.stdout.splitlines()]
    assert rows and {r["runbook"] for r in rows} == {"canary"}
    table = subprocess.run([*cli, "list", "--outcome", "refused"], capture_output=True, text=True, env=env)
    assert "refused" in table.stdout and "succeeded" not in table.stdout
    shown = subprocess.run([*cli, "show", rows[0]["run_id"]], capture_output=True, text=True, env=env)
    assert shown.returncode == 0 and f"canary on {rows[0]['env']}" in shown.stdout
    missing = subprocess.run([*cli, "show", "nosuchrun"], capture_output=True, text=True, env=env)
    assert missing.returncode == 1 and "no single record" in missing.stderr
