"""The disaster-recovery drill, as the notebook calls it: one object, one method per step.

Scenarios: ``restore`` (backup -> scratch restore -> checks), ``pitr`` (base backup + WAL to a
time), ``failover`` (kill the primary, promote, repoint, rebuild), ``full`` (restore then
failover), ``region`` (the whole platform rebuilt in the DR region: :mod:`.region`). Every
figure is measured as DESIGN.md defines it: RPO from the heartbeat rows the recovered database
holds, lost rows from the acknowledged heartbeats it lacks, RTO from the fault to the first
verified write and read, with its parts reported apart.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from ...config.parameters import RunbookParams

from ...display import Parts, Said, Titled, titled
from ...config.clock import parse_time, utcnow
from ...errors import CheckFailed, ParameterError, StepSkipped
from ...records.secret import SecretValue
from .postgres import sql_errors, write_and_read
from .report import Measurement

if TYPE_CHECKING:
    from ...run.context import RunContext
    from .restore import RestoreReport
    from .store import Manifest

__all__ = ["DrillParams", "Drill", "Measurement", "FIGURES"]

Scenario = Literal["restore", "pitr", "failover", "full", "region"]
FIGURES = ("rpo_s", "rto_s", "failover_s", "lost_rows", "backup_bytes", "restore_s")


class DrillParams(RunbookParams):
    """The DR drill's parameters: which scenario, which backup, what it must meet."""

    scenario: Scenario = Field(description="restore | pitr | failover | full (= restore + failover) | "
                                           "region (the platform rebuilt in the DR region)")
    backup: str = Field("latest", min_length=1, description="'latest' (taken now when none exists), 'new', or a backup name")
    target_time: str = Field("", description="pitr: ISO time to recover to; empty = a time the drill marks itself")
    rto_target_s: float = Field(0, ge=0, le=7 * 24 * 3600, description="0 = the profile's (the guide: 4 h)")
    rpo_target_s: float = Field(0, ge=0, le=7 * 24 * 3600, description="0 = the profile's (the guide: 1 h)")
    dry_run: bool = False

    @field_validator("target_time")
    @classmethod
    def _a_past_time(cls, value: str) -> str:
        """An ISO time, UTC when it names no zone (as the page times of an incident), not in the
        future: checked here, before a backup is taken, not when the recovery reads it."""
        if not value.strip():
            return ""
        moment = parse_time(value.strip())
        if moment is None:
            raise ValueError(f"not an ISO 8601 time: {value!r} (e.g. 2026-12-01T14:03:00Z)")
        if moment > utcnow():
            raise ValueError(f"{value} is in the future: a database can only be recovered to a time that has passed")
        return moment.isoformat()


#: The parts of the drill each scenario takes. The notebook runs every step; a step whose part is not
#: in the scenario is recorded as skipped, saying so (no scenario test in the notebook).
SCENARIO_PARTS: dict[str, frozenset[str]] = {
    "restore": frozenset({"backup", "restore"}),
    "pitr": frozenset({"pitr"}),
    "failover": frozenset({"failover"}),
    "full": frozenset({"backup", "restore", "failover"}),
    "region": frozenset({"region"}),
}
#: The parts that take the primary down or build in the DR region: they need an approval where
#: the profile requires one.
CHANGING_PARTS = frozenset({"failover", "region"})


class _NotThisScenario:
    """The region's steps in a drill of another scenario: each is recorded as skipped."""

    def __init__(self, scenario: str) -> None:
        self.scenario = scenario

    def plot(self) -> None:
        """Nothing to draw: the region was not rebuilt."""
        return None

    def __getattr__(self, name: str) -> Any:
        def skipped(*_: Any, **__: Any) -> Any:
            raise StepSkipped(f"not part of scenario {self.scenario}")
        return skipped


@dataclass
class Drill:
    ctx: "RunContext"
    params: DrillParams
    timeline: list[tuple[datetime, str]] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    checks: list[Any] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        from ...platform.cluster import Cluster
        from ...platform.vault import Vault
        from .store import BackupStore, VaultSeal

        profile = self.ctx.profile
        assert profile is not None
        if profile.database.primary_dsn is None:
            raise ParameterError(f"profile {profile.name} names no database.primary_dsn")
        self.profile = profile
        self.vault = Vault(profile.vault)
        # Only manifests Vault vouches for are listed, picked as latest and restored.
        self.store = BackupStore(profile.backups.url, profile.backups.storage_options,
                                 seal=VaultSeal(self.vault, profile.backups))
        self.cluster = Cluster(profile, dry_run=self.params.dry_run)
        self.primary = SecretValue(profile.database.primary_dsn.get_secret_value(), name="primary_dsn")
        self.rto_target = self.params.rto_target_s or profile.drill.rto_target_s
        self.rpo_target = self.params.rpo_target_s or profile.drill.rpo_target_s
        self.heartbeat: Any = None
        self.acked: list[Any] = []  # the heartbeat rows acknowledged, once the heartbeat is stopped
        self.manifest: "Manifest | None" = None
        self.failover: Any = None
        self.dr_profile = self._dr_profile() if self.params.scenario == "region" else None

    def _dr_profile(self) -> Any:
        """The DR region's profile, read before anything changes: a drill without one is refused."""
        from ...config.profiles import load_profile

        name = self.profile.drill.dr_region
        if self.params.dry_run:
            raise ParameterError("scenario region has no dry run: it restores a database and rebuilds the platform "
                                 "in the DR region (and removes them afterwards); run it without dry_run")
        if not name:
            raise ParameterError(f"scenario region: profile {self.profile.name} names no drill.dr_region "
                                 "(the profile of the disaster-recovery region)")
        return load_profile(name)

    def _takes(self, part: str) -> None:
        """Go on only when this scenario takes ``part`` of the drill; else the step is skipped."""
        if part not in SCENARIO_PARTS[self.params.scenario]:
            raise StepSkipped(f"not part of scenario {self.params.scenario}")

    def mark(self, what: str, at: datetime | None = None) -> datetime:
        moment = at or utcnow()
        self.timeline.append((moment, what))
        return moment

    # -- steady state ------------------------------------------------------------------
    @sql_errors("read the steady state")
    def steady_state(self) -> Any:
        """Replication, Vault, backups and WAL archiving before anything is touched."""
        import pandas as pd

        from ...platform.database import connect, replication_status

        standby = self.profile.database.standby_dsn
        rep = replication_status(self.primary, SecretValue(standby.get_secret_value()) if standby else None)
        vault = self.vault.health()
        backups = self.store.list()
        with connect(self.primary, autocommit=True) as conn:
            archived, failed, failed_at = conn.execute(
                "SELECT last_archived_time, last_failed_wal, last_failed_time FROM pg_stat_archiver").fetchone()
        newest = backups[0].taken if backups else None
        rows = [
            ("primary reachable", rep.primary_reachable, ""),
            ("standby streaming", rep.healthy, f"lag {rep.lag_bytes} bytes, {rep.lag_seconds} s"),
            ("Vault unsealed", bool(vault.reachable and not vault.sealed), vault.address),
            ("backups stored", len(backups), f"newest {newest:%Y-%m-%d %H:%M} UTC" if newest else "none yet"),
            ("backups refused (manifest not authentic)", len(self.store.refused),
             "; ".join(f"{name}: {why}" for name, why in sorted(self.store.refused.items())) or "none"),
            ("WAL archiving", failed is None or (archived is not None and archived > failed_at),
             f"last archived {archived:%H:%M:%S} UTC" if archived else "nothing archived yet"),
        ]
        if self.store.refused:
            self.findings.append(f"{len(self.store.refused)} backup(s) in {self.store.url} have a manifest Vault does "
                                 f"not vouch for ({', '.join(sorted(self.store.refused))}): edited, renamed or "
                                 "forged; they are never picked or restored")
        self.mark("steady state checked")
        return pd.DataFrame(rows, columns=["check", "value", "detail"]).set_index("check")

    # -- approval (profiles that require it: production) ------------------------------------
    def describe_plan(self) -> str:
        """What this drill will do to the platform, for its approval gate."""
        scenario = self.params.scenario
        parts = SCENARIO_PARTS[scenario]
        lines = [f"disaster-recovery drill, scenario {scenario}, on {self.profile.name}:"]
        if "restore" in parts:
            lines.append("- a backup restored into a scratch database, checked, then dropped")
        if "failover" in parts:
            lines += [f"- the primary taken down: {' '.join(self.profile.drill.kill_primary) or '(no command)'}",
                      "- the standby promoted; the application's DSN moved to it in Vault "
                      f"({self.profile.vault.path}) and the Secret, its Deployments restarted",
                      f"- a new standby built: {' '.join(self.profile.drill.rebuild_standby) or '(no command)'}"]
        if "region" in parts:
            lines += [f"- in the DR region ({self.profile.drill.dr_region}): a database recovered from the off-site "
                      "backup, its DSN written to the DR Vault, the platform created from the off-site manifests, "
                      "all removed again at the end; the primary region is only read"]
        return "\n".join(lines)

    def approval(self) -> Any:
        """Where the profile requires it, someone else approves a drill that takes the primary down
        or builds in the DR region (``ctx.gate``: headless, the run stops here, exit 3); a drill that
        only reads and restores into scratch needs none."""
        if not SCENARIO_PARTS[self.params.scenario] & CHANGING_PARTS:
            return Said(f"scenario {self.params.scenario} changes nothing in service: no approval needed")
        return self.ctx.gate("drill", self.describe_plan, state=self.database_facts)

    def database_facts(self) -> dict[str, Any]:
        """What an approval of the drill rests on: which node is primary and which standby (a role
        change since is drift, and a resume refuses it)."""
        from urllib.parse import urlsplit

        def where(dsn: Any) -> str:
            if dsn is None:
                return "-"
            parts = urlsplit(dsn.get_secret_value())
            return f"{parts.hostname}:{parts.port}"

        return {"primary": where(self.profile.database.primary_dsn), "standby": where(self.profile.database.standby_dsn),
                "scenario": self.params.scenario}

    def start_heartbeat(self) -> str:
        from .heartbeat import HeartbeatWriter

        standby = self.profile.database.standby_dsn
        candidates = [self.primary] + ([SecretValue(standby.get_secret_value())] if standby else [])
        self.heartbeat = HeartbeatWriter(lambda: candidates, 1.0).start()
        self.ctx.on_finish(self.stop_heartbeat)
        time.sleep(2.2)  # a few rows before anything else happens
        self.mark("heartbeat started")
        return f"heartbeat writing every second: {len(self.heartbeat.beats())} rows so far"

    def stop_heartbeat(self) -> None:
        """Stop writing; the rows acknowledged so far stay readable (``acked_beats``)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
            self.acked = self.heartbeat.beats()
            self.heartbeat = None

    def acked_beats(self, moment: datetime) -> list[Any]:
        """Heartbeat rows the primary acknowledged at or before ``moment``."""
        beats = self.heartbeat.beats() if self.heartbeat is not None else self.acked
        return [b for b in beats if b.at <= moment]

    # -- region scenario ---------------------------------------------------------------
    def region_failover(self) -> Any:
        """The region scenario's steps (runbooks_lib.procedures.dr.region), against the DR region the profile names."""
        from .region import RegionFailover

        if self.dr_profile is None:
            return _NotThisScenario(self.params.scenario)
        return RegionFailover(self, self.dr_profile)

    # -- restore scenario --------------------------------------------------------------
    def pick_backup(self) -> "Manifest":
        from .backups import take_backup

        choice = self.params.backup
        existing = self.store.list()
        if choice == "new" or (choice == "latest" and not existing):
            if self.params.dry_run:
                raise ParameterError("dry run: no backup is taken; name an existing one or run without dry_run")
            self.manifest = take_backup(self.primary, self.vault, self.profile.backups, store=self.store)
            self.mark(f"backup {self.manifest.name} taken ({self.manifest.size} bytes)")
        else:
            self.manifest = self.store.manifest(choice)
            self.mark(f"backup {self.manifest.name} picked (taken {self.manifest.taken_at})")
        self.ctx.figure("backup_bytes", self.manifest.size)
        return self.manifest

    def take_or_pick_backup(self) -> Said:
        """The backup the drill restores: taken now (``new``, or ``latest`` with none stored), or named."""
        self._takes("backup")
        manifest = self.pick_backup()
        return Said(f"{manifest.name}: {manifest.size} bytes, sha256 {manifest.sha256[:16]}..., source LSN "
                    f"{manifest.source_lsn}, {sum(manifest.row_counts.values())} rows")

    def restore_and_verify(self) -> Any:
        """The primary declared lost, the backup restored into scratch and checked: the checks."""
        self._takes("restore")
        return self.restore().table()

    def restore(self) -> "RestoreReport":
        """Declare the primary lost now (the fault), restore the backup into scratch and check it."""
        from .heartbeat import lost_rows, newest_beat
        from .postgres import with_database
        from .restore import Check, restore_and_verify

        assert self.manifest is not None, "pick a backup first"
        fault = self.mark("fault declared: the primary is lost, restore from backup")
        acked = self.acked_beats(fault)
        measured: dict[str, Any] = {}

        def also(scratch_dsn: str) -> list[Any]:
            newest = newest_beat(scratch_dsn, before=fault)
            if newest is None:  # a backup older than any heartbeat: its snapshot's own clock
                assert self.manifest is not None
                self.findings.append("the backup holds no heartbeat row: RPO from the snapshot time in its manifest")
                newest = (0, datetime.fromisoformat(self.manifest.source_time))
            measured["rpo_s"] = round((fault - newest[1]).total_seconds(), 3)
            measured["lost"] = len(lost_rows(scratch_dsn, acked)) if newest[0] else None
            ok = write_and_read(scratch_dsn)
            measured["verified_at"] = utcnow()
            return [Check("write and read on the restored database", ok, "a row written and read back")]

        scratch = self.profile.backups.scratch_dsn
        server = SecretValue(scratch.get_secret_value()) if scratch else self.primary
        report = restore_and_verify(self.store, self.manifest, self.vault, self.profile.backups,
                                    with_database(server, "postgres"), extra_checks=also)
        self.checks += report.checks
        verified = measured.get("verified_at") or utcnow()
        self.mark("restore verified" if report.passed else "restore checks failed", verified)
        rto = round((verified - fault).total_seconds(), 3)
        self.ctx.figure("restore_s", report.timings.get("total_s"))
        self.ctx.figure("rto_s", rto)
        self.ctx.figure("rpo_s", measured.get("rpo_s"))
        self.ctx.figure("lost_rows", measured.get("lost"))
        self.measurements += [
            Measurement("restore RTO (fault -> verified write and read)", rto, self.rto_target, "s"),
            Measurement("restore RPO (fault -> newest heartbeat restored)", measured.get("rpo_s"), self.rpo_target, "s"),
            Measurement("  fetch + sha256", report.timings.get("fetch_s"), None, "s"),
            Measurement("  pg_restore", report.timings.get("restore_s"), None, "s"),
            Measurement("  validation", report.timings.get("validation_s"), None, "s"),
            Measurement("heartbeat rows lost (restore)", measured.get("lost"), None, "rows"),
        ]
        if report.passed:
            self.stamp_proof(self.store, self.manifest, report.checks, report.timings.get("total_s"),
                             sum(report.row_counts.values()))
        return report

    def stamp_proof(self, store: Any, proved: Any, checks: list[Any], restore_s: float | None,
                    rows: int | None) -> None:
        """Every check passed: the backup's entry in the store gets this run's signed stamp (.proof);
        a dry run says what it would stamp."""
        from .proof import stamp_backup
        from .store import VaultSeal

        stamp = stamp_backup(store, proved, VaultSeal(self.vault, self.profile.backups), run_id=self.ctx.run_id,
                             scenario=self.params.scenario, checks=checks, restore_s=restore_s, rows=rows,
                             dry_run=self.params.dry_run)
        done = "would be stamped (dry run)" if self.params.dry_run else "stamped"
        self.mark(f"backup {stamp.backup} {done} as proven by run {stamp.run_id}")

    # -- failover scenario -------------------------------------------------------------
    def fail_over(self) -> Any:
        """The primary killed under traffic, the standby promoted, the application repointed: the timeline."""
        from .failover import DatabaseFailover

        self._takes("failover")
        if self.params.dry_run:
            raise StepSkipped("dry run: the primary is not taken down")

        fo = DatabaseFailover(self.profile, self.cluster, self.vault)
        self.failover = fo
        self.ctx.on_finish(fo.stop_writers)
        fo.start_writers()
        fo.inject_fault()
        self.mark("primary killed (fault)", fo.report.fault_at)
        fo.detection_s()
        self.mark("failure detected", fo.report.detected_at)
        promote_s = fo.promote()
        self.mark(f"standby promoted ({promote_s:.2f} s)", fo.report.promoted_at)
        restarted = fo.repoint()
        self.mark(f"application repointed, {len(restarted)} deployments restarted", fo.report.repointed_at)
        failover_s = fo.wait_recovered()
        self.mark("first write on the new primary", fo.report.recovered_at)
        report = fo.measure_loss()
        fo.stop_writers()
        self.ctx.figure("failover_s", round(failover_s, 3))
        self.ctx.figure("lost_rows", report.lost_rows + int(self.ctx.figures.get("lost_rows") or 0))
        rto = round((report.recovered_at - report.fault_at).total_seconds(), 3)
        self.ctx.figure("rto_s", max(rto, float(self.ctx.figures.get("rto_s") or 0)))
        if self.ctx.figures.get("rpo_s") is None or (report.rpo_s or 0) > self.ctx.figures["rpo_s"]:
            self.ctx.figure("rpo_s", report.rpo_s)
        target = self.profile.drill.failover_target_s
        self.measurements += [
            Measurement("failover (last write old -> first write new)", round(failover_s, 3), target, "s"),
            Measurement("  detection", fo.detection_s(), None, "s"),
            Measurement("  promotion", round(promote_s, 3), None, "s"),
            Measurement("  repoint (Secret + rolling restart)",
                        round((report.repointed_at - report.promoted_at).total_seconds(), 3), None, "s"),
            Measurement("failover RPO (fault -> newest heartbeat on the new primary)", report.rpo_s, self.rpo_target, "s"),
            Measurement("rows lost at failover (heartbeat + probe)", report.lost_rows, None, "rows"),
        ]
        if report.lost_rows:
            self.findings.append(f"{report.lost_rows} acknowledged rows were lost at failover (asynchronous "
                                 "replication): synchronous_commit with a synchronous standby would keep them")
        return report.timeline()

    def rebuild_standby(self) -> str:
        """After a failover: a new standby streaming from the promoted primary."""
        from ...platform.database import replication_status
        from ...config.profiles import load_profile

        if self.failover is None:
            raise StepSkipped("no failover in this drill: the standby is as it was")
        out = self.failover.rebuild_standby()
        fresh = load_profile(self.profile.name)  # the platform's DSNs follow the new roles
        db = fresh.database
        status = replication_status(SecretValue(db.primary_dsn.get_secret_value()),
                                    SecretValue(db.standby_dsn.get_secret_value()))
        self.mark("standby rebuilt" if status.healthy else "standby rebuild NOT healthy")
        if not status.healthy:
            raise CheckFailed(f"after the rebuild the standby is not streaming: {status}")
        return f"{out}; replication healthy, lag {status.lag_bytes} bytes"

    def retention_plan(self) -> Any:
        """What the guide's retention would keep and delete among the stored backups (nothing deleted)."""
        from .retention import prune_backups

        policy = self.profile.backups.retention
        return prune_backups(self.store, utcnow(), daily_days=policy.daily_days, weekly_weeks=policy.weekly_weeks,
                             monthly_months=policy.monthly_months, apply=False)

    # -- point in time -----------------------------------------------------------------
    @sql_errors("point-in-time recovery")
    def point_in_time(self) -> Any:
        """A base backup, rows written before and after a target time, the WAL archived, and a scratch
        instance replayed to the target: rows before it present, rows after it absent."""
        import pandas as pd

        self._takes("pitr")
        from ...platform.database import connect
        from .pitr import archived_up_to, force_wal_switch, recover_to_time, take_base_backup

        base = take_base_backup(self.primary, self.vault, self.profile.backups)
        self.mark(f"base backup taken ({base.size} bytes)")
        self.ctx.figure("backup_bytes", base.size)
        with connect(self.primary, autocommit=True) as conn:
            conn.execute("CREATE TABLE IF NOT EXISTS dr_pitr_marker (id bigserial PRIMARY KEY, "
                         "side text NOT NULL, at timestamptz NOT NULL DEFAULT clock_timestamp())")
            conn.execute("INSERT INTO dr_pitr_marker (side) SELECT 'before' FROM generate_series(1, 5)")
            time.sleep(0.2)
            target = (datetime.fromisoformat(self.params.target_time) if self.params.target_time else utcnow())
            time.sleep(0.2)
            conn.execute("INSERT INTO dr_pitr_marker (side) SELECT 'after' FROM generate_series(1, 5)")
            expected_before = conn.execute("SELECT count(*) FROM dr_pitr_marker WHERE at <= %s", (target,)).fetchone()[0]
        self.mark(f"target time {target:%H:%M:%S.%f} UTC")
        archived_up_to(self.primary, force_wal_switch(self.primary))
        instance = recover_to_time(base, target, self.vault, self.profile.backups)
        try:
            with connect(instance.dsn, autocommit=True) as conn:
                before, after = conn.execute(
                    "SELECT count(*) FILTER (WHERE at <= %s), count(*) FILTER (WHERE at > %s) FROM dr_pitr_marker",
                    (target, target)).fetchone()
        finally:
            instance.stop()
        from .restore import Check

        self.checks += [Check("rows before the target present", before == expected_before,
                              f"{before} of {expected_before}"),
                        Check("rows after the target absent", after == 0, f"{after} found")]
        self.mark("point-in-time recovery checked")
        if before == expected_before and after == 0:
            from .store import BackupStore

            self.stamp_proof(BackupStore(str(base.path.parent)), base, self.checks[-2:], instance.replay_s, before)
        self.ctx.figure("restore_s", instance.replay_s)
        self.measurements.append(Measurement("PITR restore + replay", instance.replay_s, None, "s"))
        return pd.DataFrame([{"check": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks[-2:]])

    # -- report ------------------------------------------------------------------------
    def results(self) -> Any:
        """Pass or fail per check and measurement, and the findings (raise_on_failure fails the run)."""
        import pandas as pd

        rows = [{"check": c.name, "value": c.detail, "target": "", "passed": c.passed} for c in self.checks]
        rows += [{"check": m.check, "value": "-" if m.value is None else f"{m.value} {m.unit}",
                  "target": "" if m.target is None else f"<= {m.target:g} {m.unit}", "passed": m.passed}
                 for m in self.measurements]
        table = pd.DataFrame(rows).set_index("check")
        self.failed = [r["check"] for r in rows if r["passed"] is False]
        return Parts(titled("Checks and measurements against their targets", table),
                     Said("\n".join(f"finding: {f}" for f in self.findings) or "finding: none"))

    def timeline_table(self) -> Titled:
        import pandas as pd

        self.stop_heartbeat()  # the drill is over: its heartbeat rows are what they are
        start = min(t for t, _ in self.timeline) if self.timeline else utcnow()
        frame = pd.DataFrame([{"UTC": t.strftime("%H:%M:%S.%f")[:-3], "+s": round((t - start).total_seconds(), 3),
                               "event": what} for t, what in sorted(self.timeline, key=lambda x: x[0])])
        return titled(f"Timeline of scenario {self.params.scenario} (RTO target {self.rto_target:g} s, "
                      f"RPO target {self.rpo_target:g} s)", frame)

    def trend(self) -> Titled:
        """This drill's figures against earlier drills of this environment (oldest first)."""
        return titled("This drill against earlier ones", trend(self.ctx.env, {"scenario": self.params.scenario,
                                                                                **self.ctx.figures}))

    def plot_trend(self) -> Any:
        """RTO, RPO and failover time of each drill, oldest first."""
        return plot_trend(self.trend().frame)

    def raise_on_failure(self) -> str:
        self.results()
        if self.failed:
            raise CheckFailed(f"drill failed: {'; '.join(self.failed)}")
        return f"drill {self.params.scenario}: every check passed"


def trend(env: str, current: dict[str, Any] | None = None, limit: int = 20) -> Any:
    """This drill's figures against earlier drills from the records catalog (oldest first)."""
    import pandas as pd

    from ...records.catalog import Catalog, RecordFilter

    rows = Catalog().rows(RecordFilter(env=env, runbook="dr_drill"))[:limit]
    data = [{"started": r.get("started"), "scenario": (r.get("parameters") or {}).get("scenario"),
             "outcome": r.get("outcome"), **{f: (r.get("figures") or {}).get(f) for f in FIGURES}} for r in rows]
    if current is not None:
        data.insert(0, {"started": "this drill", "scenario": current.get("scenario"), "outcome": "now",
                        **{f: current.get(f) for f in FIGURES}})
    return pd.DataFrame(list(reversed(data)), columns=["started", "scenario", "outcome", *FIGURES])


def plot_trend(frame: Any) -> Any:
    """RTO, RPO and failover time of each drill, oldest first, with the targets as lines."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(12, 3.2))
    labels = [str(s)[:16] for s in frame["started"]]
    for ax, column in zip(axes, ("rto_s", "rpo_s", "failover_s")):
        values = [float(v) if v is not None and v == v else float("nan") for v in frame[column]]
        ax.plot(range(len(values)), values, marker="o")
        ax.set_title(column)
        ax.set_xticks(range(len(values)), labels, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel("seconds")
    fig.suptitle("Disaster-recovery drills, oldest first")
    fig.tight_layout()
    return fig
