"""Are the backups recent enough, and proven recently enough? The health check's backup rows.

Three numbers, each against its limit (the guide's 10): the newest trustworthy backup's age
against the full-backup schedule (daily, with a little grace: ``backups.full_backup_max_age_h``),
the newest *proven* backup's age (:mod:`.proof`: a drill restored it and every check passed)
against the restore-test interval (monthly), and the WAL archive's lag against the RPO (1 h).
The RPO is WAL's to keep: with daily full backups the newest is hours old by design, and holding
it to one hour would fail every healthy platform. Base backups and WAL archiving fail independently (REFERENCES: monitor both).
A row with nothing to measure (no backup yet, no proof yet) is the profile's ``backups.none_yet``:
a failure in production, a warning on a sandbox that starts with none.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from ...platform.database import sql_errors

if TYPE_CHECKING:
    from .inventory import BackupEntry

__all__ = ["BackupRow", "backup_rows", "wal_archive_row", "segment_number", "rows_table", "shown"]

Severity = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class BackupRow:
    check: str
    value_s: float | None  # the number measured (seconds); None: nothing to measure
    limit_s: float
    severity: Severity
    detail: str

    @property
    def passed(self) -> bool:
        return self.severity == "ok"


def _within(check: str, age_s: float | None, limit_s: float, detail: str, none_yet: Severity) -> BackupRow:
    if age_s is None:
        return BackupRow(check, None, limit_s, none_yet, detail)
    return BackupRow(check, round(age_s, 1), limit_s, "ok" if age_s <= limit_s else "fail", detail)


def backup_rows(entries: "list[BackupEntry]", now: datetime, *, max_age_s: float, interval_s: float,
                none_yet: Literal["warn", "fail"]) -> list[BackupRow]:
    """The newest backup's age against ``max_age_s`` (the full-backup schedule), the newest proven
    one's against the restore-test interval."""
    usable = [e for e in entries if not e.problem and e.taken_at is not None]
    proven = [e for e in usable if e.proven]
    newest = max(usable, key=lambda e: e.taken_at, default=None)  # type: ignore[arg-type, return-value]
    best = max(proven, key=lambda e: e.taken_at, default=None)  # type: ignore[arg-type, return-value]
    refused = len(entries) - len(usable)
    rows = [_within("newest backup age", newest.age_s(now) if newest else None, max_age_s,
                    f"{newest.name}" if newest else "no backup stored" + (f" ({refused} not trustworthy)" if refused else ""),
                    none_yet),
            _within("newest proven backup age", best.age_s(now) if best else None, interval_s,
                    f"{best.name}, {best.status()}" if best else
                    f"no backup was ever proven by a restore ({len(usable)} stored)", none_yet)]
    return rows


def segment_number(wal_file: str | None) -> int | None:
    """The position of a WAL segment file (``000000010000000A000000FF``), timeline left out; None
    for anything else (a history file, nothing archived yet)."""
    if not wal_file or len(wal_file) < 24:
        return None
    try:
        return int(wal_file[8:16], 16) * 0x100 + int(wal_file[16:24], 16)  # 16 MiB segments
    except ValueError:
        return None


@sql_errors("read WAL archiving")
def wal_archive_row(primary_dsn: Any, rpo_s: float, *, archive_expected: bool) -> BackupRow:
    """How long the oldest complete, unarchived WAL segment has waited (0: none is waiting),
    against the RPO; a failing archive_command fails the row whatever the lag."""
    from ...platform.database import connect

    with connect(primary_dsn, autocommit=True) as conn:
        mode, current, archived, archived_at, failed_wal, failed_at, now, started = conn.execute(
            "SELECT current_setting('archive_mode'), pg_walfile_name(pg_current_wal_lsn()), last_archived_wal, "
            "last_archived_time, last_failed_wal, last_failed_time, now(), pg_postmaster_start_time() "
            "FROM pg_stat_archiver").fetchone()
    check = "WAL archive lag"
    if mode == "off":
        return BackupRow(check, None, rpo_s, "fail" if archive_expected else "warn",
                         "archive_mode is off: WAL never leaves the primary (no point-in-time recovery)")
    waiting = (segment_number(current) or 0) - (segment_number(archived) or 0) - 1
    lag = 0.0 if archived and waiting <= 0 else (now - (archived_at or started)).total_seconds()
    detail = f"{max(waiting, 0)} complete segment(s) waiting; last archived {archived or 'none'}"
    if failed_at is not None and (archived_at is None or failed_at > archived_at):
        return BackupRow(check, round(lag, 1), rpo_s, "fail",
                         f"archive_command failing: {failed_wal} failed at {failed_at:%Y-%m-%d %H:%M:%S} UTC; {detail}")
    return _within(check, lag, rpo_s, detail, "fail")


def shown(seconds: float | None) -> str:
    """An age or a limit as a person reads it: hours, or days from two days on; "-" for none."""
    if seconds is None:
        return "-"
    return f"{seconds / 86400:.2f} d" if seconds >= 2 * 86400 else f"{seconds / 3600:.2f} h"


def rows_table(rows: list[BackupRow]) -> Any:
    """The rows as the record shows them: the number and its limit, in hours or days."""
    import pandas as pd

    return pd.DataFrame([{"check": r.check, "value": shown(r.value_s), "limit": f"≤ {shown(r.limit_s)}",
                          "passed": {"ok": True, "fail": False, "warn": None}[r.severity], "detail": r.detail}
                         for r in rows]).set_index("check")
