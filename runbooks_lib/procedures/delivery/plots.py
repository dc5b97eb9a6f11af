"""One plot per figure group of a DeliveryReport: distributions, with the guide's target as a red line."""
from __future__ import annotations

import inspect
import random
from collections import Counter
from typing import TYPE_CHECKING, Mapping, Sequence

from .bands import TARGETS
from .report import DAY, DeliveryReport

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

__all__ = ["plot_frequency", "plot_lead_time", "plot_change_failure", "plot_recovery", "plot_success",
           "plot_rollbacks", "plot_canary_aborts", "plot_drills"]


def _figure(ncols: int = 1, width: float = 10, height: float = 3.4) -> tuple["Figure", list["Axes"]]:
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, ncols, figsize=(width, height), squeeze=False)
    return fig, list(axes[0])


def _done(fig: "Figure") -> "Figure":
    import matplotlib.pyplot as plt

    fig.tight_layout()
    plt.close(fig)  # shown once, by the cell that returns it
    return fig


def _nothing(ax: "Axes", what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in these records", ha="center", va="center", transform=ax.transAxes)


def _target(ax: "Axes", value: float, label: str, horizontal: bool = True) -> None:
    line = ax.axhline if horizontal else ax.axvline
    line(value, color="red", linestyle="--", linewidth=1, label=f"guide: {label}")


def _strips(ax: "Axes", groups: Mapping[str, Sequence[float]], limit: float, label: str, unit: str) -> None:
    """A box per group with every value as a point: few values are seen one by one, many as a shape."""
    names = [name for name, values in groups.items() if values]
    if not names:
        _nothing(ax, "values")
        return
    # matplotlib 3.10 renamed vert=False to orientation="horizontal" (vert warns from 3.11)
    sideways = {"orientation": "horizontal"} if "orientation" in inspect.signature(ax.boxplot).parameters \
        else {"vert": False}
    ax.boxplot([groups[n] for n in names], widths=0.5, showfliers=False, **sideways)
    jitter = random.Random(0)
    for i, name in enumerate(names, 1):
        ax.scatter(groups[name], [i + jitter.uniform(-0.15, 0.15) for _ in groups[name]], s=10, alpha=0.6)
    ax.set_yticks(range(1, len(names) + 1), [f"{n} ({len(groups[n])})" for n in names], fontsize=8)
    _target(ax, limit, label, horizontal=False)
    values = [v for n in names for v in groups[n]] + [limit]
    if min(values) > 0 and max(values) / min(values) > 100:  # seconds next to days: only a log axis shows both
        ax.set_xscale("log")
        unit += " (log)"
    ax.set_xlabel(unit)
    ax.legend(fontsize=7, loc="lower right")


def _by_service(items: Sequence[object], value: str) -> dict[str, list[float]]:
    groups: dict[str, list[float]] = {}
    for item in items:
        number = getattr(item, value)
        if number is not None:
            groups.setdefault(f"{item.env}/{item.service}", []).append(number)  # type: ignore[attr-defined]
    return dict(sorted(groups.items()))


def plot_frequency(report: DeliveryReport) -> "Figure":
    """Deployments that ended serving, per day of the window (per week beyond two months), stacked by service."""
    fig, (ax,) = _figure()
    serving = [d for d in report.events.deployments if d.status == "serving"]
    if not serving:
        _nothing(ax, "deployments")
        return _done(fig)
    span = 1 if report.window_days <= 60 else 7
    buckets = max(int(-(-report.window_days // span)), 1)
    counts: dict[str, Counter[int]] = {}
    for d in serving:
        bucket = min(int((d.started - report.start).total_seconds() // (DAY * span)), buckets - 1)
        counts.setdefault(f"{d.env}/{d.service}", Counter())[bucket] += 1
    bottom = [0] * buckets
    import matplotlib

    colours = matplotlib.colormaps["tab20"].colors
    for n, (name, per_bucket) in enumerate(sorted(counts.items())):
        heights = [per_bucket.get(i, 0) for i in range(buckets)]
        ax.bar(range(buckets), heights, bottom=bottom, label=name, width=0.9, color=colours[n % len(colours)])
        bottom = [b + h for b, h in zip(bottom, heights)]
    unit = "day" if span == 1 else "week"
    _target(ax, TARGETS["deploys_per_day"].limit * span, TARGETS["deploys_per_day"].text)
    ax.set_xlabel(f"{unit} since {report.start:%Y-%m-%d}")
    ax.set_ylabel(f"deployments per {unit}")
    ax.set_title("Deployment frequency")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))  # beside the bars, never over them
    return _done(fig)


def plot_lead_time(report: DeliveryReport) -> "Figure":
    fig, (ax,) = _figure()
    groups = {k: [v / 60 for v in vs] for k, vs in _by_service(report.events.deployments, "lead_time_s").items()}
    if not report.lead_times_known:
        _nothing(ax, "commit times (lead time unknown)")
    else:
        _strips(ax, groups, TARGETS["lead_time_s"].limit / 60, TARGETS["lead_time_s"].text, "minutes")
    ax.set_title("Lead time for changes (commit → serving)")
    return _done(fig)


def plot_change_failure(report: DeliveryReport) -> "Figure":
    fig, (ax,) = _figure()
    frame = report.change_failure_table()
    frame = frame[frame["deployments reaching users"] > 0]
    if frame.empty:
        _nothing(ax, "deployments")
        return _done(fig)
    labels = [f"{env}/{service}" for env, service in frame.index]
    ax.barh(labels, frame["rate (%)"], color=["tab:red" if v >= 5 else "tab:green" for v in frame["rate (%)"]])
    for y, (rate, failed, total) in enumerate(zip(frame["rate (%)"], frame["failed changes"],
                                                  frame["deployments reaching users"])):
        ax.text(rate, y, f" {failed}/{total}", va="center", fontsize=8)
    _target(ax, 100 * TARGETS["change_failure_rate"].limit, TARGETS["change_failure_rate"].text, horizontal=False)
    ax.set_xlabel("% of deployments needing a rollback or hotfix")
    ax.set_title("Change failure rate")
    ax.legend(fontsize=7, loc="lower right")
    return _done(fig)


def plot_recovery(report: DeliveryReport) -> "Figure":
    fig, (ax,) = _figure()
    failed = [d for d in report.events.deployments if d.failed_change]
    _strips(ax, _by_service(failed, "recovery_s"), TARGETS["mttr_s"].limit, TARGETS["mttr_s"].text, "seconds")
    ax.set_title("Failed deployment recovery time")
    return _done(fig)


def plot_success(report: DeliveryReport) -> "Figure":
    fig, (ax,) = _figure()
    frame = report.success_table()
    frame = frame[frame["attempted"] > 0]
    if frame.empty:
        _nothing(ax, "deployments")
        return _done(fig)
    labels = [f"{env}/{service}" for env, service in frame.index]
    ax.barh(labels, frame["success rate (%)"],
            color=["tab:green" if v > 95 else "tab:red" for v in frame["success rate (%)"]])
    _target(ax, 100 * TARGETS["success_rate"].limit, TARGETS["success_rate"].text, horizontal=False)
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of deployments that ended serving")
    ax.set_title("Deployment success rate")
    ax.legend(fontsize=7, loc="lower left")
    return _done(fig)


def plot_rollbacks(report: DeliveryReport) -> "Figure":
    fig, (ax,) = _figure()
    done = [r for r in report.events.rollbacks if r.status == "succeeded"]
    groups: dict[str, list[float]] = {}
    for r in done:
        if r.seconds is not None:
            groups.setdefault(r.source, []).append(r.seconds)
    _strips(ax, groups, TARGETS["rollback_s"].limit, TARGETS["rollback_s"].text, "seconds")
    undone = Counter(r.status for r in report.events.rollbacks if r.status != "succeeded")
    title = "Rollback times"
    if undone:
        title += " — not done: " + ", ".join(f"{n} {status}" for status, n in sorted(undone.items()))
    ax.set_title(title)
    return _done(fig)


def plot_canary_aborts(report: DeliveryReport) -> "Figure":
    fig, (ax,) = _figure()
    aborted = [c for c in report.events.canaries if c.outcome == "aborted"]
    _strips(ax, _by_service(aborted, "time_to_abort_s"), TARGETS["canary_abort_s"].limit,
            TARGETS["canary_abort_s"].text, "seconds")
    ax.set_title("Canary abort times")
    return _done(fig)


def plot_drills(report: DeliveryReport) -> "Figure":
    """RTO and RPO drill by drill over time (log scale: seconds in drills, hours in the targets)."""
    fig, axes = _figure(2, width=12)
    for ax, value, key in ((axes[0], "rto_s", "rto_s"), (axes[1], "rpo_s", "rpo_s")):
        series: dict[str, list[tuple[object, float]]] = {}
        for d in report.events.drills:
            if getattr(d, value) is not None:
                series.setdefault(f"{d.env}/{d.service}", []).append((d.started, getattr(d, value)))
        if not series:
            _nothing(ax, "drills")
        for name, points in sorted(series.items()):
            ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=name)
        _target(ax, TARGETS[key].limit, TARGETS[key].text)
        ax.set_yscale("log")
        ax.set_ylabel("seconds (log)")
        ax.set_title(f"DR drills: {TARGETS[key].name}")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        ax.legend(fontsize=7, loc="upper left")
    return _done(fig)
