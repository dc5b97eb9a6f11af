"""The health check's backup rows from an inventory, without servers (issue 28)."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runbooks_lib.procedures.dr.freshness import backup_rows, segment_number
from runbooks_lib.procedures.dr.inventory import BackupEntry
from runbooks_lib.procedures.dr.proof import Proof, Stamp

NOW = datetime(2026, 12, 7, 12, tzinfo=timezone.utc)
HOUR, DAY = 3600.0, 86400.0


def entry(name: str, age_s: float, proven: bool = False, problem: str = "") -> BackupEntry:
    stamp = Stamp(name, "d" * 64, f"run-{name}", "dr_drill", "restore", NOW.isoformat(), 4, ("marker row",), 2.0, 9)
    return BackupEntry(name, NOW - timedelta(seconds=age_s), 10, "v1", Proof(name, stamp if proven else None), problem)


def rows(entries: list[BackupEntry], none_yet: str = "fail") -> dict[str, tuple[float | None, str]]:
    found = backup_rows(entries, NOW, max_age_s=26 * HOUR, interval_s=31 * DAY, none_yet=none_yet)  # type: ignore[arg-type]
    return {r.check: (r.value_s, r.severity) for r in found}


def test_each_age_against_its_limit() -> None:
    # last night's full backup is hours old by design: the schedule's limit, not the RPO's 1 h
    got = rows([entry("last-night", 9 * HOUR), entry("proven", 20 * DAY, proven=True)])
    assert got == {"newest backup age": (9 * HOUR, "ok"), "newest proven backup age": (20 * DAY, "ok")}
    got = rows([entry("missed-a-night", 27 * HOUR), entry("proven", 40 * DAY, proven=True)])
    assert got == {"newest backup age": (27 * HOUR, "fail"), "newest proven backup age": (40 * DAY, "fail")}


def test_an_untrustworthy_backup_counts_for_nothing() -> None:
    got = rows([entry("edited", 60, proven=True, problem="its manifest is refused: edited"), entry("older", 30 * HOUR)])
    assert got["newest backup age"] == (30 * HOUR, "fail")
    assert got["newest proven backup age"] == (None, "fail")


@pytest.mark.parametrize("none_yet", ["fail", "warn"])
def test_nothing_to_measure_is_the_profiles_choice(none_yet: str) -> None:
    assert rows([], none_yet) == {"newest backup age": (None, none_yet), "newest proven backup age": (None, none_yet)}
    assert rows([entry("never", 60)], none_yet)["newest proven backup age"] == (None, none_yet)


def test_segment_numbers_order_wal_files_across_log_files() -> None:
    assert segment_number("0000000100000000000000FF") == 0xFF
    assert segment_number("000000010000000100000000") == 0x100  # the segment after ...000000FF
    assert segment_number("000000020000000100000003") == 0x103  # the timeline is left out
    assert segment_number("00000002.history") is None and segment_number(None) is None
