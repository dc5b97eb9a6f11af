"""The golden signals: ONE set of PromQL queries and one way to draw them.

Every verdict and every plot asks Prometheus through these functions, so a plot can never
disagree with the verdict printed beside it. The queries read the raw metrics every Veza pod
exposes (``http_requests_total{code,method,route}`` and the ``http_request_duration_seconds``
histogram, with ``job`` = the pod's app label and ``version`` = its version label, the guide's
relabelling), so they work on any Prometheus that scrapes the pods, with or without recording
rules.

- request rate: requests per second over ``window``;
- success rate: the share of non-5xx answers; a version that never failed has no 5xx series
  at all, which means no errors, not no data (``or 0 * total`` keeps the labels of ``by``);
- p50 / p95 / p99 in milliseconds, from the histogram's buckets;
- request and error counts over a window (``increase``), for tests on counts (the canary's SPRT);
- request and error counts since a moment, from the raw counters (the sequential verdicts' looks).

``by`` groups a query (``"version"``, ``"job"``); without it each query is one number.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from .metrics import Metrics

__all__ = [
    "SIGNALS",
    "selector",
    "request_rate",
    "success_rate",
    "latency_quantile",
    "request_count",
    "error_count",
    "request_total",
    "error_total",
    "latency_quantile_total",
    "request_total_since",
    "error_total_since",
    "latency_quantile_since",
    "signal_queries",
    "Panel",
    "signal_panels",
    "plot_signal_panels",
    "GoldenSignals",
    "golden_signals",
    "served_signals",
]

# What each signal is called in tables and plots, and its unit.
SIGNALS = {
    "requests_per_s": "requests/s",
    "success_rate": "success rate %",
    "p50_ms": "p50 ms",
    "p95_ms": "p95 ms",
    "p99_ms": "p99 ms",
}
_ERRORS = 'code=~"5.."'


def selector(service: str | None = None, version: str | Sequence[str] | None = None, **labels: str) -> str:
    """A label matcher: ``job="svc"``, plus ``version="v"`` or ``version=~"a|b"`` for several."""
    parts = [f'job="{service}"'] if service else []
    if isinstance(version, str):
        parts.append(f'version="{version}"')
    elif version:
        parts.append(f'version=~"{"|".join(version)}"')
    parts += [f'{k}="{v}"' for k, v in labels.items()]
    return ",".join(parts)


def _sum(by: str | None) -> str:
    return f"sum by ({by})" if by else "sum"


def _with(sel: str, extra: str) -> str:
    return f"{sel},{extra}" if sel else extra


def request_rate(sel: str, window: str, by: str | None = None) -> str:
    return f"{_sum(by)} (rate(http_requests_total{{{sel}}}[{window}]))"


def success_rate(sel: str, window: str, by: str | None = None) -> str:
    """The fraction of non-5xx requests (0..1)."""
    total = request_rate(sel, window, by)
    errors = f"{_sum(by)} (rate(http_requests_total{{{_with(sel, _ERRORS)}}}[{window}]))"
    return f"1 - (({errors}) or 0 * {total}) / {total}"


def latency_quantile(quantile: float, sel: str, window: str, by: str | None = None) -> str:
    """The ``quantile`` (0.99 = p99) of request latency in milliseconds, from the histogram."""
    group = f"{by}, le" if by else "le"
    return (f"1000 * histogram_quantile({quantile:g}, sum by ({group}) "
            f"(rate(http_request_duration_seconds_bucket{{{sel}}}[{window}])))")


def request_count(sel: str, window: str, by: str | None = None) -> str:
    """Requests served over ``window`` (Prometheus' ``increase``, so not always a whole number)."""
    return f"{_sum(by)} (increase(http_requests_total{{{sel}}}[{window}]))"


def error_count(sel: str, window: str, by: str | None = None) -> str:
    """5xx answers over ``window``; no 5xx series means none (``or 0 * requests``)."""
    errors = f"{_sum(by)} (increase(http_requests_total{{{_with(sel, _ERRORS)}}}[{window}]))"
    return f"({errors}) or 0 * {request_count(sel, window, by)}"


def request_total(sel: str, by: str | None = None) -> str:
    """Requests counted since each pod started (the raw counter): differences between two looks
    are exact, where ``increase`` misses the first request of every new label set."""
    return f"{_sum(by)} (http_requests_total{{{sel}}})"


def error_total(sel: str, by: str | None = None) -> str:
    """5xx answers counted since each pod started; no 5xx series means none."""
    return f"({_sum(by)} (http_requests_total{{{_with(sel, _ERRORS)}}})) or 0 * {request_total(sel, by)}"


def latency_quantile_total(quantile: float, sel: str, by: str | None = None) -> str:
    """The ``quantile`` of latency in milliseconds over every request each pod served since it
    started (the raw bucket counters), as ``request_total`` counts them."""
    group = f"{by}, le" if by else "le"
    return f"1000 * histogram_quantile({quantile:g}, sum by ({group}) (http_request_duration_seconds_bucket{{{sel}}}))"


def _at(promql_selector: str, start: float) -> str:
    return f"{promql_selector} @ {start:.3f}"


def request_total_since(sel: str, start: float) -> str:
    """Requests counted between ``start`` (Unix seconds) and each pod's last scrape: the raw counters
    now minus the same counters at ``start`` (PromQL's ``@``), exact where ``increase`` extrapolates.
    Pods must have been scraped by ``start`` and not restarted since: the caller checks that."""
    return f"({request_total(sel)}) - ({_sum(None)} ({_at(f'http_requests_total{{{sel}}}', start)}))"


def error_total_since(sel: str, start: float) -> str:
    """5xx answers counted between ``start`` and each pod's last scrape; no 5xx series means none."""
    then = _at(f"http_requests_total{{{_with(sel, _ERRORS)}}}", start)
    every_then = _at(f"http_requests_total{{{sel}}}", start)
    return f"({error_total(sel)}) - (sum ({then}) or 0 * sum ({every_then}))"


def latency_quantile_since(quantile: float, sel: str, start: float) -> str:
    """The ``quantile`` of latency in milliseconds over the requests counted since ``start``: the
    histogram's buckets now minus the same buckets at ``start``."""
    bucket = f"http_request_duration_seconds_bucket{{{sel}}}"
    return (f"1000 * histogram_quantile({quantile:g}, sum by (le) ({bucket}) - sum by (le) ({_at(bucket, start)}))")


def signal_queries(sel: str, window: str, by: str | None = None,
                   signals: Iterable[str] = ("requests_per_s", "success_rate", "p99_ms")) -> dict[str, str]:
    """PromQL for each named signal of the pods matched by ``sel``."""
    makers = {
        "requests_per_s": lambda: request_rate(sel, window, by),
        "success_rate": lambda: success_rate(sel, window, by),
        "p50_ms": lambda: latency_quantile(0.5, sel, window, by),
        "p95_ms": lambda: latency_quantile(0.95, sel, window, by),
        "p99_ms": lambda: latency_quantile(0.99, sel, window, by),
    }
    unknown = [s for s in signals if s not in makers]
    if unknown:
        raise ValueError(f"unknown signal(s) {unknown}; known: {', '.join(makers)}")
    return {name: makers[name]() for name in signals}


# -- one service's signals now, as numbers -----------------------------------------------------

@dataclass(frozen=True)
class GoldenSignals:
    """One service's traffic, errors and latency over a window; None where there was no data."""

    service: str
    window: str
    requests_per_s: float | None
    success_rate: float | None
    p99_ms: float | None
    requests: float | None = None  # how many requests were judged, where they were counted

    def within(self, success_rate_min: float, p99_latency_max_ms: float) -> bool:
        return (
            self.success_rate is not None and self.success_rate >= success_rate_min
            and self.p99_ms is not None and self.p99_ms <= p99_latency_max_ms
        )


def golden_signals(metrics: "Metrics", service: str, window: str = "1m", sel: str | None = None) -> GoldenSignals:
    """Request rate, success rate and p99 of ``service`` (or of the pods ``sel`` matches) over ``window``."""
    import math

    from ..errors import NoData

    values: dict[str, float | None] = {}
    for name, promql in signal_queries(sel or selector(service), window).items():
        try:
            values[name] = metrics.query(promql)
        except NoData:
            values[name] = None
    if values["p99_ms"] is not None and math.isinf(values["p99_ms"]):
        values["p99_ms"] = None  # all requests above the last finite bucket: no usable estimate
    return GoldenSignals(service, window, **values)  # type: ignore[arg-type]


def served_signals(metrics: "Metrics", service: str, sel: str, seconds: float, window: str) -> GoldenSignals:
    """The signals of every request the pods ``sel`` matches served since they started, from the raw
    counters: exact where ``rate`` over a window would miss what was served before Prometheus first
    scraped a new pod. Meaningful only for pods that all started within the window judged
    (``seconds`` long, named ``window``) and never restarted: the caller checks that."""
    import math

    from ..errors import NoData

    def value(promql: str) -> float | None:
        try:
            return metrics.query(promql)
        except NoData:
            return None

    requests, errors = value(request_total(sel)), value(error_total(sel))
    p99 = value(latency_quantile_total(0.99, sel))
    if not requests or errors is None:
        return GoldenSignals(service, window, None, None, None, requests)
    return GoldenSignals(service, window, requests_per_s=round(requests / seconds, 2) if seconds > 0 else None,
                         success_rate=1 - errors / requests, p99_ms=None if p99 is None or math.isinf(p99) else p99,
                         requests=requests)


# -- plots -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class Panel:
    """One signal panel: a title, its series (columns = series, time index), an SLO line."""

    title: str
    frame: "pd.DataFrame | None"  # None: no data (drawn as such, never as an empty healthy plot)
    slo: float | None = None
    query: str = ""


def signal_panels(metrics: "Metrics", sel: str, *, by: str | None, minutes: float, window: str = "15s",
                  signals: Sequence[str] = ("success_rate", "p99_ms"), slo: Any = None,
                  step_s: float | None = None, end: Any = None) -> list[Panel]:
    """Range queries for the named signals (success rate drawn in %), each a Panel."""
    from ..errors import BackendUnavailable, NoData

    bounds = {"success_rate": 100 * slo.success_rate_min if slo else None,
              "p99_ms": slo.p99_latency_max_ms if slo else None}
    online = metrics.is_online()  # a down server is asked once, not once per panel through retries
    panels = []
    for name, promql in signal_queries(sel, window, by, signals).items():
        shown = f"100 * ({promql})" if name == "success_rate" else promql
        try:
            if not online:
                raise NoData(f"Prometheus at {metrics.url} unreachable")
            frame = metrics.range(shown, minutes=minutes, step_s=step_s or max(1.0, minutes * 60 / 200), end=end)
            if by:
                frame = frame.rename(columns=lambda c: c.replace(f"{by}=", ""))
        except (NoData, BackendUnavailable):
            frame = None
        panels.append(Panel(SIGNALS[name], frame, bounds.get(name), shown))
    return panels


def plot_signal_panels(panels: Sequence[Panel], *, title: str = "", marks: Sequence[tuple[Any, str, str]] = (),
                       colours: dict[str, str] | None = None) -> "Figure":
    """Panels side by side with their SLO lines; ``marks`` are vertical lines (time, label, colour)
    such as a step change or a decision."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(6.2 * len(panels), 3.6), squeeze=False)
    for ax, panel in zip(axes[0], panels):
        if panel.frame is None or panel.frame.empty:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes, color="grey")
        else:
            for column in panel.frame:
                ax.plot(panel.frame.index, panel.frame[column], label=str(column),
                        color=(colours or {}).get(str(column)), marker=".", markersize=3, linewidth=1.2)
        if panel.slo is not None:
            ax.axhline(panel.slo, color="red", linestyle="--", linewidth=1, label="SLO")
        for when, label, colour in marks:
            ax.axvline(when, color=colour, linestyle=":", linewidth=1)
            ax.annotate(label, (when, 1.0), xycoords=("data", "axes fraction"), fontsize=6, rotation=90,
                        va="top", ha="right", color=colour)
        ax.set_title(f"{title}: {panel.title}" if title else panel.title, fontsize=9)
        ax.legend(fontsize=7, loc="best")
        ax.tick_params(axis="x", labelrotation=30, labelsize=7)
    fig.tight_layout()
    plt.close(fig)  # shown once, by the cell that returns or displays it
    return fig
