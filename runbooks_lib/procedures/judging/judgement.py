"""Judging a version by its golden signals against the SLOs: the same check for a deploy and a rollback.

A deploy judges the version it brought; a rollback judges the version it went back to, because
a rollback that lands on a version failing its SLOs has not recovered anything. Both read the
signals of the pods that actually run the version (by pod name, so a stale ``version`` label
cannot mislead the query), draw the decision before taking it, and raise with the numbers.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from ...display import show
from ...config.clock import parse_time
from ...platform.cluster import pod_state
from ...errors import CheckFailed, NoData

if TYPE_CHECKING:
    import pandas as pd

    from ...platform.cluster import Cluster
    from ...run.context import RunContext
    from ...platform.metrics import Metrics
    from ...platform.signals import GoldenSignals

__all__ = ["Before", "Evidence", "evidence", "judge_version", "plot_versions", "serving_since", "signals_before"]


def _pod_selector(service: str, pods: list[str]) -> str:
    # Pod names are DNS labels ([a-z0-9.-]): safe inside a PromQL regex as they are.
    return f'job="{service}",pod=~"{"|".join(sorted(pods))}"'


def judge_version(ctx: "RunContext", cluster: "Cluster", service: str, version: str, *, observe_s: float,
                  pod_label_selector: str, created_after: float | None = None) -> "pd.DataFrame":
    """Success rate and p99 of the pods running ``version`` over ``observe_s``, against the SLOs.

    ``pod_label_selector`` picks those pods (e.g. their ReplicaSet's pod-template-hash). Raises
    NoData when Prometheus saw no traffic and CheckFailed, with the numbers, when an SLO is missed.

    ``created_after`` (Unix seconds) is when the change that made these pods was applied (a
    rollback's undo). When every pod judged started after it and never restarted, their counters
    hold every request they served, so the traffic since the first of them was ready counts toward
    ``observe_s``: only what is missing is waited for, and the table states the window judged.
    Otherwise (or without it) the window starts now, as for a deploy.
    """
    import pandas as pd

    from ...platform.metrics import Metrics

    slo = ctx.profile.slo
    judged = [(p, state) for p in cluster.pods(pod_label_selector) if (state := pod_state(p)).ready and not state.deleting]
    if not judged:
        raise CheckFailed(f"{service} {version}: no ready pod ({pod_label_selector}) to judge")
    pods = [p for p, _ in judged]
    selector = _pod_selector(service, [state.name for _, state in judged])
    metrics = Metrics.of(ctx.profile.prometheus)
    what = f"{len(pods)} pods of {service} {version}"
    since = serving_since(pods, created_after) if created_after is not None else None
    if created_after is not None and since is None:
        print(f"observing {version} from now: a pod judged predates the change or restarted, so its counters "
              "do not hold just the traffic since the change")
    if since is None:
        signals = _observe_from_now(metrics, service, version, selector, len(pods), observe_s, what)
        # The rates' window: its requests are the rate times its length, as Prometheus' increase() reads them.
        judged = None if signals.requests_per_s is None else signals.requests_per_s * _rate_window_s(observe_s)
    else:
        signals, seconds = _judge_served(metrics, service, version, selector, len(pods), since, observe_s, what)
        ctx.figure("judged_window_s", round(seconds, 2))
        ctx.figure("judged_requests", signals.requests)
        judged = signals.requests
    table = pd.DataFrame([_signals_row(ctx, version, len(pods), signals, judged)]).set_index("version")
    # The decision, drawn, before it is taken: a failed judgement stops the notebook here.
    show(plot_versions(ctx, service, minutes=max(2.0, observe_s / 60 + 1)))
    _decide(version, signals, slo)
    return table


def _signals_row(ctx: "RunContext", version: str, pods: int, signals: "GoldenSignals", judged: float | None) -> dict[str, Any]:
    """The judged window as the record's table shows it, with how much its requests show (evidence);
    its figures go to the record too."""
    slo = ctx.profile.slo
    row: dict[str, Any] = {
        "version": version, "pods": pods, "window": signals.window, "requests/s": signals.requests_per_s,
        "success rate %": None if signals.success_rate is None else round(100 * signals.success_rate, 2),
        "SLO success %": 100 * slo.success_rate_min,
        "p99 ms": None if signals.p99_ms is None else round(signals.p99_ms, 1), "SLO p99 ms": slo.p99_latency_max_ms}
    if signals.requests is not None:
        row["requests"] = int(signals.requests)
    if judged is not None and signals.success_rate is not None and (
            weight := evidence(slo.success_rate_min, judged, signals.success_rate)) is not None:
        row["evidence"] = weight.text
        if weight.state != "bad":
            ctx.figure("judged_requests_needed", weight.needed)
    ctx.figure("success_rate", signals.success_rate)
    ctx.figure("p99_ms", signals.p99_ms)
    return row


def _decide(version: str, signals: "GoldenSignals", slo: Any) -> None:
    """NoData without traffic to judge; CheckFailed with the numbers when an SLO is missed."""
    if signals.success_rate is None or signals.p99_ms is None:
        raise NoData(f"no traffic data for {version} over {signals.window}: cannot judge it")
    if not signals.within(slo.success_rate_min, slo.p99_latency_max_ms):
        raise CheckFailed(
            f"{version}: success rate {100 * signals.success_rate:.2f} % "
            f"(SLO ≥ {100 * slo.success_rate_min:g} %), p99 {signals.p99_ms:.0f} ms (SLO ≤ {slo.p99_latency_max_ms:g} ms) "
            f"over {signals.window}"
        )


@dataclass(frozen=True)
class Before:
    """A version's own signals over the minutes before it was replaced: ``failed`` True when they
    missed an SLO, False when they met both, None when Prometheus had nothing to say."""

    failed: bool | None
    text: str


def signals_before(metrics: "Metrics", service: str, replica_set: str, until: float, *, success_rate_min: float,
                   p99_max_ms: float, window_s: int = 300) -> Before:
    """The success rate and p99 of the pods of ``replica_set`` over the ``window_s`` before ``until``
    (Unix seconds: a rollback's undo), read after the fact (Prometheus keeps the series of pods
    that are gone), so that a rollback spends no time on it before its undo."""
    from ...errors import BackendUnavailable, RunbookError
    from ...platform.signals import error_count, latency_quantile, request_count

    # A Deployment's pods are named after their ReplicaSet: <replica set>-<5 characters>.
    sel = f'job="{service}",pod=~"{replica_set}-[a-z0-9]+"'
    window = f"{window_s}s"

    def value(promql: str) -> float | None:
        try:
            return metrics.query(promql, at=until)
        except NoData:
            return None

    try:
        requests, errors = value(request_count(sel, window)), value(error_count(sel, window))
        p99 = value(latency_quantile(0.99, sel, window))
    except (BackendUnavailable, RunbookError) as e:
        return Before(None, f"its signals before the rollback could not be read ({e})")
    if not requests:
        return Before(None, f"no request was served by {replica_set} in the {window_s} s before the rollback")
    success = 1 - (errors or 0.0) / requests
    p99 = None if p99 is None or math.isinf(p99) else p99
    missed = success < success_rate_min or (p99 is not None and p99 > p99_max_ms)
    text = (f"success {100 * success:.2f} % of {requests:.0f} requests (SLO ≥ {100 * success_rate_min:g} %), "
            + (f"p99 {p99:.0f} ms" if p99 is not None else "p99 unknown") + f" (SLO ≤ {p99_max_ms:g} ms) "
            f"over the {window_s} s before the rollback")
    return Before(missed, text)


@dataclass(frozen=True)
class Evidence:
    """How much the judged requests show, beyond meeting the SLO: ``needed`` is how many requests
    without a further error the sequential test needs to rule out a bad error rate."""

    state: str  # the SPRT's: "good" (bad rate ruled out), "bad" (bad rate shown), "continue" (too few)
    needed: int
    text: str


def evidence(success_rate_min: float, requests: float, success_rate: float) -> Evidence | None:
    """The canary judge's sequential test (Wald's SPRT, its default bounds) on the judged requests:
    the SLO's error budget against the error rate a canary must be caught at.

    Shown beside the verdict, never instead of it: at a sandbox's few requests a second, seconds
    of traffic meet the SLO (no error seen) long before they could rule out a 5 % error rate, and a
    reader should see which of the two the window showed. None when the SLO leaves no test to make
    (an error budget of zero, or one as large as the bad rate)."""
    from ..canary.judge import SPRT, Policy

    policy = Policy(success_rate_min=success_rate_min)
    if not 0 < policy.error_budget < policy.bad_error_rate:
        return None
    test = SPRT(policy.error_budget, policy.bad_error_rate, policy.alpha, policy.beta)
    errors = round(requests * (1 - success_rate))
    state = test.update(requests, errors)
    _, per_success = test.step_weights()  # negative: each success moves toward ruling the bad rate out
    needed = math.ceil(requests + max(0.0, (test.lower - test.llr) / per_success))
    bounds = (f"SPRT {100 * policy.error_budget:g} % vs {100 * policy.bad_error_rate:g} % errors, "
              f"α = β = {100 * policy.alpha:g} %")
    n = int(requests)
    if state == "good":
        text = f"strong: {n} requests rule out {100 * policy.bad_error_rate:g} % errors ({bounds})"
    elif state == "bad":
        text = f"bad: {n} requests with {errors} errors show {100 * policy.bad_error_rate:g} % errors or worse ({bounds})"
    else:
        text = (f"weak: {n} requests cannot rule out {100 * policy.bad_error_rate:g} % errors; "
                f"~{needed} without a further error would ({bounds})")
    return Evidence(state, needed, text)


def _observe_from_now(metrics: "Metrics", service: str, version: str, selector: str, pods: int, observe_s: float,
                      what: str) -> "GoldenSignals":
    """Judge only once Prometheus scrapes every pod (a window without them says nothing), then
    observe ``observe_s`` and read the rates over that window."""
    from ...display import progress_bar
    from ...platform.signals import golden_signals

    metrics.wait_for_targets(selector, pods, timeout_s=30, what=what)
    for _ in progress_bar(range(int(observe_s)), desc=f"observing {version}", unit="s"):
        time.sleep(1)
    return golden_signals(metrics, service, f"{_rate_window_s(observe_s)}s", selector)


def _rate_window_s(observe_s: float) -> int:
    """The rates' window for ``observe_s`` observed: at least 5 s, so that it spans a few scrapes."""
    return max(int(observe_s), 5)


def _judge_served(metrics: "Metrics", service: str, version: str, selector: str, pods: int, since: float,
                  observe_s: float, what: str) -> tuple["GoldenSignals", float]:
    """Every request the pods served from ``since`` (the first of them ready) until each was last
    scraped, once that window is ``observe_s`` long: wait for what is missing, then for a scrape
    of every pod after it."""
    import matplotlib.pyplot  # noqa: F401  (for the plot drawn after the window: imported while it fills)

    from ...platform.signals import served_signals

    _wait_until(since + observe_s, version, already=time.time() - since, observe_s=observe_s)
    end = metrics.scraped_after(selector, pods, since + observe_s, timeout_s=30, what=what)
    window = f"{_utc(since)} → {_utc(end)} ({end - since:.1f} s since the first pod of {version} was ready)"
    return served_signals(metrics, service, selector, end - since, window), end - since


def _wait_until(moment: float, version: str, *, already: float, observe_s: float) -> None:
    from ...display import progress_bar

    if moment <= time.time():
        return
    with progress_bar(total=round(observe_s, 1), initial=round(min(max(already, 0.0), observe_s), 1),
                      desc=f"observing {version} (served since its first ready pod)", unit="s") as bar:
        while (left := moment - time.time()) > 0:
            time.sleep(min(0.25, left))
            bar.n = round(min(observe_s - max(left - 0.25, 0.0), observe_s), 1)
            bar.refresh()


def serving_since(pods: list[dict[str, Any]], created_after: float) -> float | None:
    """Unix seconds from which ``pods`` may have served traffic (the first Ready transition), when
    their counters hold all of it: each started after ``created_after`` and never restarted.
    None when one predates the change or restarted (its counters then hold other traffic, or lost
    some). Kubernetes keeps these times to the second: a whole-second time may be up to one second
    early, so one second is added (the window judged is never claimed longer than it was)."""
    readies = []
    for pod in pods:
        status = pod.get("status") or {}
        containers = status.get("containerStatuses") or []
        started = [_epoch(((c.get("state") or {}).get("running") or {}).get("startedAt"), at_the_latest=False)
                   for c in containers]
        ready = next((_epoch(c.get("lastTransitionTime"), at_the_latest=True) for c in status.get("conditions") or []
                      if c.get("type") == "Ready" and c.get("status") == "True"), None)
        if (not containers or any(int(c.get("restartCount") or 0) for c in containers) or None in started
                or ready is None or min(started) < math.floor(created_after)):  # type: ignore[type-var]
            return None
        readies.append(ready)
    return min(readies) if readies else None


def _epoch(value: Any, *, at_the_latest: bool) -> float | None:
    """A Kubernetes time (string or datetime) as Unix seconds; ``at_the_latest``: one second later
    when it is a whole second (the moment was somewhere in that second)."""
    moment = parse_time(value)
    if moment is None:
        return None
    return moment.timestamp() + (1.0 if at_the_latest and moment.microsecond == 0 else 0.0)


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def plot_versions(ctx: "RunContext", service: str, minutes: float = 5) -> Any:
    """Success rate and p99 per version over the last minutes, with the SLO lines: the decision,
    drawn with the same queries that took it (runbooks_lib.platform.signals)."""
    from ...platform.metrics import Metrics
    from ...platform.signals import plot_signal_panels, selector, signal_panels

    panels = signal_panels(Metrics.of(ctx.profile.prometheus), selector(service), by="version", minutes=minutes,
                           window="15s", slo=ctx.profile.slo, step_s=2)
    return plot_signal_panels(panels, title=f"{service} by version")
