"""PostgreSQL, through psycopg: connections, the one translator of its errors, and replication.

Every psycopg error leaves this project through ``sql_errors`` (as Kubernetes' leave through
``kube.translate``): a server that cannot be reached or was lost mid-way is BackendUnavailable, a
statement it refused is CheckFailed, each saying what was being done and never the DSN (it may hold
a password).
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Iterator

from ..errors import BackendUnavailable, CheckFailed, RunbookError
from ..records.secret import SecretValue

__all__ = ["ReplicationStatus", "replication_status", "connect", "sql_errors", "translate", "describe"]


def describe(error: BaseException) -> str:
    """A psycopg error in words: its class and the server's primary message (no DSN, no query data)."""
    diag = getattr(error, "diag", None)
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    return f"{type(error).__name__}: {primary}" if primary else type(error).__name__


def translate(error: BaseException, what: str) -> RunbookError:
    """The project's error for a psycopg one: a connection refused, lost or timed out
    (``OperationalError``, ``InterfaceError``) is BackendUnavailable; anything the server refused
    is CheckFailed. ``what`` says what was being done, e.g. "read schema_migrations"."""
    import psycopg

    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return BackendUnavailable(f"{what}: PostgreSQL unreachable or the connection was lost ({describe(error)})")
    return CheckFailed(f"{what}: {describe(error)}")


@contextlib.contextmanager
def sql_errors(what: str) -> Iterator[None]:
    """Run a block of psycopg calls; its errors leave translated (``translate``). A decorator too."""
    import psycopg

    try:
        yield
    except psycopg.Error as e:
        raise translate(e, what) from e


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
    with sql_errors("read the replication state"), connect(dsn, autocommit=True) as conn:
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
    except (BackendUnavailable, CheckFailed):
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
        except (BackendUnavailable, CheckFailed):
            pass
    return ReplicationStatus(
        primary_ok, standby_ok, in_recovery, streaming,
        int(lag_bytes) if lag_bytes is not None else (0 if streaming else None),
        float(lag_seconds) if lag_seconds is not None else None,
    )
