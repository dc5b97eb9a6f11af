"""Judging a version by its golden signals against the SLOs: the same check for a deploy and a rollback.

A deploy judges the version it brought; a rollback judges the version it went back to, because
a rollback that lands on a version failing its SLOs has not recovered anything. Both read the
signals of the pods that actually run the version (by pod name, so a stale ``version`` label
cannot mislead the query), draw the decision before taking it, and raise with the numbers.

The verdict is the project's one sequential verdict (``sequential.py``): the pods' counters are
read every second and the window ends as soon as the evidence decides; ``analysis_s`` and
``verify_s`` are its maximum. Each window, look by look, goes into the record (``judged``).
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
from .sequential import Evidence, Look, SequentialVerdict, Verdict, VerdictPolicy
from .sequential import evidence as sequential_evidence

if TYPE_CHECKING:
    import pandas as pd

    from ...platform.cluster import Cluster
    from ...run.context import RunContext
    from ...platform.metrics import Metrics

__all__ = ["Before", "Evidence", "evidence", "judge_version", "plot_versions", "serving_since", "signals_before",
           "WindowCounters", "watch"]


def _pod_selector(service: str, pods: list[str]) -> str:
    # Pod names are DNS labels ([a-z0-9.-]): safe inside a PromQL regex as they are.
    return f'job="{service}",pod=~"{"|".join(sorted(pods))}"'


def judge_version(ctx: "RunContext", cluster: "Cluster", service: str, version: str, *, observe_s: float,
                  pod_label_selector: str, created_after: float | None = None, kind: str = "deploy analysis",
                  bake: bool = False) -> "pd.DataFrame":
    """Success rate and p99 of the pods running ``version``, judged by the sequential verdict
    (judging/sequential.py): it ends the moment the evidence suffices, ``observe_s`` at the most.

    ``bake``: the window is a watch that must last (blue-green's monitoring before the old colour
    goes): evidence of a bad version ends it at once, evidence of a good one does not.

    ``pod_label_selector`` picks those pods (e.g. their ReplicaSet's pod-template-hash). Raises
    NoData when Prometheus saw no traffic and CheckFailed, with the numbers, when the verdict fails.

    ``created_after`` (Unix seconds) is when the change that made these pods was applied (a
    rollback's undo). When every pod judged started after it and never restarted, their counters
    hold every request they served, so the window starts when the first of them was ready and
    what they already served counts. Otherwise (or without it) the window starts now, and its
    maximum is never below ``MIN_WINDOW_S`` (a few scrapes: a shorter one could hold no request).
    """
    import pandas as pd

    from ...platform.metrics import Metrics

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
        metrics.wait_for_targets(selector, len(pods), timeout_s=30, what=what)
        counters = WindowCounters(metrics, selector, len(pods), time.time(), served=False, what=what)
        max_s = max(observe_s, MIN_WINDOW_S)
    else:
        counters = WindowCounters(metrics, selector, len(pods), since, served=True, what=what)
        max_s = observe_s
    verdict = watch(counters, SequentialVerdict(VerdictPolicy.from_slo(ctx.profile.slo), max_s), version, bake=bake)
    window = _window_text(counters, verdict, version)
    ctx.judged_window(verdict.record(kind=kind, service=service, version=version, window=window))
    table = pd.DataFrame([_verdict_row(ctx, version, len(pods), verdict, window)]).set_index("version")
    # The decision, drawn, before it is taken: a failed judgement stops the notebook here.
    show(plot_versions(ctx, service, minutes=max(2.0, verdict.decided_after_s / 60 + 1)))
    _decide(version, verdict, window, ctx.profile.slo)
    return table


MIN_WINDOW_S = 5.0  # a window observed from now spans a few scrapes at the least
LOOK_S = 1.0  # between looks: the sandbox scrapes every second; a production Prometheus less often


@dataclass(frozen=True)
class WindowCounters:
    """Where a window's looks come from: the pods' raw counters, from ``start`` (Unix seconds).
    ``served``: the pods started within the window, so their counters since they started are it;
    otherwise the counters now minus the same counters at ``start``."""

    metrics: "Metrics"
    selector: str
    pods: int
    start: float
    served: bool
    what: str

    def look(self, moment: float) -> Look:
        from ...platform import signals

        sel = self.selector
        if self.served:
            queries = (signals.request_total(sel), signals.error_total(sel), signals.latency_quantile_total(0.99, sel))
        else:
            queries = (signals.request_total_since(sel, self.start), signals.error_total_since(sel, self.start),
                       signals.latency_quantile_since(0.99, sel, self.start))
        requests, errors, p99 = (self._value(q) for q in queries)
        requests = max(requests or 0.0, 0.0)  # a pod restarted in the window resets its counters: never below 0
        errors = min(max(errors or 0.0, 0.0), requests)
        p99 = None if p99 is None or math.isinf(p99) or math.isnan(p99) or not requests else p99
        return Look(moment - self.start, requests, errors, p99)

    def _value(self, promql: str) -> float | None:
        try:
            return self.metrics.query(promql)
        except NoData:
            return None

    def scraped_after(self, moment: float) -> float:
        """Wait for a scrape of every pod after ``moment``: their counters then hold the whole window."""
        end = self.metrics.scraped_after(self.selector, self.pods, moment, timeout_s=30, what=self.what)
        return min(end, time.time())


def watch(counters: WindowCounters, verdict: SequentialVerdict, version: str, *, bake: bool = False) -> Verdict:
    """Look every LOOK_S until the verdict decides or the window's maximum passes; then the last look.

    With ``bake``, only a failing decision ends the watch early: a passing one is taken at the
    window's end, from its last look (a fault that appears after the first good seconds is seen)."""
    from ...display import progress_bar

    deadline = counters.start + verdict.max_s
    desc = f"watching {version} for {verdict.max_s:g} s" if bake else f"judging {version} (until the evidence suffices)"
    with progress_bar(total=round(verdict.max_s, 1), desc=desc, unit="s") as bar:
        while (now := time.time()) < deadline:
            decided = verdict.look(counters.look(now))
            if decided is not None and (decided.passed is False or not bake):
                return decided
            bar.n = round(min(now - counters.start, verdict.max_s), 1)
            bar.refresh()
            time.sleep(min(LOOK_S, max(deadline - time.time(), 0.0)))
        end = counters.scraped_after(deadline)
        bar.n = round(verdict.max_s, 1)
        bar.refresh()
    return verdict.look(counters.look(end)) or verdict.close()


def _window_text(counters: WindowCounters, verdict: Verdict, version: str) -> str:
    end = counters.start + verdict.decided_after_s
    since = f"since the first pod of {version} was ready" if counters.served else "observed from now"
    return f"{_utc(counters.start)} → {_utc(end)} ({verdict.decided_after_s:.1f} s {since})"


def _verdict_row(ctx: "RunContext", version: str, pods: int, verdict: Verdict, window: str) -> dict[str, Any]:
    """The judged window as the record's table shows it: what it counted, how it ended and how much
    its requests show (evidence); its figures go to the record too."""
    slo, last = ctx.profile.slo, verdict.last
    seconds = verdict.decided_after_s
    success = verdict.success_rate
    row: dict[str, Any] = {
        "version": version, "pods": pods, "window": window,
        "requests/s": round(last.requests / seconds, 2) if seconds > 0 else None, "requests": int(last.requests),
        "success rate %": None if success is None else round(100 * success, 2), "SLO success %": 100 * slo.success_rate_min,
        "p99 ms": None if last.p99_ms is None else round(last.p99_ms, 1), "SLO p99 ms": slo.p99_latency_max_ms,
        "ended by": "decision" if verdict.ended_by == "decision" else f"the window's end ({verdict.max_s:g} s)",
        "decided after s": round(seconds, 1)}
    if verdict.evidence is not None:
        row["evidence"] = verdict.evidence.text
        if verdict.evidence.state != "bad":
            ctx.figure("judged_requests_needed", verdict.evidence.needed)
    ctx.figure("judged_window_s", round(seconds, 2))
    ctx.figure("judged_requests", last.requests)
    ctx.figure("decided_by_evidence", verdict.ended_by == "decision")
    ctx.figure("success_rate", success)
    ctx.figure("p99_ms", last.p99_ms)
    return row


def _decide(version: str, verdict: Verdict, window: str, slo: Any) -> None:
    """NoData without traffic to judge; CheckFailed with the numbers when the verdict fails."""
    success, last = verdict.success_rate, verdict.last
    if verdict.passed is None or success is None:
        raise NoData(f"no traffic data for {version} over {window}: cannot judge it")
    if not verdict.passed:
        p99 = "unknown" if last.p99_ms is None else f"{last.p99_ms:.0f} ms"
        raise CheckFailed(
            f"{version}: success rate {100 * success:.2f} % (SLO ≥ {100 * slo.success_rate_min:g} %), "
            f"p99 {p99} (SLO ≤ {slo.p99_latency_max_ms:g} ms) over {window}: {verdict.why}")


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


def evidence(success_rate_min: float, requests: float, success_rate: float) -> Evidence | None:
    """The sequential test (Wald's SPRT, its default bounds) on the judged requests, in words: the
    SLO's error budget against the error rate a release must be caught at. None when the SLO leaves
    no test to make (an error budget of zero, or one as large as the bad rate)."""
    return sequential_evidence(VerdictPolicy(success_rate_min=success_rate_min), requests,
                               requests * (1 - success_rate))


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
