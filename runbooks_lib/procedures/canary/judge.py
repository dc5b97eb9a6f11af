"""The canary judge: three layers, each visible, and one decision row per look.

Pure: it sees readings (values with the query that produced them, or "no data") and returns a
``Decision``; nothing here talks to Prometheus or the cluster, so it is tested on synthetic
series and replayed offline by the bench.

1. **Absolute gates** (Flagger): the canary's success rate and p99 over the interval against
   the profile's SLOs; a failed interval holds the step and counts; ``failure_threshold`` failed
   intervals abort.
2. **Canary vs baseline** (Kayenta): the canary's p99 series against the primary's over the same
   window, a Mann-Whitney test with a Hodges-Lehmann estimate of the shift and its confidence
   interval. The regression policy tolerates a shift up to ``tolerated_increase_pct`` % of the
   baseline *and* ``tolerated_increase_ms``; the canary fails only when the whole interval lies
   above that — which catches a +400 ms version whose p99 still meets a 500 ms SLO.
3. **Sequential test** (Wald's SPRT, the one every verdict here shares: judging/sequential.py) on the canary's request and error counts: H0 error rate
   p0 (the SLO's error budget, or the baseline's rate when the baseline does worse) against H1
   p1 (``bad_error_rate``), false-alarm ``alpha`` and miss ``beta``. It aborts the moment the
   log-likelihood ratio crosses ln((1-beta)/alpha) — as soon as the traffic carries enough
   evidence, not after a fixed number of intervals. Symmetrically the canary leaves its first step
   only once the ratio has reached ln(beta/(1-alpha)) (the test accepted it): passing gates on a
   handful of requests is not evidence. By Ville's inequality a canary no worse than
   p0 crosses it with probability at most alpha/(1-beta), however long it is watched.

No data (a canary without requests, Prometheus silent or down) is its own answer: the judge
holds, never advances, never counts it as healthy, and aborts once it has held ``max_hold_s``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal, Mapping, Sequence

from ..judging.sequential import SPRT, Look, expected_requests
from .provider import Reading, Series

__all__ = ["Policy", "Window", "Check", "Decision", "SPRT", "Comparison", "compare", "Judge", "expected_requests"]

Action = Literal["advance", "hold", "abort", "promote"]
Verdict = Literal["pass", "fail", "no data", "continue", "skipped"]


@dataclass(frozen=True)
class Policy:
    """How strict the judge is. Defaults: the guide's SLOs, Kayenta's confidence, a 1 % / 5 % SPRT."""

    success_rate_min: float = 0.99
    p99_max_ms: float = 500.0
    failure_threshold: int = 2  # layer 1: failed intervals before abort (Flagger's threshold)
    gate_min_requests: int = 10  # layer 1: fewer canary requests in an interval is too few for a rate
    confidence: float = 0.98  # layer 2: two-sided confidence of the shift's interval (Kayenta: 0.98)
    tolerated_increase_pct: float = 25.0  # layer 2: p99 may exceed the baseline by this much...
    tolerated_increase_ms: float = 50.0  # ...and by this many ms before it is a regression
    min_points: int = 5  # layer 2: fewer points in a series is no data, not a pass
    alpha: float = 0.01  # layer 3: false-alarm bound
    beta: float = 0.01  # layer 3: miss bound
    bad_error_rate: float = 0.05  # layer 3: H1, an error rate that must be caught
    max_hold_s: float = 60.0  # no data for this long aborts
    require_acceptance: bool = True  # advance only once the SPRT has accepted the canary (H0) at least once

    @classmethod
    def from_slo(cls, slo: Any, **overrides: Any) -> "Policy":
        return cls(success_rate_min=slo.success_rate_min, p99_max_ms=slo.p99_latency_max_ms, **overrides)

    @property
    def error_budget(self) -> float:
        return 1.0 - self.success_rate_min


@dataclass(frozen=True)
class Window:
    """What was measured for one look: readings by name (see ``READINGS``) and p99 series."""

    at: datetime
    step: int  # index in the steps, from 1
    weight: float  # canary weight in %
    last_step: bool
    readings: Mapping[str, Reading]
    series: Mapping[str, Series] = field(default_factory=dict)
    operator: str | None = None  # "hold" / "abort" asked by an operator

    def value(self, name: str) -> float | None:
        reading = self.readings.get(name)
        return reading.value if reading is not None else None

    def query(self, name: str) -> str:
        reading = self.readings.get(name) or self.series.get(name)
        return reading.query if reading is not None else ""


READINGS = ("canary_success_rate", "canary_p99_ms", "baseline_success_rate", "baseline_p99_ms",
            "canary_requests", "canary_errors", "baseline_requests", "baseline_errors")


@dataclass(frozen=True)
class Check:
    """One line of evidence: which layer, what was asked, what came back, against what."""

    layer: str
    name: str
    query: str
    value: float | None
    threshold: str
    verdict: Verdict
    why: str


@dataclass(frozen=True)
class Decision:
    number: int
    at: datetime
    step: int
    weight: float
    action: Action
    why: str
    checks: tuple[Check, ...]

    @property
    def blames_the_canary(self) -> bool:
        """An abort the canary's own numbers decided (a check failed): not a lack of data, not an
        operator's request. Only then is its version remembered as bad."""
        return self.action == "abort" and any(c.verdict == "fail" for c in self.checks)

    def row(self) -> dict[str, Any]:
        """The decision as one table row (the checks' values beside it)."""
        row: dict[str, Any] = {"#": self.number, "time": self.at.strftime("%H:%M:%S"), "step": self.step,
                               "canary %": self.weight, "decision": self.action, "why": self.why}
        for check in self.checks:
            row[f"{check.name}"] = _fmt(check.value)
            row[f"{check.name} verdict"] = check.verdict
        return row


def _fmt(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


# -- layer 2: Mann-Whitney / Hodges-Lehmann ------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    shift: float  # Hodges-Lehmann estimate of canary - baseline
    low: float  # confidence interval of the shift
    high: float
    p_value: float  # one-sided Mann-Whitney: the canary is greater
    tolerance: float  # shift tolerated by the policy
    baseline_median: float
    verdict: Verdict


def compare(canary: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.98,
            tolerated_pct: float = 25.0, tolerated_ms: float = 50.0) -> Comparison:
    """Kayenta's comparison: the shift canary - baseline, its interval, against the tolerance."""
    import numpy as np
    from scipy.stats import mannwhitneyu, norm

    c, b = np.asarray(canary, dtype=float), np.asarray(baseline, dtype=float)
    n, m = len(c), len(b)
    diffs = np.sort(np.subtract.outer(c, b).ravel())
    shift = float(np.median(diffs))
    # The interval from the normal approximation of U, with the tie correction (Kayenta's way).
    ranks_all = np.concatenate([c, b])
    _, counts = np.unique(ranks_all, return_counts=True)
    total = n + m
    ties = float(np.sum(counts ** 3 - counts)) / (total * (total - 1)) if total > 1 else 0.0
    sd = math.sqrt(n * m / 12.0 * ((total + 1) - ties))
    z = norm.ppf(1 - (1 - confidence) / 2)
    k = int(math.floor(n * m / 2.0 - z * sd))
    k = min(max(k, 0), len(diffs) - 1)
    low, high = float(diffs[k]), float(diffs[len(diffs) - 1 - k])
    p_value = float(mannwhitneyu(c, b, alternative="greater").pvalue) if n and m else 1.0
    baseline_median = float(np.median(b))
    tolerance = max(tolerated_pct / 100.0 * abs(baseline_median), tolerated_ms)
    return Comparison(shift, low, high, p_value, tolerance, baseline_median, "fail" if low > tolerance else "pass")


# -- the judge ------------------------------------------------------------------------------------

class Judge:
    """Judges one canary look after look; keeps the state the layers need between looks."""

    def __init__(self, policy: Policy) -> None:
        self.policy = policy
        self.sprt = SPRT(policy.error_budget, policy.bad_error_rate, policy.alpha, policy.beta)
        self.failed_intervals = 0
        self.accepted = False  # the SPRT has reached its lower boundary: enough evidence the canary is good
        self.hold_since: datetime | None = None
        self.decisions: list[Decision] = []
        self._baseline_series: Series | None = None  # last one with data: at 100 % the primary has none
        self._baseline_requests = 0.0
        self._baseline_errors = 0.0

    # Each layer returns its checks; the decision is taken from all of them.

    def _no_data(self, w: Window) -> list[Check]:
        checks = []
        for name in ("canary_requests", "canary_success_rate", "canary_p99_ms"):
            reading = w.readings.get(name)
            if reading is None or not reading.ok:
                why = reading.no_data if reading is not None else "not measured"
                checks.append(Check("data", name, w.query(name), None, "a value", "no data", why))
        requests = w.value("canary_requests")
        if requests is not None and requests < 1:
            checks.append(Check("data", "canary_requests", w.query("canary_requests"), requests, "≥ 1 request",
                                "no data", "the canary served no request in the interval"))
        return checks

    def _gates(self, w: Window) -> list[Check]:
        p = self.policy
        sr, p99 = w.value("canary_success_rate"), w.value("canary_p99_ms")
        assert sr is not None and p99 is not None
        requests = w.value("canary_requests") or 0.0
        if requests < p.gate_min_requests:
            # One error among three requests is "67 %": a rate of a handful of requests says little
            # and would abort good canaries on thin traffic; the sequential test weighs them instead.
            why = f"only {requests:.0f} canary requests in the interval (< {p.gate_min_requests}): too few for a rate"
            return [Check("1 gates", "canary_success_rate", w.query("canary_success_rate"), sr,
                          f"≥ {p.success_rate_min:g}", "skipped", why),
                    Check("1 gates", "canary_p99_ms", w.query("canary_p99_ms"), p99, f"≤ {p.p99_max_ms:g} ms", "skipped", why)]
        return [
            Check("1 gates", "canary_success_rate", w.query("canary_success_rate"), sr, f"≥ {p.success_rate_min:g}",
                  "pass" if sr >= p.success_rate_min else "fail",
                  f"success rate {100 * sr:.2f} % vs SLO ≥ {100 * p.success_rate_min:g} %"),
            Check("1 gates", "canary_p99_ms", w.query("canary_p99_ms"), p99, f"≤ {p.p99_max_ms:g} ms",
                  "pass" if p99 <= p.p99_max_ms else "fail", f"p99 {p99:.0f} ms vs SLO ≤ {p.p99_max_ms:g} ms"),
        ]

    def _comparison(self, w: Window) -> Check:
        p = self.policy
        canary = w.series.get("canary_p99_ms")
        baseline = w.series.get("baseline_p99_ms")
        if baseline is not None and len(baseline.values) >= p.min_points:
            self._baseline_series = baseline
        elif self._baseline_series is not None:
            baseline = self._baseline_series  # the primary has no traffic (100 %): its last window
        query = f"{canary.query if canary else ''} | {baseline.query if baseline else ''}"
        if canary is None or baseline is None or len(canary.values) < p.min_points or len(baseline.values) < p.min_points:
            counts = f"{len(canary.values) if canary else 0} canary / {len(baseline.values) if baseline else 0} baseline points"
            reason = (canary.no_data if canary is not None and canary.no_data else "") or \
                     (baseline.no_data if baseline is not None and baseline.no_data else "")
            return Check("2 vs baseline", "p99_shift_ms", query, None, f"≥ {p.min_points} points each", "no data",
                         f"{counts}{': ' + reason if reason else ''}")
        result = compare(canary.values, baseline.values, confidence=p.confidence,
                         tolerated_pct=p.tolerated_increase_pct, tolerated_ms=p.tolerated_increase_ms)
        why = (f"p99 shift {result.shift:+.0f} ms ({100 * p.confidence:g} % interval {result.low:+.0f}..{result.high:+.0f} ms, "
               f"Mann-Whitney p={result.p_value:.2g}) vs tolerated +{result.tolerance:.0f} ms "
               f"(max of {p.tolerated_increase_pct:g} % of baseline {result.baseline_median:.0f} ms and {p.tolerated_increase_ms:g} ms); "
               f"{len(canary.values)}/{len(baseline.values)} points")
        return Check("2 vs baseline", "p99_shift_ms", query, result.shift, f"interval low ≤ +{result.tolerance:.0f} ms",
                     result.verdict, why)

    def _sequential(self, w: Window) -> Check:
        p = self.policy
        n, e = w.value("canary_requests") or 0.0, w.value("canary_errors") or 0.0
        bn, be = w.value("baseline_requests"), w.value("baseline_errors")
        if bn:
            self._baseline_requests += bn
            self._baseline_errors += be or 0.0
        # vs the SLO's budget, or vs the baseline when the baseline itself does worse (Laplace-smoothed)
        baseline_rate = (self._baseline_errors + 0.5) / (self._baseline_requests + 1.0)
        p0 = max(p.error_budget, baseline_rate if self._baseline_requests >= 100 else 0.0)
        p1 = max(p.bad_error_rate, p0 + (p.bad_error_rate - p.error_budget))
        state = self.sprt.update(n, e, p0, p1)
        verdict: Verdict = "fail" if state == "bad" else ("pass" if state == "good" else "continue")
        why = (f"{self.sprt.errors:.0f} errors in {self.sprt.requests:.0f} canary requests; log-likelihood ratio "
               f"{self.sprt.llr:+.2f} between {self.sprt.lower:.2f} (good) and {self.sprt.upper:.2f} (bad); "
               f"H0 {100 * p0:.2g} % vs H1 {100 * p1:.2g} %, alpha {p.alpha:g}, beta {p.beta:g}")
        query = f"{w.query('canary_requests')} | {w.query('canary_errors')}"
        return Check("3 sequential", "error_llr", query, self.sprt.llr,
                     f"< {self.sprt.upper:.2f}", verdict, why)

    def judge(self, w: Window) -> Decision:
        """One look: the checks of every layer that can speak, then advance, hold, abort or promote."""
        checks: list[Check] = []
        if w.operator == "abort":
            return self._decide(w, "abort", "an operator asked to abort", checks)
        missing = self._no_data(w)
        if not missing:
            checks.append(self._sequential(w))
            if checks[-1].verdict == "fail":
                return self._decide(w, "abort", f"sequential test: {checks[-1].why}", checks)
        else:
            requests = w.value("canary_requests")
            if requests and w.readings.get("canary_errors") is not None:
                checks.append(self._sequential(w))  # counts alone still carry evidence
                if checks[-1].verdict == "fail":
                    return self._decide(w, "abort", f"sequential test: {checks[-1].why}", checks)
            checks = missing + checks
            reasons: dict[str, list[str]] = {}
            for c in missing:
                reasons.setdefault(c.why, []).append(c.name)
            return self._hold_for_data(w, checks, "; ".join(f"{', '.join(names)}: {why}" for why, names in reasons.items()))
        gates = self._gates(w)
        comparison = self._comparison(w)
        checks += gates + [comparison]
        if comparison.verdict == "fail":
            return self._decide(w, "abort", f"canary vs baseline: {comparison.why}", checks)
        failed = [g for g in gates if g.verdict == "fail"]
        if failed:
            self.failed_intervals += 1
            why = "; ".join(g.why for g in failed) + f" (failed intervals {self.failed_intervals}/{self.policy.failure_threshold})"
            if self.failed_intervals >= self.policy.failure_threshold:
                return self._decide(w, "abort", f"SLO gates: {why}", checks)
            return self._decide(w, "hold", f"SLO gates: {why}", checks)
        if comparison.verdict == "no data":
            return self._hold_for_data(w, checks, f"canary vs baseline: {comparison.why}")
        if w.operator == "hold":
            return self._decide(w, "hold", "an operator asked to hold", checks)
        if self.sprt.state == "good":
            self.accepted = True
        if self.policy.require_acceptance and not self.accepted:
            # Passing gates on a handful of requests proves little: the canary moves on only once the
            # sequential test has accepted it at its bounds (holding for evidence is not "no data").
            return self._decide(w, "hold", f"gathering evidence: the sequential test has not accepted the canary yet "
                                           f"({self.sprt.requests:.0f} requests, LLR {self.sprt.llr:+.2f} > {self.sprt.lower:.2f})",
                                checks)
        action: Action = "promote" if w.last_step else "advance"
        return self._decide(w, action, "every layer passed" + (" at the last step" if w.last_step else ""), checks)

    def _hold_for_data(self, w: Window, checks: list[Check], why: str) -> Decision:
        self.hold_since = self.hold_since or w.at
        held = (w.at - self.hold_since).total_seconds()
        if held >= self.policy.max_hold_s:
            return self._decide(w, "abort", f"no data for {held:.0f} s (max_hold_s {self.policy.max_hold_s:g}): {why}",
                                checks, reset_hold=False)
        return self._decide(w, "hold", f"no data (held {held:.0f} of {self.policy.max_hold_s:g} s): {why}", checks,
                            reset_hold=False)

    def _decide(self, w: Window, action: Action, why: str, checks: list[Check], reset_hold: bool = True) -> Decision:
        if reset_hold:
            self.hold_since = None
        decision = Decision(len(self.decisions) + 1, w.at, w.step, w.weight, action, why, tuple(checks))
        self.decisions.append(decision)
        return decision

    def note(self, w: Window, action: Action, why: str) -> Decision:
        """A decision taken outside the layers (the operator, the procedure), still one row."""
        return self._decide(w, action, why, [], reset_hold=False)


def replay(policy: Policy, windows: Sequence[Window]) -> list[Decision]:
    """Judge recorded windows in order until the first abort or promotion (the bench's offline replay)."""
    judge = Judge(policy)
    for w in windows:
        decision = judge.judge(w)
        if decision.action in ("abort", "promote"):
            break
    return judge.decisions


__all__.append("replay")


def canary_looks(windows: Sequence[Window]) -> list[Look]:
    """The canary's looks as the sequential verdict reads them: its requests and errors counted from
    the first look on (the canary's SPRT adds them up across steps), the interval's p99 beside them
    (Prometheus gives no p99 of the canary's whole life). Kept in the record so that ``runbook judge
    replay`` re-judges the canary's traffic under another policy."""
    looks: list[Look] = []
    requests = errors = 0.0
    for w in windows:
        requests += max(w.value("canary_requests") or 0.0, 0.0)
        errors += max(w.value("canary_errors") or 0.0, 0.0)
        at = (w.at - windows[0].at).total_seconds()
        looks.append(Look(at, requests, min(errors, requests), w.value("canary_p99_ms")))
    return looks


__all__.append("canary_looks")
