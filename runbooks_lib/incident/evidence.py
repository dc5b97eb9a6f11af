"""The golden signals as the incident needs them: series over the window, and "now".

``signal_queries`` (runbooks_lib.signals) is the one place the PromQL lives; this module
asks it for every query through ``_queries`` alone, so switching to the team's shared signal
definitions later is a one-line change. Prometheus being down is an outcome, not a crash: the
functions say which evidence is missing and the run goes on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Sequence

from ..errors import BackendUnavailable, NoData, RunbookError

if TYPE_CHECKING:
    import pandas as pd

    from ..metrics import Metrics
    from ..signals import GoldenSignals

__all__ = ["SignalFrames", "signal_frames", "current_signals", "versions_seen", "usable_window", "SIGNALS", "WINDOWS"]

SIGNALS = ("requests_per_s", "success_rate", "p99_ms")
# Rate windows from short to long; the first with data is used (see usable_window).
WINDOWS = ("15s", "1m", "2m")


def _queries(selector: str, window: str) -> dict[str, str]:
    """The golden-signal PromQL for the pods ``selector`` matches (the one switch point)."""
    from ..signals import signal_queries

    return signal_queries(selector, window)


@dataclass
class SignalFrames:
    """Per signal, a frame indexed by time with one column per series ("all", then versions)."""

    service: str
    frames: dict[str, "pd.DataFrame"] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    window: str | None = None  # the rate window the series were read with

    def overall(self, signal: str) -> "pd.Series | None":
        frame = self.frames.get(signal)
        return None if frame is None or "all" not in frame else frame["all"]


def versions_seen(metrics: "Metrics", service: str, minutes: float) -> list[str]:
    """The version labels that served ``service`` within the last ``minutes``."""
    found = metrics.vector(f'count by (version) (count_over_time(http_requests_total{{job="{service}"}}[{max(1, int(minutes))}m]))')
    return sorted({labels.get("version", "") for labels, _ in found if labels.get("version")})


def usable_window(metrics: "Metrics", service: str, windows: Sequence[str] = WINDOWS) -> str:
    """The shortest rate window with data: a few seconds where scrapes are frequent (the sandbox
    scrapes every second), a minute or two where they are not (production's 15–30 s)."""
    for window in windows:
        try:
            metrics.query(_queries(f'job="{service}"', window)["requests_per_s"])
            return window
        except NoData:
            continue
    return windows[-1]


def signal_frames(metrics: "Metrics", service: str, start: datetime, end: datetime | None = None,
                  window: str | None = None, max_points: int = 240) -> SignalFrames:
    """Request rate, success rate and p99 for the service and per version, from ``start`` to ``end``."""
    import pandas as pd

    end = end or datetime.now(timezone.utc)
    minutes = max((end - start).total_seconds() / 60, 1.0)
    step = max(1.0, minutes * 60 / max_points)
    result = SignalFrames(service)
    try:
        window = result.window = window or usable_window(metrics, service, ("30s", *WINDOWS[1:]))
        selectors = {"all": f'job="{service}"'}
        selectors.update({v: f'job="{service}",version="{v}"' for v in versions_seen(metrics, service, minutes)})
    except (BackendUnavailable, RunbookError) as e:
        result.missing.append(f"golden signals of {service}: {e}")
        return result
    columns: dict[str, dict[str, pd.Series]] = {s: {} for s in SIGNALS}
    for name, selector in selectors.items():
        for signal, promql in _queries(selector, window).items():
            try:
                frame = metrics.range(promql, minutes=minutes, step_s=step, end=end)
            except NoData:
                continue
            except (BackendUnavailable, RunbookError) as e:
                result.missing.append(f"golden signals of {service}: {e}")
                return result
            columns[signal][name] = frame.iloc[:, 0].replace([math.inf, -math.inf], math.nan)
    for signal, series in columns.items():
        if series:
            result.frames[signal] = pd.DataFrame(series).sort_index()
    if not result.frames:
        result.missing.append(f"golden signals of {service}: no samples between {start:%H:%M:%S} and {end:%H:%M:%S} UTC")
    return result


def current_signals(metrics: "Metrics", services: Sequence[str], window: str) -> dict[str, "GoldenSignals | None"]:
    """Each service's signals over the last ``window``; None for a service Prometheus cannot answer."""
    from ..signals import GoldenSignals

    found: dict[str, GoldenSignals | None] = {}
    for service in services:
        values: dict[str, float | None] = {}
        try:
            for name, promql in _queries(f'job="{service}"', window).items():
                try:
                    values[name] = metrics.query(promql)
                except NoData:
                    values[name] = None
        except (BackendUnavailable, RunbookError):
            found[service] = None
            continue
        if values.get("p99_ms") is not None and math.isinf(values["p99_ms"] or 0):
            values["p99_ms"] = None
        found[service] = GoldenSignals(service, window, **values)  # type: ignore[arg-type]
    return found
