"""The golden signals as the incident needs them: series over the window, and "now".

``signal_queries`` (runbooks_lib.platform.signals) is the one place the PromQL lives; this module
asks it for every query through ``_queries`` alone, so switching to the team's shared signal
definitions later is a one-line change. Prometheus being down is an outcome, not a crash: the
functions say which evidence is missing and the run goes on.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Sequence

from ...errors import BackendUnavailable, NoData, RunbookError

if TYPE_CHECKING:
    import pandas as pd

    from ...platform.metrics import Metrics
    from ...platform.signals import GoldenSignals

__all__ = ["SignalFrames", "signal_frames", "onset_frames", "ReplicaSetJudgement", "judge_replica_sets", "current_signals", "versions_seen",
           "usable_window", "window_seconds", "SIGNALS", "WINDOWS"]

SIGNALS = ("requests_per_s", "success_rate", "p99_ms")
# Rate windows from short to long; the first with data is used (see usable_window).
WINDOWS = ("15s", "1m", "2m")


def _queries(selector: str, window: str) -> dict[str, str]:
    """The golden-signal PromQL for the pods ``selector`` matches (the one switch point)."""
    from ...platform.signals import signal_queries

    return signal_queries(selector, window)


@dataclass
class SignalFrames:
    """Per signal, a frame indexed by time with one column per series ("all", then versions)."""

    service: str
    frames: dict[str, "pd.DataFrame"] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    window: str | None = None  # the rate window the series were read with
    step_s: float | None = None  # seconds between points

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
    result = SignalFrames(service, step_s=step)
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


def window_seconds(window: str) -> float:
    """A PromQL duration of one unit ("15s", "1m", "2h") in seconds."""
    units = {"s": 1, "m": 60, "h": 3600}
    return float(window[:-1]) * units[window[-1]]


def onset_frames(metrics: "Metrics", service: str, reference: datetime, minutes: float = 10) -> SignalFrames:
    """Success rate and p99 of each pod of ``service`` (one column a pod) and of the service
    ("all"), around the trigger at their finest: the shortest rate window with data, a point a
    second or so, from ``minutes`` before the trigger until now.

    Dating a breach needs both. On the hour's overview (steps of 15 s, 30 s windows) a breach that
    began seconds after a change cannot be told from the change, and a dip minutes earlier blurs
    into it. Per pod, a release that fails again in new pods (rolled back, then pushed again) is
    dated by those pods, where its version's series would join both failures into one."""
    import pandas as pd

    from ...platform.signals import selector, signal_queries

    start = reference - timedelta(minutes=minutes)
    end = datetime.now(timezone.utc)
    span = max((end - start).total_seconds() / 60, 1.0)
    step = max(1.0, span * 60 / 900)
    result = SignalFrames(service, step_s=step)
    try:
        window = result.window = usable_window(metrics, service)
        for signal in ("success_rate", "p99_ms"):
            columns = []
            for by in ("pod", None):
                promql = signal_queries(selector(service), window, by=by, signals=(signal,))[signal]
                try:
                    frame = metrics.range(promql, minutes=span, step_s=step, end=end)
                except NoData:
                    continue
                frame.columns = [c.removeprefix("pod=") if by else "all" for c in frame.columns]
                columns.append(frame.replace([math.inf, -math.inf], math.nan))
            if columns:
                result.frames[signal] = pd.concat(columns, axis=1).sort_index()
    except (BackendUnavailable, RunbookError) as e:
        result.missing.append(f"the breach's onset of {service}: {e}")
    return result


@dataclass(frozen=True)
class ReplicaSetJudgement:
    """What a live ReplicaSet's own requests show: ``state`` is the canary judge's sequential test
    on its errors ("bad", "good", or "continue": too few requests yet), made "bad" by a pod whose
    p99 is above its bound; ``why`` says it in numbers."""

    replica_set: str
    pods: tuple[str, ...]
    state: str
    why: str

    @property
    def decided(self) -> bool:
        return self.state != "continue"


def judge_replica_sets(metrics: "Metrics", service: str, window: str, success_rate_min: float, p99_max_ms: float,
                       owners: dict[str, str]) -> dict[str, ReplicaSetJudgement]:
    """Each live ReplicaSet of ``service`` (``owners``: pod -> its ReplicaSet, the pods that run
    now) judged on its own pods' requests over ``window``. Per ReplicaSet, not per pod: three pods
    of a release decide three times sooner than one. Empty when Prometheus cannot tell."""
    from ..judging.judgement import evidence
    from ...platform.signals import error_count, latency_quantile, request_count, selector

    sel = selector(service)
    try:
        requests = {labels.get("pod", ""): value for labels, value in metrics.vector(request_count(sel, window, "pod"))}
        errors = {labels.get("pod", ""): value for labels, value in metrics.vector(error_count(sel, window, "pod"))}
        p99 = {labels.get("pod", ""): value for labels, value in metrics.vector(latency_quantile(0.99, sel, window, "pod"))}
    except (BackendUnavailable, RunbookError):
        return {}
    groups: dict[str, list[str]] = {}
    for pod, owner in owners.items():
        groups.setdefault(owner, []).append(pod)
    judged = {}
    for owner, pods in sorted(groups.items()):
        served = sum(requests.get(pod, 0.0) for pod in pods)
        failed = sum(errors.get(pod, 0.0) for pod in pods)
        slow = [f"{pod} p99 {p99[pod]:.0f} ms" for pod in pods if requests.get(pod, 0.0) >= 20
                and math.isfinite(p99.get(pod, math.nan)) and p99[pod] > p99_max_ms]
        weight = evidence(success_rate_min, served, 1 - failed / served) if served > 0 else None
        state = "bad" if slow else (weight.state if weight is not None else "continue")
        what = (f"{100 * (1 - failed / served):.1f} % success of {served:.0f} requests over {window}" if served
                else f"no request counted over {window} yet")
        why = "; ".join([what, *(f"{s} (SLO ≤ {p99_max_ms:g} ms)" for s in slow)])
        judged[owner] = ReplicaSetJudgement(owner, tuple(sorted(pods)), state, why)
    return judged


def current_signals(metrics: "Metrics", services: Sequence[str], window: str) -> dict[str, "GoldenSignals | None"]:
    """Each service's signals over the last ``window``; None for a service Prometheus cannot answer."""
    from ...platform.signals import GoldenSignals

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
