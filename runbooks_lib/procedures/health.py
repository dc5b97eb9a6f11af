"""The read-only health check: is every part of Veza where the guide says it should be?

Each method looks at one part (workloads, events, golden signals, Vault, database, Redis,
backups), returns a table for the record and adds findings; ``verdict`` ends the check with every
finding and the numbers behind it. Nothing here changes anything.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ..config.clock import utcnow
from ..config.parameters import RunbookParams
from ..display import Titled, titled
from ..errors import BackendUnavailable, CheckFailed, NotFound
from ..platform.cluster import Cluster, deployment_state, pod_state

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ..run.context import RunContext

__all__ = ["HealthParams", "HealthCheck", "Finding"]


@dataclass(frozen=True)
class Finding:
    severity: Literal["fail", "warn"]
    part: str
    message: str


class HealthParams(RunbookParams):
    """The health check's parameters: read-only, but a window of "inf" minutes would never end."""

    service: str | None = Field(None, description="One service of parameters/services.yaml; None or '' for all")
    window_minutes: float = Field(5, gt=0, le=24 * 60, description="How far back to look at events and metrics")
    signal_window: str = Field("1m", pattern=r"^[1-9][0-9]{0,3}[smh]$", description="Rate window of the golden signals")

    @field_validator("service")
    @classmethod
    def _all_when_empty(cls, value: str | None) -> str | None:
        return value or None


class HealthCheck:
    """One health check of the environment a run targets."""

    def __init__(self, ctx: "RunContext", params: HealthParams | None = None) -> None:
        self.ctx = ctx
        self.params = params or HealthParams()
        self.profile = ctx.profile
        self.services = [self.params.service] if self.params.service else list(ctx.profile.services.services)
        self.cluster = Cluster(ctx.profile)
        self.findings: list[Finding] = []

    def _find(self, severity: Literal["fail", "warn"], part: str, message: str) -> None:
        self.findings.append(Finding(severity, part, message))

    def workloads(self) -> Titled:
        """Per service: deployment replicas and readiness, pods, restarts, versions."""
        import pandas as pd

        deployments = self.cluster.deployments()
        pods = self.cluster.pods()
        rows = []
        for service in self.services:
            # Blue-green renames the live Deployment <service>-<colour>: find it by its pods' app label.
            live = self._live_deployment(service, deployments)
            if live is None:
                self._find("fail", service, "no deployment")
                rows.append({"service": service, "desired": None, "ready": None})
                continue
            state = deployment_state(live)
            mine = [pod_state(p) for p in pods if (p["metadata"].get("labels") or {}).get("app") == service]
            restarts = sum(p.restarts for p in mine)
            waiting = sorted({p.waiting_reason for p in mine if p.waiting_reason})
            rows.append({
                "service": service, "deployment": state.name, "desired": state.desired, "ready": state.ready, "available": state.available,
                "updated": state.updated, "pods": len(mine), "restarts": restarts,
                "versions": ", ".join(sorted({p.version or "?" for p in mine})), "waiting": ", ".join(waiting),
                "revision": state.revision,
            })
            if state.ready < state.desired:
                self._find("fail", service, f"{state.ready}/{state.desired} replicas ready")
            if state.deadline_exceeded:
                self._find("fail", service, "rollout exceeded its progress deadline")
            if waiting:
                self._find("fail", service, f"containers waiting: {', '.join(waiting)}")
            if restarts:
                self._find("warn", service, f"{restarts} container restart(s)")
        self.ctx.figure("services_ready", sum(1 for r in rows if r.get("ready") is not None and r["ready"] >= (r["desired"] or 0)))
        return titled("Deployments and pods", pd.DataFrame(rows).set_index("service"))

    def _live_deployment(self, service: str, deployments: list[dict[str, Any]]) -> dict[str, Any] | None:
        """The Deployment whose pods the Service selects (by colour for blue-green)."""
        mine = [d for d in deployments
                if (d["spec"]["template"]["metadata"].get("labels") or {}).get("app") == service or d["metadata"]["name"] == service]
        if len(mine) <= 1:
            return mine[0] if mine else None
        selector = (self.cluster.service(service).get("spec") or {}).get("selector") or {}
        colour = selector.get("color")
        chosen = [d for d in mine if (d["spec"]["template"]["metadata"].get("labels") or {}).get("color") == colour]
        return (chosen or mine)[0]

    def events(self, minutes: float | None = None, newest: int = 20) -> Titled:
        """Recent events, the ``newest`` of the last ``minutes`` (the parameters' window): a Warning
        (what a real cluster reports: Unhealthy, BackOff, Failed...) is a finding."""
        import pandas as pd

        minutes = minutes or self.params.window_minutes

        rows = [
            {
                "last seen": e.get("lastTimestamp") or e.get("eventTime"),
                "type": e.get("type"),
                "reason": e.get("reason"),
                "object": f"{(e.get('involvedObject') or {}).get('kind')}/{(e.get('involvedObject') or {}).get('name')}",
                "count": e.get("count") or 1,
                "message": (e.get("message") or "")[:120],
            }
            for e in self.cluster.events(since=timedelta(minutes=minutes))
        ]
        warnings = [r for r in rows if r["type"] == "Warning"]
        if warnings:
            reasons = sorted({r["reason"] for r in warnings})
            self._find("warn", "events", f"{len(warnings)} warning event(s) in {minutes:g} min: {', '.join(reasons)}")
        frame = pd.DataFrame(rows, columns=["last seen", "type", "reason", "object", "count", "message"])
        return titled(f"Recent events (the {newest} newest of {minutes:g} min)", frame.tail(newest))

    def golden_signals(self, window: str | None = None) -> Titled:
        """Traffic, success rate and p99 per service against the profile's SLOs."""
        import pandas as pd

        window = window or self.params.signal_window

        from ..platform.metrics import Metrics
        from ..platform.signals import golden_signals

        metrics = Metrics.of(self.profile.prometheus)
        slo = self.profile.slo
        rows = []
        for service in self.services:
            signals = golden_signals(metrics, service, window)
            ok = signals.within(slo.success_rate_min, slo.p99_latency_max_ms)
            rows.append({
                "service": service, "requests/s": signals.requests_per_s,
                "success rate %": None if signals.success_rate is None else round(100 * signals.success_rate, 3),
                f"SLO ≥ {100 * slo.success_rate_min:g} %": None if signals.success_rate is None else signals.success_rate >= slo.success_rate_min,
                "p99 ms": None if signals.p99_ms is None else round(signals.p99_ms, 1),
                f"SLO ≤ {slo.p99_latency_max_ms:g} ms": None if signals.p99_ms is None else signals.p99_ms <= slo.p99_latency_max_ms,
            })
            if signals.success_rate is None or signals.p99_ms is None:
                self._find("warn", service, f"no traffic data over {window}")
            elif not ok:
                self._find(
                    "fail", service,
                    f"success rate {100 * signals.success_rate:.2f} % (SLO ≥ {100 * slo.success_rate_min:g} %), "
                    f"p99 {signals.p99_ms:.0f} ms (SLO ≤ {slo.p99_latency_max_ms:g} ms)",
                )
        return titled(f"Golden signals vs SLOs (over {window})", pd.DataFrame(rows).set_index("service"))

    def plot_golden_signals(self, minutes: float | None = None, window: str | None = None) -> "Figure":
        """Request rate, success rate and p99 per service over the last ``minutes`` (runbooks_lib.platform.signals)."""
        from ..platform.metrics import Metrics
        from ..platform.signals import plot_signal_panels, signal_panels

        minutes, window = minutes or self.params.window_minutes, window or self.params.signal_window
        jobs = "|".join(self.services)
        panels = signal_panels(Metrics.of(self.profile.prometheus), f'job=~"{jobs}"', by="job", minutes=minutes,
                               window=window, signals=("requests_per_s", "success_rate", "p99_ms"), slo=self.profile.slo)
        return plot_signal_panels(panels)

    def vault(self) -> Titled:
        """Vault reachable, initialised and unsealed; the runbooks' secret path readable (keys only)."""
        import pandas as pd

        from ..platform.vault import Vault

        vault = Vault(self.profile.vault)
        health = vault.health()
        row: dict[str, Any] = {"address": health.address, "reachable": health.reachable,
                               "initialized": health.initialized, "sealed": health.sealed, "version": health.version}
        if not health.reachable:
            self._find("fail", "vault", f"unreachable at {health.address}")
        elif health.sealed:
            self._find("fail", "vault", "sealed")
        else:
            try:
                row["keys at " + self.profile.vault.path] = len(vault.read())
            except (NotFound, BackendUnavailable) as e:
                self._find("fail", "vault", str(e))
        return titled("Vault", pd.DataFrame([row]))

    def database(self, max_lag_s: float = 30) -> Titled:
        """Primary reachable, standby streaming, replication lag."""
        import pandas as pd

        from ..platform.database import replication_status

        db = self.profile.database
        if db.primary_dsn is None or not db.primary_dsn.get_secret_value():
            self._find("warn", "database", "the profile names no database")
            return titled("Database replication", pd.DataFrame())
        standby = db.standby_dsn.get_secret_value() if db.standby_dsn else None
        status = replication_status(db.primary_dsn.get_secret_value(), standby or None)
        if not status.primary_reachable:
            self._find("fail", "database", "primary unreachable")
        if standby and not (status.standby_reachable and status.standby_in_recovery and status.streaming_standbys):
            self._find("fail", "database", "standby not streaming from the primary")
        if status.lag_seconds is not None and status.lag_seconds > max_lag_s:
            self._find("warn", "database", f"replication lag {status.lag_seconds:.1f} s > {max_lag_s:g} s")
        self.ctx.figure("replication_lag_bytes", status.lag_bytes)
        return titled("Database replication", pd.DataFrame([{
            "primary reachable": status.primary_reachable, "standby reachable": status.standby_reachable,
            "standby in recovery": status.standby_in_recovery, "streaming standbys": status.streaming_standbys,
            "lag bytes": status.lag_bytes, "lag s": status.lag_seconds,
        }]))

    def redis(self) -> Titled:
        """Redis (sessions and cache) answers PING; its latency, memory and keys."""
        import pandas as pd

        from urllib.parse import urlsplit

        from ..platform.redis import ping_redis
        from ..records.redaction import register_secret

        url = self.profile.redis.url.get_secret_value() if self.profile.redis.url else ""
        if not url:
            self._find("warn", "redis", "the profile names no Redis")
            return titled("Redis", pd.DataFrame())
        register_secret([url] + [p for p in [urlsplit(url).password] if p])  # never in the record
        health = ping_redis(url)
        if not health.reachable:
            self._find("fail", "redis", f"unreachable at {health.address} ({health.error})")
        self.ctx.figure("redis_ping_ms", health.ping_ms)
        return titled("Redis", pd.DataFrame([{
            "address": health.address, "reachable": health.reachable, "ping ms": health.ping_ms,
            "version": health.version, "used memory MB": health.used_memory_mb, "keys": health.keys,
        }]))

    def backups(self, now: datetime | None = None) -> Titled:
        """Newest backup's age against the RPO, newest proven backup's against the restore-test
        interval, WAL archive lag against the RPO (runbooks_lib.procedures.dr.freshness)."""
        import pandas as pd

        from ..errors import RunbookError
        from .dr.freshness import backup_rows, rows_table, shown, wal_archive_row
        from .dr.inventory import inventory_of_profile

        settings, rpo_s = self.profile.backups, self.profile.drill.rpo_target_s
        if not settings.url:
            self._find("warn", "backups", "the profile names no backup storage (backups.url)")
            return titled("Backups and WAL archiving", pd.DataFrame())
        now = now or utcnow()
        try:
            rows = backup_rows(inventory_of_profile(self.profile), now, max_age_s=settings.full_backup_max_age_h * 3600,
                               interval_s=settings.restore_test_interval_days * 86400, none_yet=settings.none_yet)
            primary = self.profile.database.primary_dsn
            if primary is not None and primary.get_secret_value():
                rows.append(wal_archive_row(primary.get_secret_value(), rpo_s,
                                            archive_expected=bool(settings.wal_archive_url)))
        except RunbookError as e:
            self._find("fail", "backups", f"cannot be read: {e}")
            return titled("Backups and WAL archiving", pd.DataFrame())
        for row in rows:
            self.ctx.figure(row.check.lower().replace(" ", "_") + "_s", row.value_s)
            if not row.passed:
                value = "none" if row.value_s is None else shown(row.value_s)
                self._find("fail" if row.severity == "fail" else "warn", "backups",
                           f"{row.check} {value} (limit {shown(row.limit_s)}): {row.detail}")
        return titled("Backups and WAL archiving (guide §10: RPO, monthly restore test)", rows_table(rows))

    def findings_table(self) -> Titled:
        import pandas as pd

        return titled("Findings", pd.DataFrame([f.__dict__ for f in self.findings], columns=["severity", "part", "message"]))

    def conclusion(self) -> str:
        """Healthy, or CheckFailed naming every failing part with its numbers."""
        failures = [f for f in self.findings if f.severity == "fail"]
        self.ctx.figure("failed_checks", len(failures))
        self.ctx.figure("warnings", len(self.findings) - len(failures))
        if failures:
            raise CheckFailed("unhealthy: " + "; ".join(f"{f.part}: {f.message}" for f in failures))
        warned = len(self.findings) - len(failures)
        return "healthy" + (f", with {warned} warning(s)" if warned else "")
