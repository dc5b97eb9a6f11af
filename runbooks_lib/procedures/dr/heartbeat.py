"""Heartbeats: RPO and lost rows measured from rows the database acknowledged, never assumed.

A writer inserts ``(seq, clock_timestamp())`` every ``interval_s`` on whichever node is the
primary now (it follows a promotion: after a failure it asks each candidate DSN which one is
out of recovery). Every acknowledged row is remembered with the node that acknowledged it. After
a failover or a restore, the rows present are compared with those acknowledged:

- RPO = fault time - newest heartbeat present in the promoted or restored database;
- lost rows = rows acknowledged before the fault and absent afterwards;
- failover (for a probe writing every 200 ms through the application's DSN) = first success on
  the new primary - last success on the old one.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Callable, Sequence

from ...errors import BackendUnavailable
from ...records.secret import SecretValue
from .postgres import sql_errors

__all__ = ["Beat", "HeartbeatWriter", "newest_beat", "lost_rows", "failover_gap"]

Dsn = str | SecretValue


@dataclass(frozen=True)
class Beat:
    seq: int
    at: datetime  # the database's clock_timestamp() of the row
    node: str  # host:port of the server that acknowledged it


def _clear(dsn: Dsn) -> str:
    return dsn.reveal() if isinstance(dsn, SecretValue) else str(dsn)


@dataclass
class HeartbeatWriter:
    """Writes a row every ``interval_s`` on the primary among ``candidates()``; a thread.

    ``candidates`` returns the DSNs to try (e.g. primary and standby; or the application's
    current DSN, read again after each failure, for a probe).
    """

    candidates: Callable[[], Sequence[Dsn]]
    interval_s: float = 1.0
    table: str = "dr_heartbeat"
    connect_timeout_s: float = 1.0
    acked: list[Beat] = field(default_factory=list)
    failures: list[tuple[datetime, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._node = ""
        self._lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "HeartbeatWriter":
        self._connect()
        if self._conn is None:
            raise BackendUnavailable(f"heartbeat: no primary among {len(self.candidates())} candidate DSN(s)")
        self._conn.execute(f"CREATE TABLE IF NOT EXISTS {self.table} "
                           "(seq bigint PRIMARY KEY, at timestamptz NOT NULL, node text NOT NULL)")
        last = self._conn.execute(f"SELECT coalesce(max(seq), 0) FROM {self.table}").fetchone()[0]
        self._next = int(last) + 1
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{self.table}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> "HeartbeatWriter":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- writing -----------------------------------------------------------------------
    def _connect(self) -> None:
        import psycopg

        for dsn in self.candidates():
            if not dsn:
                continue
            try:
                conn = psycopg.connect(_clear(dsn), autocommit=True, connect_timeout=max(1, int(self.connect_timeout_s)))
                in_recovery, node = conn.execute(
                    "SELECT pg_is_in_recovery(), host(inet_server_addr()) || ':' || inet_server_port()").fetchone()
            except psycopg.Error:
                continue
            if in_recovery:
                conn.close()
                continue
            self._conn, self._node = conn, str(node)
            return

    def _write_one(self) -> None:
        import psycopg

        if self._conn is None:
            self._connect()
            if self._conn is None:
                self.failures.append((datetime.now(timezone.utc), "no primary reachable"))
                return
        try:
            at = self._conn.execute(
                f"INSERT INTO {self.table} (seq, at, node) VALUES (%s, clock_timestamp(), %s) "
                "ON CONFLICT (seq) DO NOTHING RETURNING at", (self._next, self._node)).fetchone()
        except psycopg.Error as e:
            self.failures.append((datetime.now(timezone.utc), type(e).__name__))
            try:
                self._conn.close()
            except psycopg.Error:
                pass
            self._conn = None
            return
        if at is not None:
            with self._lock:
                self.acked.append(Beat(self._next, at[0], self._node))
        self._next += 1

    def _run(self) -> None:
        next_at = time.monotonic()
        while not self._stop.is_set():
            try:
                self._write_one()
            except Exception as e:  # a writer that dies silently would fake an outage
                self.failures.append((datetime.now(timezone.utc), f"{type(e).__name__}: {e}"))
                self._conn = None
            next_at += self.interval_s
            self._stop.wait(max(0.0, next_at - time.monotonic()))

    # -- reading -----------------------------------------------------------------------
    def beats(self) -> list[Beat]:
        with self._lock:
            return list(self.acked)

    def last_before(self, moment: datetime) -> Beat | None:
        before = [b for b in self.beats() if b.at <= moment]
        return before[-1] if before else None


@sql_errors("read the heartbeat")
def newest_beat(dsn: Dsn, table: str = "dr_heartbeat", before: datetime | None = None) -> tuple[int, datetime] | None:
    """The newest heartbeat row (seq, at) in a database, optionally at or before ``before``."""
    from ...platform.database import connect

    with connect(dsn, autocommit=True) as conn:
        exists = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (table,)).fetchone()[0]
        if not exists:
            return None
        row = conn.execute(f"SELECT seq, at FROM {table} WHERE %s::timestamptz IS NULL OR at <= %s "
                           "ORDER BY seq DESC LIMIT 1", (before, before)).fetchone()
    return (int(row[0]), row[1]) if row else None


@sql_errors("count lost heartbeat rows")
def lost_rows(dsn: Dsn, acked: Sequence[Beat], table: str = "dr_heartbeat") -> list[int]:
    """Sequence numbers acknowledged (``acked``) but absent from the database at ``dsn``."""
    from ...platform.database import connect

    wanted = [b.seq for b in acked]
    if not wanted:
        return []
    with connect(dsn, autocommit=True) as conn:
        present = {r[0] for r in conn.execute(f"SELECT seq FROM {table} WHERE seq = ANY(%s)", (wanted,)).fetchall()}
    return sorted(set(wanted) - present)


def failover_gap(beats: Sequence[Beat], fault_at: datetime) -> tuple[Beat | None, Beat | None]:
    """The last acknowledged write on the old primary before the fault, and the first on another node after."""
    old = [b for b in beats if b.at <= fault_at]
    if not old:
        return None, None
    last_old = old[-1]
    new = [b for b in beats if b.node != last_old.node and b.at > fault_at]
    return last_old, (new[0] if new else None)
