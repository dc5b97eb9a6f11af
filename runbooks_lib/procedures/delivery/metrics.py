"""The delivery metrics runbook's steps: read the records once, then each group's table and plot."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...config.clock import utcnow
from ...display import Said, Titled
from .report import DeliveryParams, DeliveryReport, commit_times, delivery_report

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from ...run.context import RunContext
    from .backups import BackupProofs

__all__ = ["DeliveryMetrics"]

# The plot of each group of the notebook, by the name of its table (plots.plot_<name>).
_PLOTS = {"frequency": "plot_frequency", "lead_time": "plot_lead_time", "change_failure": "plot_change_failure",
          "recovery": "plot_recovery", "success": "plot_success", "rollbacks": "plot_rollbacks",
          "canary": "plot_canary_aborts", "drills": "plot_drills"}


class DeliveryMetrics:
    """One delivery metrics run over the records catalog, as its parameters say."""

    def __init__(self, ctx: "RunContext", params: DeliveryParams) -> None:
        self.ctx = ctx
        self.params = params
        self.report: DeliveryReport | None = None
        self.judge_report: Any = None  # judging.replay.JudgeReport, read by judges()
        self.backups: "BackupProofs | None" = None

    def read(self) -> Titled:
        """The records of the window, turned into deployments, failed changes and recoveries; the overview."""
        p = self.params
        self.report = delivery_report(env=None if p.all_environments else self.ctx.env, service=p.service,
                                      since=p.since, until=p.until, commits=commit_times(self.ctx.profile))
        return self.table("overview")

    def read_backups(self) -> Titled:
        """The profile's backup store, read with its Vault: how many backups a drill proved, the newest
        proof's age; with the drills' restore seconds (records). Unknown, saying why, if unreadable."""
        from .backups import read_backup_proofs

        self._report()
        self.backups = read_backup_proofs(self.ctx.profile)
        return self.table("backups")

    def table(self, name: str) -> Titled:
        """One group's table, titled (``overview``, ``frequency``, ``lead_time``, ``change_failure``,
        ``failed_changes``, ``recovery``, ``success``, ``rollbacks``, ``canary``, ``drills``, ``backups``)."""
        if name == "backups":
            from .backups import backups_table

            frame = backups_table(self._backups(), self._report().events.drills, utcnow())
            return Titled(frame.attrs["title"], frame)
        return self._report().titled(name)

    def plot(self, name: str) -> "Figure":
        """One group's plot (the names of ``table`` that have one)."""
        from . import plots

        if name == "backups":
            from .backups import plot_backups

            return plot_backups(self._report().events.drills)
        if name not in _PLOTS:
            raise ValueError(f"no plot named {name!r}; there are: {', '.join(_PLOTS)}")
        drawn: Any = getattr(plots, _PLOTS[name])(self._report())
        return drawn

    def judges(self) -> Titled:
        """How good are our judges: every recorded verdict (deploy analyses, rollback verifies,
        canaries) against what happened next within a day, per service (judging/replay.py)."""
        from datetime import timedelta

        from ...records.catalog import Catalog, RecordFilter
        from ..judging.replay import judges_table, replay_judges
        from .report import parse_moment

        p = self.params
        rows = Catalog().rows(RecordFilter(env=None if p.all_environments else self.ctx.env, service=p.service or None))
        [self.judge_report] = replay_judges(rows, {"as recorded": None}, since=parse_moment(p.since or None),
                                            until=parse_moment(p.until or None), horizon=timedelta(hours=24))
        frame = judges_table(self.judge_report)
        self.ctx.figure("judge_false_aborts", self.judge_report.false_aborts)
        self.ctx.figure("judge_escapes", self.judge_report.escapes)
        self.ctx.figure("judge_median_decision_s", self.judge_report.median_decision_s)
        return Titled(frame.attrs["title"], frame)

    def plot_judges(self) -> "Figure":
        """False aborts and escapes per service, and each verdict's time to decision."""
        from ..judging.replay import plot_judges

        if self.judge_report is None:
            self.judges()
        return plot_judges(self.judge_report)

    def assessment(self) -> Said:
        """The figures into the record, and what meets the guide's targets, in words."""
        report = self._report()
        report.record_figures(self.ctx)
        text = report.assessment()
        if self.backups is not None:
            text += "\n" + self._backups_in_words()
        return Said(text)

    def _backups_in_words(self) -> str:
        """The backups group's figures into the record, and in words."""
        proofs, now = self._backups(), utcnow()
        age = proofs.newest_proof_age_s(now)
        self.ctx.figure("backups_proven_fraction", proofs.proven_fraction)
        self.ctx.figure("newest_proof_age_s", age)
        if proofs.unknown:
            return f"? backups: unknown ({proofs.unknown})"
        mark = "✓" if age is not None and age <= proofs.interval_s else "✗"
        proven = f"{proofs.proven} of {proofs.stored} backups proven by a restore"
        newest = "never" if age is None else f"{age / 86400:.1f} days ago by run {proofs.newest_proof_run}"
        return f"{mark} backups: {proven}; newest proof {newest} (guide: restore tested monthly)"

    def _backups(self) -> "BackupProofs":
        if self.backups is None:
            raise ValueError("read the backup store first (read_backups())")
        return self.backups

    def _report(self) -> DeliveryReport:
        if self.report is None:
            raise ValueError("read the records first (read())")
        return self.report
