"""Judging the judges: every window a verdict judged (a deploy's analysis, a rollback's Verify, a
canary) re-judged under another policy, and each verdict held against what happened next.

Pure functions over the catalog's rows (``Catalog().rows()``), so the rules are tested on
synthetic records. What happened next, within ``horizon`` of the judged run's start:

- **bad**: the release was rolled back (a ``rollback`` record of its service linking it with
  ``undoes``, or starting while it was the service's newest release; or its own run rolled it back
  after the window passed), or a later record names the version bad (an incident's correlation
  and mitigation, a rollback that blamed it);
- **good**: a release judged bad (aborted) that was later promoted, and not itself found bad
  afterwards; a release judged good that nothing named bad within the horizon;
- **unknown**: an aborted release never tried again, or a window without data.

An **escape** is a pass followed by bad; a **false abort** a fail followed by good.
"""
from __future__ import annotations

import statistics
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence

from .sequential import Look, VerdictPolicy, judge_looks

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

__all__ = ["JudgedWindow", "JudgeReport", "judged_windows", "what_happened_next", "replay_judges", "format_reports",
           "judges_table", "plot_judges"]

Truth = Literal["bad", "good", "unknown"]
RELEASES = ("deploy", "canary_promotion")
SERVING = frozenset({"succeeded", "promoted"})
NOT_RUN = frozenset({"refused", "rejected", "awaiting approval", "running", "no summary"})


def _moment(text: Any) -> datetime | None:
    try:
        return datetime.fromisoformat(str(text).replace("Z", "+00:00")) if text else None
    except ValueError:
        return None


@dataclass(frozen=True)
class JudgedWindow:
    """One recorded window, as its run judged it."""

    record: str
    env: str
    service: str
    version: str
    kind: str  # "deploy analysis", "rollback verify", "canary"
    started: datetime  # the run's start
    verdict: str  # as recorded: "pass", "fail", "no data"
    decided_after_s: float
    max_s: float
    looks: tuple[Look, ...]
    ended_by: str = "decision"  # or "window": the window's maximum came first


def judged_windows(rows: Iterable[Mapping[str, Any]], since: datetime | None = None,
                   until: datetime | None = None) -> list[JudgedWindow]:
    """Every judged window with its looks, of the runs that started in [since, until), oldest first."""
    windows = []
    for row in rows:
        started = _moment(row.get("started"))
        if started is None or (since and started < since) or (until and started >= until):
            continue
        for judged in row.get("judged") or ():
            looks = tuple(Look.from_list(values) for values in judged.get("looks") or ())
            if not looks:
                continue
            windows.append(JudgedWindow(
                str(row.get("record")), str(row.get("env")), str(judged.get("service") or row.get("service")),
                str(judged.get("version")), str(judged.get("kind")), started, str(judged.get("verdict")),
                float(judged.get("decided_after_s") or 0.0), float(judged.get("max_s") or looks[-1].at_s), looks,
                str(judged.get("ended_by") or "decision")))
    return sorted(windows, key=lambda w: w.started)


@dataclass(frozen=True)
class _Release:
    record: str
    started: datetime
    version: str | None


def _releases(rows: Sequence[Mapping[str, Any]]) -> dict[tuple[str, str], list[_Release]]:
    """Per (env, service), the runs that made a version serve: released, promoted, or rolled back to."""
    found: dict[tuple[str, str], list[_Release]] = {}
    for row in rows:
        started, params = _moment(row.get("started")), row.get("parameters") or {}
        if started is None or params.get("dry_run") or row.get("outcome") not in SERVING:
            continue
        if row.get("runbook") in RELEASES or row.get("runbook") == "rollback":
            version = params.get("version") if row.get("runbook") in RELEASES else None
            found.setdefault((str(row.get("env")), str(row.get("service"))), []).append(
                _Release(str(row.get("record")), started, version))
    for releases in found.values():
        releases.sort(key=lambda r: r.started)
    return found


def _rolled_back(window: JudgedWindow, rows: Sequence[Mapping[str, Any]], releases: list[_Release],
                 horizon: timedelta) -> str | None:
    for row in rows:
        started = _moment(row.get("started"))
        if (row.get("runbook") != "rollback" or row.get("outcome") in NOT_RUN or started is None
                or (row.get("parameters") or {}).get("dry_run") or row.get("service") != window.service
                or row.get("env") != window.env or not window.started < started <= window.started + horizon):
            continue
        if any(link.get("relation") == "undoes" and link.get("record") == window.record for link in row.get("links") or ()):
            return f"rolled back by {row.get('record')}"
        newest = [r for r in releases if r.started < started]
        if newest and newest[-1].record == window.record:
            return f"rolled back by {row.get('record')} while it was the newest release"
    return None


def _named_bad(window: JudgedWindow, rows: Sequence[Mapping[str, Any]], horizon: timedelta) -> str | None:
    for row in rows:
        started = _moment(row.get("started"))
        if started is None or row.get("record") == window.record or row.get("env") != window.env \
                or not window.started < started <= window.started + horizon:
            continue
        for verdict in row.get("verdicts") or ():
            if (verdict.get("service"), verdict.get("version"), verdict.get("verdict")) == \
                    (window.service, window.version, "bad"):
                return f"named bad by {row.get('runbook')} {row.get('record')}: {verdict.get('why', '')}"
    return None


def _undone_by_its_own_run(window: JudgedWindow, rows: Sequence[Mapping[str, Any]]) -> str | None:
    """A pass its own run overturned: a later window or check of the same deploy failed and it
    rolled back (a blue-green's monitoring after its analysis, say)."""
    for row in rows:
        if row.get("record") == window.record and (row.get("figures") or {}).get("rolled_back"):
            return f"rolled back by its own run {row.get('record')} after this window passed"
    return None


def what_happened_next(window: JudgedWindow, rows: Sequence[Mapping[str, Any]], horizon: timedelta,
                       releases: Mapping[tuple[str, str], list[_Release]] | None = None) -> tuple[Truth, str]:
    """bad / good / unknown for ``window``'s release, and why (the rules in the module's docstring)."""
    releases = _releases(rows) if releases is None else releases
    mine = releases.get((window.env, window.service), [])
    if window.verdict == "pass":
        why = (_undone_by_its_own_run(window, rows) or _rolled_back(window, rows, mine, horizon)
               or _named_bad(window, rows, horizon))
        return ("bad", why) if why else ("good", f"not rolled back nor named bad within {horizon}")
    later = [r for r in mine if r.started > window.started and r.version == window.version]
    for release in later:
        retried = JudgedWindow(release.record, window.env, window.service, window.version, "", release.started,
                               "pass", 0.0, 0.0, ())
        if not (_rolled_back(retried, rows, mine, horizon) or _named_bad(retried, rows, horizon)):
            return "good", f"promoted later by {release.record} and not found bad"
    return "unknown", "never promoted later" if window.verdict == "fail" else "no data to judge"


@dataclass
class JudgeReport:
    """One policy's verdicts over the windows, against what happened next."""

    policy: str
    verdicts: list[tuple[JudgedWindow, str, float, Truth]] = field(default_factory=list)  # window, verdict, s, truth
    # Windows this policy left undecided where the recording stops: a run stops looking once its own
    # verdict decided, so a stricter policy is judged on what was recorded (the SLOs), not on more.
    cut_short: int = 0

    @property
    def changed(self) -> int:
        return sum(verdict != window.verdict for window, verdict, _, _ in self.verdicts)

    @property
    def escapes(self) -> int:
        return sum(verdict == "pass" and truth == "bad" for _, verdict, _, truth in self.verdicts)

    @property
    def false_aborts(self) -> int:
        return sum(verdict == "fail" and truth == "good" for _, verdict, _, truth in self.verdicts)

    @property
    def median_decision_s(self) -> float | None:
        times = [seconds for _, _, seconds, _ in self.verdicts]
        return round(statistics.median(times), 2) if times else None

    def confusion(self) -> Counter[tuple[str, Truth]]:
        return Counter((verdict, truth) for _, verdict, _, truth in self.verdicts)


def replay_judges(rows: Sequence[Mapping[str, Any]], policies: Mapping[str, VerdictPolicy | None], *,
                  since: datetime | None = None, until: datetime | None = None,
                  horizon: timedelta = timedelta(hours=24)) -> list[JudgeReport]:
    """A report per policy (None: the verdicts as recorded) over every window judged in [since, until)."""
    windows = judged_windows(rows, since, until)
    releases = _releases(rows)
    truths = [what_happened_next(w, rows, horizon, releases)[0] for w in windows]
    reports = []
    for name, policy in policies.items():
        report = JudgeReport(name)
        for window, truth in zip(windows, truths):
            if policy is None:
                report.verdicts.append((window, window.verdict, window.decided_after_s, truth))
                continue
            verdict = judge_looks(policy, window.looks, window.max_s)
            report.cut_short += verdict.ended_by == "window" and window.looks[-1].at_s < window.max_s
            label = {True: "pass", False: "fail", None: "no data"}[verdict.passed]
            report.verdicts.append((window, label, verdict.decided_after_s, truth))
        reports.append(report)
    return reports


def format_reports(reports: Sequence[JudgeReport]) -> str:
    """Per policy: windows, decisions changed, median time to decision, escapes, false aborts,
    and the confusion table of verdicts against what happened next."""
    if not reports or not reports[0].verdicts:
        return "no judged window in the records of that period"
    lines = [f"{'policy':20} {'windows':>7} {'changed':>7} {'median s':>8} {'escapes':>7} {'false aborts':>12} "
             f"{'cut short':>9}"]
    for r in reports:
        median = "-" if r.median_decision_s is None else f"{r.median_decision_s:g}"
        lines.append(f"{r.policy:20} {len(r.verdicts):>7} {r.changed:>7} {median:>8} {r.escapes:>7} {r.false_aborts:>12} "
                     f"{r.cut_short:>9}")
    if any(r.cut_short for r in reports):
        lines.append("cut short: undecided under that policy where the recording stops (its run had decided); "
                     "judged on the SLOs over what was recorded")
    for r in reports:
        table = r.confusion()
        lines += ["", f"{r.policy}: verdict vs what happened next", f"{'':10} {'bad':>6} {'good':>6} {'unknown':>8}"]
        for verdict in ("pass", "fail", "no data"):
            lines.append(f"{verdict:10} " + " ".join(f"{table[(verdict, t)]:>{w}}" for t, w in
                                                    (("bad", 6), ("good", 6), ("unknown", 8))))
    return "\n".join(lines)


def judges_table(report: JudgeReport) -> "pd.DataFrame":
    """Per service: windows judged, aborted, false aborts, escapes, the median time to a decision and
    the share decided by the evidence (not by the window's end)."""
    import pandas as pd

    by_service: dict[str, list[tuple[JudgedWindow, str, float, Truth]]] = {}
    for entry in report.verdicts:
        by_service.setdefault(entry[0].service, []).append(entry)
    rows = []
    for service, entries in sorted(by_service.items()):
        part = JudgeReport(report.policy, entries)
        rows.append({"service": service, "windows": len(entries), "judged bad": sum(v == "fail" for _, v, _, _ in entries),
                     "false aborts": part.false_aborts, "escapes": part.escapes,
                     "median s to decision": part.median_decision_s,
                     "decided by evidence %": round(100 * sum(w.ended_by == "decision" for w, *_ in entries) / len(entries))})
    frame = pd.DataFrame(rows, columns=["service", "windows", "judged bad", "false aborts", "escapes",
                                        "median s to decision", "decided by evidence %"]).set_index("service")
    frame.attrs["title"] = f"How good are our judges ({report.policy}): verdicts against what happened next"
    return frame


def plot_judges(report: JudgeReport) -> "Figure":
    """Left: false aborts and escapes per service. Right: each window's time to decision by kind,
    a hollow mark where the window's end came first."""
    import matplotlib.pyplot as plt

    table = judges_table(report)
    fig, (counts, times) = plt.subplots(1, 2, figsize=(11, 3.4))
    if table.empty:
        for ax in (counts, times):
            ax.text(0.5, 0.5, "no judged window in these records", ha="center", va="center", transform=ax.transAxes)
    else:
        table[["false aborts", "escapes"]].plot.bar(ax=counts, color=["tab:orange", "tab:red"], rot=0)
        counts.set_ylabel("verdicts")
        kinds = sorted({w.kind for w, *_ in report.verdicts})
        services = list(table.index)
        for k, kind in enumerate(kinds):
            mine = [(services.index(w.service), s, w.ended_by) for w, _, s, _ in report.verdicts if w.kind == kind]
            for ended in ("decision", "window"):
                points = [(x + 0.1 * k, s) for x, s, e in mine if e == ended]
                if points:
                    times.scatter(*zip(*points), label=f"{kind}" + (" (window's end)" if ended == "window" else ""),
                                  marker="o", facecolors="none" if ended == "window" else None, s=18)
        times.set_xticks(range(len(services)), services, fontsize=7)
        times.set_ylabel("seconds to decision")
        times.legend(fontsize=7)
    counts.set_title("Wrong verdicts per service", fontsize=9)
    times.set_title("Time to decision", fontsize=9)
    fig.tight_layout()
    plt.close(fig)  # shown once, by the cell that returns it
    return fig
