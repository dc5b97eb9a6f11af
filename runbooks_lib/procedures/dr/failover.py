"""Database failover, the guide's first recovery procedure (< 5 min): promote the standby,
repoint the application, prove writes work again, rebuild a standby.

Measured, not assumed: a heartbeat (1 s) on whichever node is primary gives RPO and lost rows;
a probe writing every 200 ms through the DSN the application's pods run with (the Secret's value
when they started: it changes once the rolling restart is done) gives the failover time (first
success on the new primary - last success on the old one). The fault instant is the first
evidence of the outage after the fault command started: a failed write, or the primary refusing
the monitoring query polled every 200 ms. The fault and the
rebuild are commands the profile names (``drill.kill_primary``, ``drill.rebuild_standby``).
"""
from __future__ import annotations

import base64
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Sequence

from ...config.clock import utcnow
from ...platform.vault import SECRET_NAME, vault_key_to_secret_key
from ...errors import CheckFailed, ParameterError, RunbookTimeout
from ...records.secret import SecretValue
from .postgres import sql_errors
from .heartbeat import Beat, HeartbeatWriter, failover_gap, lost_rows, newest_beat

if TYPE_CHECKING:
    from ...platform.cluster import Cluster
    from ...config.profiles import Profile
    from ...platform.vault import Vault

__all__ = ["FailoverReport", "DatabaseFailover", "application_dsn", "run_drill_command", "promote", "SECRET_KEY"]

VAULT_KEY = "database_url"
SECRET_KEY = vault_key_to_secret_key(VAULT_KEY)



def run_drill_command(argv: Sequence[str], what: str, timeout_s: float = 120) -> str:
    """Run a command the profile names; ``runbook`` means this interpreter's runbook CLI."""
    if not argv:
        raise ParameterError(f"the profile names no command to {what} (drill.* in parameters/<env>.yaml)")
    argv = list(argv)
    if argv[0] == "runbook":
        argv = [sys.executable, "-m", "runbooks_lib.cli", *argv[1:]]
    try:
        result = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise CheckFailed(f"{what}: {type(e).__name__}: {e}") from e
    if result.returncode != 0:
        raise CheckFailed(f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()[-300:]}")
    return result.stdout.strip()


@sql_errors("promote the standby")
def promote(standby_dsn: str | SecretValue, timeout_s: int = 60) -> float:
    """``pg_promote(wait => true)`` on the standby; returns the seconds it took."""
    from ...platform.database import connect

    began = time.monotonic()
    with connect(standby_dsn, autocommit=True) as conn:
        if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
            raise CheckFailed("the standby is not in recovery: it is a primary already (split brain?)")
        if not conn.execute("SELECT pg_promote(true, %s)", (timeout_s,)).fetchone()[0]:
            raise CheckFailed(f"the standby did not finish its promotion in {timeout_s} s")
    return time.monotonic() - began


@dataclass
class FailoverReport:
    """A failover's timeline (UTC) and what it cost."""

    fault_at: datetime | None = None
    detected_at: datetime | None = None
    promoted_at: datetime | None = None
    repointed_at: datetime | None = None
    recovered_at: datetime | None = None  # first probe write acknowledged by the new primary
    last_old: Beat | None = None
    first_new: Beat | None = None
    lost_seqs: list[int] = field(default_factory=list)
    rpo_s: float | None = None
    probe_writes: int = 0
    probe_failures: int = 0

    @property
    def failover_s(self) -> float | None:
        if self.last_old is None or self.first_new is None:
            return None
        return (self.first_new.at - self.last_old.at).total_seconds()

    @property
    def lost_rows(self) -> int:
        return len(self.lost_seqs)

    def timeline(self) -> Any:
        import pandas as pd

        events = [("primary killed (fault)", self.fault_at), ("failure detected", self.detected_at),
                  ("standby promoted", self.promoted_at), ("application repointed", self.repointed_at),
                  ("last write on the old primary", self.last_old.at if self.last_old else None),
                  ("first write on the new primary", self.first_new.at if self.first_new else None)]
        rows = [{"event": name, "at (UTC)": at.strftime("%H:%M:%S.%f")[:-3] if at else "-",
                 "since fault (s)": round((at - self.fault_at).total_seconds(), 3) if at and self.fault_at else None}
                for name, at in events]
        return pd.DataFrame(rows).set_index("event")


class DatabaseFailover:
    """One failover of the profile's database, step by step (each step a notebook cell)."""

    def __init__(self, profile: "Profile", cluster: "Cluster", vault: "Vault", *, probe_interval_s: float = 0.2,
                 heartbeat_interval_s: float = 1.0) -> None:
        self.profile = profile
        self.cluster = cluster
        self.vault = vault
        db = profile.database
        if db.primary_dsn is None or db.standby_dsn is None:
            raise ParameterError("the profile names no primary and standby DSN (database.*): nothing to fail over")
        self.old_primary = SecretValue(db.primary_dsn.get_secret_value(), name="primary_dsn")
        self.standby = SecretValue(db.standby_dsn.get_secret_value(), name="standby_dsn")
        self.report = FailoverReport()
        self.heartbeat = HeartbeatWriter(lambda: (self.old_primary, self.standby), heartbeat_interval_s)
        self._running_dsn: list[SecretValue] = []
        self.probe = HeartbeatWriter(lambda: self._running_dsn, probe_interval_s, table="dr_probe")

    # -- what the application uses -------------------------------------------------------
    def application_dsn(self) -> list[SecretValue]:
        """The DSN in the application's Secret (read again on every reconnect, as a restarted pod does)."""
        return [application_dsn(self.cluster)]

    # -- the drill ---------------------------------------------------------------------
    def start_writers(self) -> str:
        self._running_dsn = self.application_dsn()
        self.heartbeat.start()
        self.probe.start()
        time.sleep(max(self.heartbeat.interval_s, self.probe.interval_s) * 2.5)
        return (f"heartbeat every {self.heartbeat.interval_s:g} s and probe every {self.probe.interval_s:g} s "
                f"writing on {self.probe._node or '?'}: {len(self.probe.beats())} probe writes so far")

    def inject_fault(self, poll_s: float = 0.2) -> str:
        """Run the fault command while watching the primary as monitoring would (``detected_at``)."""
        import threading

        started = utcnow()
        watching = threading.Thread(target=self._watch_primary, args=(poll_s, 120.0), daemon=True)
        watching.start()
        out = run_drill_command(self.profile.drill.kill_primary, "kill the primary")
        finished = utcnow()
        watching.join(timeout=30)
        failed = [at for at, _ in self.probe.failures + self.heartbeat.failures if at >= started]
        evidence = failed + ([self.report.detected_at] if self.report.detected_at else [])
        self.report.fault_at = min(evidence, default=finished)
        return (f"fault at {self.report.fault_at:%H:%M:%S.%f} UTC (first failed write; the command ran "
                f"{started:%H:%M:%S.%f}-{finished:%H:%M:%S.%f}): {out}")

    def _watch_primary(self, poll_s: float, timeout_s: float) -> None:
        import psycopg

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            try:
                with psycopg.connect(self.old_primary.reveal(), autocommit=True, connect_timeout=1) as conn:
                    conn.execute("SELECT 1")
            except psycopg.Error:
                self.report.detected_at = utcnow()
                return
            time.sleep(poll_s)

    def detection_s(self) -> float:
        """Seconds from the fault to the primary refusing a query (polled every 200 ms)."""
        if self.report.detected_at is None:
            raise RunbookTimeout("the primary still answered after the fault command: is it really down?")
        return max(0.0, self._since_fault(self.report.detected_at))

    def promote(self) -> float:
        took = promote(self.standby)
        self.report.promoted_at = utcnow()
        return took

    def repoint(self, timeout_s: float | None = None) -> list[str]:
        """The new primary's DSN into Vault and the application's Secret, then a rolling restart of
        every Deployment that reads it; returns the Deployments restarted."""
        from ...platform.rollout import wait_for_rollout

        if not self.cluster.dry_run:
            current = self.vault.read()
            self.vault.write({**current, VAULT_KEY: self.standby})
        body = {"data": {SECRET_KEY: base64.b64encode(self.standby.reveal().encode()).decode()}}
        self.cluster.patch_secret(SECRET_NAME, body, what="repoint the database DSN")
        users = [d["metadata"]["name"] for d in self.cluster.deployments() if _reads_secret(d, SECRET_NAME)]
        for name in users:
            self.cluster.restart_deployment(name)
        if not self.cluster.dry_run:
            for name in users:
                wait_for_rollout(self.cluster, name, timeout_s or self.profile.timeouts.rollout_s)
            self._running_dsn = self.application_dsn()  # the restarted pods run with it now
        self.report.repointed_at = utcnow()
        return users

    def wait_recovered(self, timeout_s: float = 60) -> float:
        """Wait for the probe's first write on the new primary; returns the failover time (s)."""
        assert self.report.fault_at is not None, "inject the fault first"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            last_old, first_new = failover_gap(self.probe.beats(), self.report.fault_at)
            if first_new is not None:
                self.report.last_old, self.report.first_new = last_old, first_new
                self.report.recovered_at = first_new.at
                return float(self.report.failover_s or 0.0)
            time.sleep(0.1)
        raise RunbookTimeout(f"no write through the application's DSN succeeded {timeout_s:.0f} s after the fault")

    def measure_loss(self) -> FailoverReport:
        """Lost rows and RPO from the heartbeat rows the new primary holds."""
        assert self.report.fault_at is not None
        before = [b for b in self.heartbeat.beats() if b.at <= self.report.fault_at]
        self.report.lost_seqs = lost_rows(self.standby, before) + lost_rows(
            self.standby, [b for b in self.probe.beats() if b.at <= self.report.fault_at], table="dr_probe")
        newest = newest_beat(self.standby, before=self.report.fault_at)
        self.report.rpo_s = round((self.report.fault_at - newest[1]).total_seconds(), 3) if newest else None
        self.report.probe_writes = len(self.probe.beats())
        self.report.probe_failures = len(self.probe.failures)
        return self.report

    def stop_writers(self) -> None:
        self.probe.stop()
        self.heartbeat.stop()

    def rebuild_standby(self) -> str:
        return run_drill_command(self.profile.drill.rebuild_standby, "rebuild the standby", timeout_s=300)

    def _since_fault(self, moment: datetime) -> float:
        assert self.report.fault_at is not None
        return round((moment - self.report.fault_at).total_seconds(), 3)


def application_dsn(cluster: "Cluster") -> SecretValue:
    """The database DSN the application's pods read, from its Secret (never printed)."""
    secret = cluster.secret(SECRET_NAME) or {}
    encoded = (secret.get("data") or {}).get(SECRET_KEY)
    if not encoded:
        raise CheckFailed(f"secret {SECRET_NAME} has no {SECRET_KEY}")
    return SecretValue(base64.b64decode(encoded).decode(), name=SECRET_KEY)


def _reads_secret(deployment: dict[str, Any], secret: str) -> bool:
    spec = ((deployment.get("spec") or {}).get("template") or {}).get("spec") or {}
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        for env in container.get("env") or []:
            ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {})
            if ref.get("name") == secret:
                return True
        for source in container.get("envFrom") or []:
            if (source.get("secretRef") or {}).get("name") == secret:
                return True
    return False
