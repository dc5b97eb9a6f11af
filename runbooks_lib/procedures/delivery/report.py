"""Delivery metrics from the records: the four DORA keys and the guide's operational figures.

``delivery_report(env=..., since=..., until=..., service=...)`` reads the catalog once (its fast
path: rows, not a DataFrame), classifies the records (``events.read_events``) and answers with
titled tables per service and environment, each figure against the guide's target and the
DORA 2024 band (``bands``). Medians lead, as in Four Keys; distributions are in the plots.
"""
from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import cached_property
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from pydantic import Field, field_validator

from ...config.parameters import RunbookParams

from .bands import (TARGETS, failure_rate_band, frequency_band, lead_time_band, recovery_band)
from .events import CommitTimes, DeployEvent, Events, read_events

if TYPE_CHECKING:
    import pandas as pd

    from ...config.profiles import Profile

__all__ = ["DeliveryReport", "DeliveryParams", "delivery_report", "commit_times", "parse_moment"]

ALL = "all"
DAY = 86400.0


def commit_times(profile: "Profile | None") -> CommitTimes | None:
    """Each (service, version)'s commit time from the profile's image catalog (``sandbox: images:
    <service>: <version>: commit_time``), or None when the profile has none: lead time is then unknown."""
    from .events import moment

    images = ((profile.sandbox if profile is not None else None) or {}).get("images") or {}
    times = {(str(service), str(version)): when
             for service, versions in images.items() if isinstance(versions, dict)
             for version, spec in versions.items() if isinstance(spec, dict)
             if (when := _as_moment(spec.get("commit_time"), moment)) is not None}
    return times or None


def _as_moment(value: Any, parse: Callable[[Any], datetime | None]) -> datetime | None:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)
    return parse(value)


def parse_moment(value: str | datetime | None) -> datetime | None:
    """``""``/None → None; ``30d``/``12h``/``45m`` ago; an ISO date or time (UTC when no zone)."""
    from ...errors import ParameterError
    from ...records.catalog import parse_since

    if value is None or isinstance(value, datetime):
        return value
    try:
        return parse_since(value)
    except ValueError:
        raise ParameterError(f"not a time: {value!r} (give an ISO date/time such as 2026-11-01 or 2026-11-01T12:00Z, "
                             "or an age such as 30d, 12h, 45m)") from None


class DeliveryParams(RunbookParams):
    """The delivery metrics runbook's parameters, checked before any record is read."""

    since: str = Field("30d", description="Start of the window: an ISO date/time, or an age (30d, 12h); '' = the first record")
    until: str = Field("", description="End of the window (excluded): an ISO date/time, or '' = now")
    service: str | None = Field(None, description="One service, or None for all")
    all_environments: bool = Field(False, description="Every environment's records, not only the run's env")

    @field_validator("service")
    @classmethod
    def _all_when_empty(cls, value: str | None) -> str | None:
        return value or None

    @field_validator("since", "until")
    @classmethod
    def _a_time(cls, value: str) -> str:
        from ...records.catalog import parse_since

        if value.strip():
            try:
                parse_since(value)
            except ValueError:
                raise ValueError(f"not a time: {value!r} (an ISO date/time such as 2026-11-01T12:00Z, "
                                 "or an age such as 30d, 12h, 45m)") from None
        return value.strip()


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def _p90(values: Sequence[float]) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    at = 0.9 * (len(ordered) - 1)  # linear interpolation, as numpy.percentile's default
    low = int(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _round(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def _duration(seconds: float | None) -> str | None:
    """Minutes, hours or days, whichever a person reads at a glance."""
    if seconds is None:
        return None
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h" if seconds < 2 * DAY else f"{seconds / DAY:.1f} days"


def _yes(met: bool | None) -> str:
    return "unknown" if met is None else ("yes" if met else "NO")


@dataclass(frozen=True)
class DeliveryReport:
    """The delivery figures of one scope (environment(s), service, window)."""

    events: Events
    start: datetime  # the window the frequency is measured over
    end: datetime
    lead_times_known: bool  # the profile's image catalog gives commit times

    # -- grouping -----------------------------------------------------------------------------

    @property
    def window_days(self) -> float:
        """At least one day: a day's records cannot claim a finer rate."""
        return max((self.end - self.start).total_seconds() / DAY, 1.0)

    def _table(self, items: Sequence[Any], row: Callable[[list[Any]], dict[str, Any]], title: str) -> "pd.DataFrame":
        """One row per (env, service), then the row of all of them."""
        import pandas as pd

        by_group: dict[tuple[str, str], list[Any]] = {}
        for item in items:
            by_group.setdefault((item.env, item.service), []).append(item)
        groups = sorted(by_group)
        rows = {group: row(by_group[group]) for group in groups}
        if len(groups) != 1:
            rows[(ALL, ALL)] = row(list(items))
        frame = pd.DataFrame.from_dict(rows, orient="index")
        if not rows:
            frame = pd.DataFrame([row([])], index=pd.MultiIndex.from_tuples([(ALL, ALL)]))
        frame.index = pd.MultiIndex.from_tuples(list(frame.index), names=["env", "service"])
        frame.attrs["title"] = title
        return frame

    # -- the four keys ------------------------------------------------------------------------

    def deploys_per_day(self, deployments: Sequence[DeployEvent] | None = None) -> float:
        chosen = self.events.deployments if deployments is None else deployments
        return sum(1 for d in chosen if d.status == "serving") / self.window_days

    def _frequency_row(self, deployments: list[DeployEvent]) -> dict[str, Any]:
        serving = [d for d in deployments if d.status == "serving"]
        per_day = len(serving) / self.window_days
        days = max(int(round(self.window_days)), 1)
        daily = [0] * days
        for d in serving:
            daily[min(int((d.started - self.start).total_seconds() // DAY), days - 1)] += 1
        return {"deployments serving": len(serving), "attempted": len(deployments),
                "window (days)": round(self.window_days, 2), "per day": round(per_day, 3),
                "days with a deploy": sum(1 for n in daily if n), "median per day": _median(daily),
                "guide: multiple a day": _yes(TARGETS["deploys_per_day"].met(per_day)),
                "DORA 2024": frequency_band(per_day)}

    def frequency_table(self) -> "pd.DataFrame":
        return self._table(self.events.deployments, self._frequency_row,
                           "Deployment frequency (deployments that ended serving, per day of the window)")

    def _lead_row(self, deployments: list[DeployEvent]) -> dict[str, Any]:
        serving = [d for d in deployments if d.status == "serving"]
        known = [d.lead_time_s for d in serving if d.lead_time_s is not None]
        median = _median(known)
        return {"deployments serving": len(serving), "with a commit time": len(known),
                "unknown": len(serving) - len(known),
                "median (min)": _round(median / 60 if median is not None else None),
                "p90 (min)": _round(_p90(known) / 60 if known else None),
                "max (min)": _round(max(known) / 60 if known else None),
                "guide: < 1 h": _yes(TARGETS["lead_time_s"].met(median)), "DORA 2024": lead_time_band(median)}

    def lead_time_table(self) -> "pd.DataFrame":
        why = "" if self.lead_times_known else " — UNKNOWN: the profile's image catalog gives no commit times"
        return self._table(self.events.deployments, self._lead_row, "Lead time for changes (commit → serving)" + why)

    def change_failure_rate(self, deployments: Sequence[DeployEvent] | None = None) -> float | None:
        reached = [d for d in (self.events.deployments if deployments is None else deployments) if d.reached_users]
        return sum(1 for d in reached if d.failed_change) / len(reached) if reached else None

    def _failure_row(self, deployments: list[DeployEvent]) -> dict[str, Any]:
        reached = [d for d in deployments if d.reached_users]
        failed = [d for d in reached if d.failed_change]
        rate = self.change_failure_rate(deployments)
        return {"deployments reaching users": len(reached), "failed changes": len(failed),
                "rate (%)": _round(100 * rate if rate is not None else None),
                "rolled back by the deploy": sum(1 for d in failed if d.failure == "rolled back by the deploy"),
                "canary aborted": sum(1 for d in failed if d.failure == "canary aborted"),
                "undone later": sum(1 for d in failed if d.failure.startswith("undone later")),
                "guide: < 5 %": _yes(TARGETS["change_failure_rate"].met(rate)), "DORA 2024": failure_rate_band(rate)}

    def change_failure_table(self) -> "pd.DataFrame":
        return self._table(self.events.deployments, self._failure_row,
                           "Change failure rate (deployments needing a rollback or a hotfix)")

    def _recovery_row(self, deployments: list[DeployEvent]) -> dict[str, Any]:
        failed = [d for d in deployments if d.failed_change]
        times = [d.recovery_s for d in failed if d.recovery_s is not None]
        median, mean = _median(times), (statistics.fmean(times) if times else None)
        return {"failed changes": len(failed), "recovered": len(times), "not recovered": len(failed) - len(times),
                "median (s)": _round(median), "mean (s)": _round(mean), "p90 (s)": _round(_p90(times)),
                "max (s)": _round(max(times) if times else None),
                "guide: MTTR < 5 min": _yes(TARGETS["mttr_s"].met(mean)), "DORA 2024": recovery_band(median)}

    def recovery_table(self) -> "pd.DataFrame":
        return self._table(self.events.deployments, self._recovery_row,
                           "Failed deployment recovery time (from the rollback's start; guide judges the mean)")

    def failed_changes_table(self) -> "pd.DataFrame":
        """Each failed change: what happened, how long recovery took, the record."""
        import pandas as pd

        rows = [{"started": d.started.strftime("%Y-%m-%d %H:%M"), "env": d.env, "service": d.service,
                 "version": d.version, "strategy": d.strategy, "why": d.failure, "recovery (s)": _round(d.recovery_s),
                 "time to decide (s)": _round(d.time_to_decide_s), "record": d.record}
                for d in self.events.deployments if d.failed_change]
        frame = pd.DataFrame(rows)
        frame.attrs["title"] = "Failed changes, each with its record"
        return frame

    # -- the guide's operational figures ------------------------------------------------------

    def success_rate(self, deployments: Sequence[DeployEvent] | None = None) -> float | None:
        chosen = self.events.deployments if deployments is None else deployments
        return sum(1 for d in chosen if d.status == "serving") / len(chosen) if chosen else None

    def _success_row(self, deployments: list[DeployEvent]) -> dict[str, Any]:
        rate = self.success_rate(deployments)
        return {"attempted": len(deployments), "succeeded": sum(1 for d in deployments if d.status == "serving"),
                "rolled back": sum(1 for d in deployments if d.status == "rolled back"),
                "failed before serving": sum(1 for d in deployments if d.status == "failed before serving"),
                "success rate (%)": _round(100 * rate if rate is not None else None),
                "guide: > 95 %": _yes(TARGETS["success_rate"].met(rate))}

    def success_table(self) -> "pd.DataFrame":
        return self._table(self.events.deployments, self._success_row, "Deployment success rate")

    def _rollback_row(self, rollbacks: list[Any]) -> dict[str, Any]:
        times = [r.seconds for r in rollbacks if r.status == "succeeded" and r.seconds is not None]
        median = _median(times)
        limit = TARGETS["rollback_s"].limit
        return {"rollbacks": len(rollbacks), "automatic": sum(1 for r in rollbacks if r.source != "rollback runbook"),
                "by the runbook": sum(1 for r in rollbacks if r.source == "rollback runbook"),
                "succeeded": sum(1 for r in rollbacks if r.status == "succeeded"),
                "failed": sum(1 for r in rollbacks if r.status == "failed"),
                "refused or waiting": sum(1 for r in rollbacks if r.status in ("refused", "awaiting approval")),
                "blocked by migration": sum(1 for r in rollbacks if r.status == "blocked by migration"),
                "median (s)": _round(median), "p90 (s)": _round(_p90(times)), "max (s)": _round(max(times) if times else None),
                "over 5 min": sum(1 for t in times if t >= limit),
                "guide: < 5 min": _yes(TARGETS["rollback_s"].met(max(times) if times else None))}

    def rollback_table(self) -> "pd.DataFrame":
        return self._table(self.events.rollbacks, self._rollback_row,
                           "Rollback times (time_to_rollback_s; the guide wants every one under 5 min)")

    def _canary_row(self, canaries: list[Any]) -> dict[str, Any]:
        times = [c.time_to_abort_s for c in canaries if c.outcome == "aborted" and c.time_to_abort_s is not None]
        limit = TARGETS["canary_abort_s"].limit
        return {"canary runs": len(canaries), "promoted": sum(1 for c in canaries if c.outcome == "promoted"),
                "aborted": sum(1 for c in canaries if c.outcome == "aborted"),
                "median abort (s)": _round(_median(times)), "p90 abort (s)": _round(_p90(times)),
                "max abort (s)": _round(max(times) if times else None), "over 5 min": sum(1 for t in times if t >= limit),
                "guide: < 5 min": _yes(TARGETS["canary_abort_s"].met(max(times) if times else None))}

    def canary_table(self) -> "pd.DataFrame":
        return self._table(self.events.canaries, self._canary_row,
                           "Canary abort times (first request to the bad canary → 0 % weight)")

    def drill_table(self) -> "pd.DataFrame":
        """Every DR drill in time order with RTO/RPO against the guide and the change from the previous drill."""
        import pandas as pd

        rows, previous = [], {}
        for d in self.events.drills:
            last = previous.get((d.env, d.service), (None, None))
            rows.append({"started": d.started.strftime("%Y-%m-%d %H:%M"), "env": d.env, "service": d.service,
                         "outcome": d.outcome, "RTO (s)": _round(d.rto_s), "RPO (s)": _round(d.rpo_s),
                         "RTO vs previous (s)": _round(d.rto_s - last[0]) if d.rto_s is not None and last[0] is not None else None,
                         "RPO vs previous (s)": _round(d.rpo_s - last[1]) if d.rpo_s is not None and last[1] is not None else None,
                         "guide: RTO < 4 h": _yes(TARGETS["rto_s"].met(d.rto_s)),
                         "guide: RPO < 1 h": _yes(TARGETS["rpo_s"].met(d.rpo_s)), "record": d.record})
            previous[(d.env, d.service)] = (d.rto_s, d.rpo_s)
        frame = pd.DataFrame(rows)
        frame.attrs["title"] = "DR drills: RTO and RPO, drill by drill (guide: RTO < 4 h, RPO < 1 h)"
        return frame

    TABLES = ("overview", "frequency", "lead_time", "change_failure", "recovery", "failed_changes", "success",
              "rollbacks", "canary", "drills")

    def titled(self, name: str) -> Any:
        """A table under its title, for a notebook cell: one of ``TABLES``."""
        from ...display import Titled

        method = {"overview": self.overview, "frequency": self.frequency_table, "lead_time": self.lead_time_table,
                  "change_failure": self.change_failure_table, "recovery": self.recovery_table,
                  "failed_changes": self.failed_changes_table, "success": self.success_table,
                  "rollbacks": self.rollback_table, "canary": self.canary_table, "drills": self.drill_table}.get(name)
        if method is None:
            raise ValueError(f"no table named {name!r}; tables: {', '.join(self.TABLES)}")
        frame = method()
        return Titled(frame.attrs.get("title", name), frame)

    # -- the headline -------------------------------------------------------------------------

    def figures(self) -> dict[str, float | int | None]:
        """The headline numbers, for the record's figures."""
        return dict(self._figures)

    @cached_property
    def _figures(self) -> dict[str, float | int | None]:
        ev = self.events
        leads = [d.lead_time_s for d in ev.deployments if d.lead_time_s is not None]
        recoveries = [d.recovery_s for d in ev.deployments if d.failed_change and d.recovery_s is not None]
        rollbacks = [r.seconds for r in ev.rollbacks if r.status == "succeeded" and r.seconds is not None]
        aborts = [c.time_to_abort_s for c in ev.canaries if c.outcome == "aborted" and c.time_to_abort_s is not None]
        not_done = [r for r in ev.rollbacks if r.status != "succeeded"]
        rate, success = self.change_failure_rate(), self.success_rate()
        last_drill = ev.drills[-1] if ev.drills else None
        return {
            "deployments": len(ev.deployments), "deploys_per_day": round(self.deploys_per_day(), 3),
            "lead_time_median_s": _round(_median(leads)),
            "change_failure_rate": None if rate is None else round(rate, 4),
            "recovery_median_s": _round(_median(recoveries)),
            "recovery_mean_s": _round(statistics.fmean(recoveries) if recoveries else None),
            "success_rate": None if success is None else round(success, 4),
            "rollback_median_s": _round(_median(rollbacks)), "rollback_max_s": _round(max(rollbacks) if rollbacks else None),
            "rollbacks_not_done": len(not_done),
            "rollbacks_blocked_by_migration": sum(1 for r in not_done if r.status == "blocked by migration"),
            "canary_abort_median_s": _round(_median(aborts)),
            "canary_abort_max_s": _round(max(aborts) if aborts else None),
            "rto_latest_s": _round(last_drill.rto_s) if last_drill else None,
            "rpo_latest_s": _round(last_drill.rpo_s) if last_drill else None,
        }

    def overview(self) -> "pd.DataFrame":
        """The four keys and the operational figures, each against the guide and DORA 2024."""
        import pandas as pd

        f = self.figures()
        seconds = (lambda s: None if s is None else f"{s:.1f} s")
        percent = (lambda r: None if r is None else f"{100 * r:.1f} %")
        both = (lambda first, second: None if first is None else f"{seconds(first)} / {seconds(second)}")
        rows = [
            ("deployment frequency", f"{f['deploys_per_day']:.2f} / day", "deploys_per_day", f["deploys_per_day"],
             frequency_band(f["deploys_per_day"])),
            ("lead time for changes (median)", _duration(f["lead_time_median_s"]) or "unknown", "lead_time_s",
             f["lead_time_median_s"], lead_time_band(f["lead_time_median_s"])),
            ("change failure rate", percent(f["change_failure_rate"]), "change_failure_rate", f["change_failure_rate"],
             failure_rate_band(f["change_failure_rate"])),
            ("recovery time (median / mean)", both(f["recovery_median_s"], f["recovery_mean_s"]), "mttr_s", f["recovery_mean_s"], recovery_band(f["recovery_median_s"])),
            ("deployment success rate", percent(f["success_rate"]), "success_rate", f["success_rate"], ""),
            ("rollback time (median / slowest)", both(f["rollback_median_s"], f["rollback_max_s"]), "rollback_s",
             f["rollback_max_s"], ""),
            ("canary abort time (median / slowest)", both(f["canary_abort_median_s"], f["canary_abort_max_s"]),
             "canary_abort_s", f["canary_abort_max_s"], ""),
            ("RTO (latest drill)", seconds(f["rto_latest_s"]), "rto_s", f["rto_latest_s"], ""),
            ("RPO (latest drill)", seconds(f["rpo_latest_s"]), "rpo_s", f["rpo_latest_s"], ""),
        ]
        frame = pd.DataFrame(
            [{"figure": name, "value": shown or "no records", "guide target": TARGETS[key].text,
              "meets target": _yes(TARGETS[key].met(value)), "DORA 2024": band} for name, shown, key, value, band in rows]
        ).set_index("figure")
        frame.attrs["title"] = (f"Delivery figures, {self.start:%Y-%m-%d %H:%M} → {self.end:%Y-%m-%d %H:%M} UTC "
                                f"({self.events.records_read} delivery records, {len(self.events.deployments)} deployments)")
        return frame

    def record_figures(self, ctx: Any) -> None:
        """Put the headline numbers into the run's record (its summary's figures)."""
        for name, value in self.figures().items():
            ctx.figure(name, value)

    def assessment(self) -> str:
        """The figures in words: what meets the guide, what does not, what is unknown and why."""
        table = self.overview()
        lines = [table.attrs["title"]]
        for name, row in table.iterrows():
            mark = {"yes": "✓", "NO": "✗"}.get(row["meets target"], "?")
            band = f"; DORA 2024: {row['DORA 2024']}" if row["DORA 2024"] else ""
            lines.append(f"{mark} {name}: {row['value']} (guide {row['guide target']}){band}")
        if not self.lead_times_known:
            lines.append("lead time is unknown: the profile's image catalog gives no commit_time per version")
        figures = self.figures()
        if figures["rollbacks_not_done"]:
            blocked = figures["rollbacks_blocked_by_migration"]
            lines.append(f"{figures['rollbacks_not_done']} rollback(s) did not happen (failed or refused; "
                         f"{blocked} blocked by a migration): see the rollback table")
        if self.events.unsealed:
            lines.append(f"note: {self.events.unsealed} of the records counted are not sealed in the ledger")
        return "\n".join(lines)


def delivery_report(
    *,
    env: str | None = None,
    service: str | None = None,
    since: str | datetime | None = None,
    until: str | datetime | None = None,
    commits: CommitTimes | None = None,
    root: Path | None = None,
    now: datetime | None = None,
) -> DeliveryReport:
    """The delivery figures of ``env`` (None: every environment), ``service`` (None: all), over
    [since, until). Without ``since``/``until`` the window runs from the first to the last
    deployment (at least a day); with ``since`` alone it ends now."""
    from ...errors import ParameterError
    from ...records.catalog import Catalog, RecordFilter

    start, end = parse_moment(since or None), parse_moment(until or None)
    if start is not None and end is not None and end <= start:
        raise ParameterError(f"until ({end:%Y-%m-%d %H:%M}) must be after since ({start:%Y-%m-%d %H:%M})")
    rows = Catalog(root).rows(RecordFilter(env=env or None, service=service or None))
    events = read_events(rows, commits, start, end)
    moments = [d.started for d in events.deployments] or [e.started for e in (*events.rollbacks, *events.drills)]
    now = now or datetime.now(timezone.utc)
    window_start = start or (min(moments) if moments else now - timedelta(days=1))
    window_end = end or (now if start is not None or not moments else max(moments))
    return DeliveryReport(events, window_start, window_end, lead_times_known=commits is not None)
