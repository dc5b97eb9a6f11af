"""Judging a version by its golden signals against the SLOs: the same check for a deploy and a rollback.

A deploy judges the version it brought; a rollback judges the version it went back to, because
a rollback that lands on a version failing its SLOs has not recovered anything. Both read the
signals of the pods that actually run the version (by pod name, so a stale ``version`` label
cannot mislead the query), draw the decision before taking it, and raise with the numbers.
"""
from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from .errors import CheckFailed, NoData

if TYPE_CHECKING:
    import pandas as pd

    from .cluster import Cluster
    from .context import RunContext

__all__ = ["judge_version", "plot_versions", "show"]


def show(figure: Any) -> None:
    """Display a figure in the notebook (the record); outside a kernel there is nothing to show."""
    ipython = sys.modules.get("IPython")
    if ipython is not None and ipython.get_ipython() is not None:
        from IPython.display import display

        display(figure)


def _pod_selector(service: str, pods: list[str]) -> str:
    # Pod names are DNS labels ([a-z0-9.-]): safe inside a PromQL regex as they are.
    return f'job="{service}",pod=~"{"|".join(sorted(pods))}"'


def judge_version(ctx: "RunContext", cluster: "Cluster", service: str, version: str, *, observe_s: float,
                  pod_label_selector: str) -> "pd.DataFrame":
    """Success rate and p99 of the pods running ``version`` over ``observe_s``, against the SLOs.

    ``pod_label_selector`` picks those pods (e.g. their ReplicaSet's pod-template-hash). Raises
    NoData when Prometheus saw no traffic and CheckFailed, with the numbers, when an SLO is missed.
    """
    import pandas as pd
    from .bars import progress_bar

    from .metrics import Metrics
    from .signals import golden_signals

    slo = ctx.profile.slo
    pods = [p.name for p in cluster.pod_states(pod_label_selector) if p.ready and not p.deleting]
    if not pods:
        raise CheckFailed(f"{service} {version}: no ready pod ({pod_label_selector}) to judge")
    selector = _pod_selector(service, pods)
    metrics = Metrics(ctx.profile.prometheus.url)
    # Judge only once Prometheus scrapes every pod: a window without them says nothing.
    metrics.wait_for_targets(selector, len(pods), timeout_s=30, what=f"{len(pods)} pods of {service} {version}")
    for _ in progress_bar(range(int(observe_s)), desc=f"observing {version}", unit="s"):
        time.sleep(1)
    window = f"{max(int(observe_s), 5)}s"
    signals = golden_signals(metrics, service, window, selector)
    row = {"version": version, "pods": len(pods), "window": window, "requests/s": signals.requests_per_s,
           "success rate %": None if signals.success_rate is None else round(100 * signals.success_rate, 2),
           "SLO success %": 100 * slo.success_rate_min,
           "p99 ms": None if signals.p99_ms is None else round(signals.p99_ms, 1), "SLO p99 ms": slo.p99_latency_max_ms}
    ctx.figure("success_rate", signals.success_rate)
    ctx.figure("p99_ms", signals.p99_ms)
    table = pd.DataFrame([row]).set_index("version")
    # The decision, drawn, before it is taken: a failed judgement stops the notebook here.
    show(plot_versions(ctx, service, minutes=max(2.0, observe_s / 60 + 1)))
    if signals.success_rate is None or signals.p99_ms is None:
        raise NoData(f"no traffic data for {version} over {window}: cannot judge it")
    if not signals.within(slo.success_rate_min, slo.p99_latency_max_ms):
        raise CheckFailed(
            f"{version}: success rate {100 * signals.success_rate:.2f} % "
            f"(SLO ≥ {100 * slo.success_rate_min:g} %), p99 {signals.p99_ms:.0f} ms (SLO ≤ {slo.p99_latency_max_ms:g} ms) "
            f"over {window}"
        )
    return table


def plot_versions(ctx: "RunContext", service: str, minutes: float = 5) -> Any:
    """Success rate and p99 per version over the last minutes, with the SLO lines: the decision,
    drawn with the same queries that took it (runbooks_lib.signals)."""
    from .metrics import Metrics
    from .signals import plot_signal_panels, selector, signal_panels

    panels = signal_panels(Metrics(ctx.profile.prometheus.url), selector(service), by="version", minutes=minutes,
                           window="15s", slo=ctx.profile.slo, step_s=2)
    return plot_signal_panels(panels, title=f"{service} by version")
