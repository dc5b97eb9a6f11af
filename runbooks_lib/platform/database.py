"""PostgreSQL, through psycopg: reachability and replication of the primary and its standby."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..errors import BackendUnavailable
from ..records.secret import SecretValue

__all__ = ["ReplicationStatus", "replication_status", "connect"]


@dataclass(frozen=True)
class ReplicationStatus:
    primary_reachable: bool
    standby_reachable: bool
    standby_in_recovery: bool | None
    streaming_standbys: int | None
    lag_bytes: int | None
    lag_seconds: float | None

    @property
    def healthy(self) -> bool:
        return bool(self.primary_reachable and self.standby_reachable and self.standby_in_recovery and self.streaming_standbys)


def connect(dsn: str | SecretValue, **kwargs: Any) -> Any:
    """A psycopg connection; failures are BackendUnavailable without the DSN (it holds a password)."""
    import psycopg

    clear = dsn.reveal() if isinstance(dsn, SecretValue) else dsn
    try:
        return psycopg.connect(clear, connect_timeout=5, **kwargs)
    except psycopg.Error as e:
        raise BackendUnavailable(f"PostgreSQL unreachable ({type(e).__name__})") from None


def _one(dsn: str | SecretValue, sql: str) -> Any:
    with connect(dsn, autocommit=True) as conn:
        return conn.execute(sql).fetchone()


def replication_status(primary_dsn: str | SecretValue, standby_dsn: str | SecretValue | None) -> ReplicationStatus:
    """Lag in bytes (primary's view, pg_stat_replication) and seconds (standby's replay time)."""
    try:
        streaming, lag_bytes = _one(
            primary_dsn,
            "SELECT count(*), max(pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn))::bigint "
            "FROM pg_stat_replication WHERE state = 'streaming'",
        )
        primary_ok = True
    except BackendUnavailable:
        streaming, lag_bytes, primary_ok = None, None, False
    in_recovery, lag_seconds, standby_ok = None, None, False
    if standby_dsn:
        try:
            # No replay lag when the standby has replayed everything it received.
            in_recovery, lag_seconds = _one(
                standby_dsn,
                "SELECT pg_is_in_recovery(), CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() "
                "THEN 0 ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END",
            )
            standby_ok = True
        except BackendUnavailable:
            pass
    return ReplicationStatus(
        primary_ok, standby_ok, in_recovery, streaming,
        int(lag_bytes) if lag_bytes is not None else (0 if streaming else None),
        float(lag_seconds) if lag_seconds is not None else None,
    )
