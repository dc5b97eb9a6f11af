"""One sequential verdict for every judge in this project: a deploy's analysis, a rollback's Verify
and a canary's steps decide as soon as the traffic carries enough evidence, not by the clock.

- **Errors** by Wald's sequential probability ratio test (SPRT) on request and error counts: H0,
  the error rate the SLO allows (1 − ``success_rate_min``, 1 % by default), against H1, a rate that
  must be caught (``bad_error_rate``, 5 %), with false-alarm ``alpha`` and miss ``beta`` (1 % each).
  After n requests with e errors the log-likelihood ratio is
  ``e·ln(p1/p0) + (n−e)·ln((1−p1)/(1−p0))``; it rejects the version at ``A = ln((1−β)/α)`` and
  accepts it at ``B = ln(β/(1−α))``.
- **p99** on the same window against the SLO: decided once the window holds ``p99_min_requests``
  requests (the 99th percentile of fewer is just their slowest one or two).
- The verdict is taken **the moment both are decided** (or either says bad). The window's length
  is a maximum: if it ends first, the SLOs are checked on what it held, as before, and the verdict
  says it ended by the window and how strong its evidence was.

Pure: it sees cumulative looks (requests, errors, p99 so far) and returns verdicts, so the live
judgements, the canary and ``runbook judge replay`` (re-judging recorded windows under another
policy) all run this same code.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SPRT", "expected_requests", "clean_requests_to_accept", "errors_to_reject", "VerdictPolicy", "Look",
           "Verdict", "SequentialVerdict", "Evidence", "evidence", "judge_looks"]

State = Literal["good", "bad", "continue"]


@dataclass
class SPRT:
    """Wald's SPRT on Bernoulli errors, H0 rate p0 vs H1 rate p1 (p1 > p0)."""

    p0: float
    p1: float
    alpha: float = 0.01
    beta: float = 0.01
    llr: float = 0.0
    requests: float = 0.0
    errors: float = 0.0

    def __post_init__(self) -> None:
        if not 0 < self.p0 < self.p1 < 1:
            raise ValueError(f"need 0 < p0 < p1 < 1, not p0={self.p0}, p1={self.p1}")
        if not (0 < self.alpha < 1 and 0 < self.beta < 1):
            raise ValueError("alpha and beta must be in (0, 1)")

    @property
    def upper(self) -> float:
        """Crossing it accepts H1 (the version is bad): A = ln((1-beta)/alpha)."""
        return math.log((1 - self.beta) / self.alpha)

    @property
    def lower(self) -> float:
        """Crossing it accepts H0 (the version is as good as p0): B = ln(beta/(1-alpha))."""
        return math.log(self.beta / (1 - self.alpha))

    def step_weights(self, p0: float | None = None, p1: float | None = None) -> tuple[float, float]:
        p0, p1 = p0 or self.p0, p1 or self.p1
        return math.log(p1 / p0), math.log((1 - p1) / (1 - p0))

    def update(self, requests: float, errors: float, p0: float | None = None, p1: float | None = None) -> State:
        """Add a batch of requests; returns "bad", "good" (H0 accepted so far) or "continue"."""
        requests, errors = max(requests, 0.0), min(max(errors, 0.0), max(requests, 0.0))
        on_error, on_success = self.step_weights(p0, p1)
        self.llr += errors * on_error + (requests - errors) * on_success
        self.requests += requests
        self.errors += errors
        return self.state

    @property
    def state(self) -> State:
        if self.llr >= self.upper:
            return "bad"
        if self.llr <= self.lower:
            return "good"
        return "continue"


def expected_requests(p0: float, p1: float, alpha: float, beta: float, true_rate: float | None = None) -> float:
    """Wald's expected number of requests to a decision when errors happen at ``true_rate``
    (default p1): the statistical floor of any judge with the same bounds (DESIGN.md)."""
    p = p1 if true_rate is None else true_rate
    a, b = math.log((1 - beta) / alpha), math.log(beta / (1 - alpha))
    drift = p * math.log(p1 / p0) + (1 - p) * math.log((1 - p1) / (1 - p0))
    if abs(drift) < 1e-12:
        return float("inf")
    # Probability of ending at the upper boundary, ~1 - beta under H1, ~alpha under H0.
    upper_share = 1 - beta if p >= p1 else (alpha if p <= p0 else 0.5)
    return (upper_share * a + (1 - upper_share) * b) / drift


def clean_requests_to_accept(p0: float, p1: float, alpha: float, beta: float, errors: int = 0) -> int:
    """The fewest requests, ``errors`` of them failed, after which the test accepts H0."""
    test = SPRT(p0, p1, alpha, beta)
    on_error, on_success = test.step_weights()
    return errors + max(0, math.ceil((test.lower - errors * on_error) / on_success))


def errors_to_reject(requests: int, p0: float, p1: float, alpha: float, beta: float) -> int:
    """The fewest errors among ``requests`` that reject H0; ``requests + 1`` when none would."""
    test = SPRT(p0, p1, alpha, beta)
    on_error, on_success = test.step_weights()
    # e·w_e + (n−e)·w_s ≥ A  ⇔  e ≥ (A − n·w_s) / (w_e − w_s)
    return min(max(0, math.ceil((test.upper - requests * on_success) / (on_error - on_success) - 1e-9)), requests + 1)


class VerdictPolicy(BaseModel):
    """How strict the sequential verdict is: the SLO, the bad rate to catch, the error bounds."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    success_rate_min: float = Field(0.99, gt=0, le=1, description="The SLO; 1 − it is H0, the error rate allowed")
    p99_max_ms: float = Field(500.0, gt=0, description="The SLO's p99 latency bound")
    bad_error_rate: float = Field(0.05, gt=0, lt=1, description="H1: an error rate that must be caught")
    alpha: float = Field(0.01, gt=0, lt=0.5, description="Bound on calling a version at the SLO bad")
    beta: float = Field(0.01, gt=0, lt=0.5, description="Bound on passing a version at the bad rate")
    p99_min_requests: int = Field(100, ge=1, description="Requests before a p99 in the SLO counts as decided")

    @classmethod
    def from_slo(cls, slo: Any, **overrides: Any) -> "VerdictPolicy":
        return cls(success_rate_min=slo.success_rate_min, p99_max_ms=slo.p99_latency_max_ms, **overrides)

    @property
    def error_budget(self) -> float:
        return 1.0 - self.success_rate_min

    @property
    def testable(self) -> bool:
        """An SLO of 100 %, or one allowing the bad rate itself, leaves no test to make: such a
        policy is judged at the window's end only."""
        return 0 < self.error_budget < self.bad_error_rate

    def sprt(self) -> SPRT | None:
        return SPRT(self.error_budget, self.bad_error_rate, self.alpha, self.beta) if self.testable else None

    def bounds(self) -> str:
        errors = "α = β = " + f"{100 * self.alpha:g} %" if self.alpha == self.beta else \
            f"α = {100 * self.alpha:g} %, β = {100 * self.beta:g} %"
        return f"SPRT {100 * self.error_budget:g} % vs {100 * self.bad_error_rate:g} % errors, {errors}"


@dataclass(frozen=True)
class Look:
    """What the window held at one look, counted from its start: ``at_s`` seconds into it."""

    at_s: float
    requests: float
    errors: float
    p99_ms: float | None

    def as_list(self) -> list[Any]:
        return [round(self.at_s, 2), round(self.requests, 1), round(self.errors, 1),
                None if self.p99_ms is None else round(self.p99_ms, 1)]

    @classmethod
    def from_list(cls, values: Sequence[Any]) -> "Look":
        at, requests, errors, p99 = values
        return cls(float(at), float(requests), float(errors), None if p99 is None else float(p99))


@dataclass(frozen=True)
class Evidence:
    """How much the judged requests show, beyond meeting the SLO: ``needed`` is how many requests
    without a further error the sequential test needs to rule out a bad error rate."""

    state: State  # "good" (bad rate ruled out), "bad" (bad rate shown), "continue" (too few)
    needed: int
    text: str


def evidence(policy: VerdictPolicy, requests: float, errors: float) -> Evidence | None:
    """The SPRT on the judged requests, in words: shown beside the verdict, never instead of it.
    None when the SLO leaves no test to make."""
    test = policy.sprt()
    if test is None:
        return None
    errors = round(errors)
    state = test.update(requests, errors)
    _, per_success = test.step_weights()  # negative: each success moves toward ruling the bad rate out
    needed = math.ceil(requests + max(0.0, (test.lower - test.llr) / per_success))
    bad, bounds, n = f"{100 * policy.bad_error_rate:g} %", policy.bounds(), int(requests)
    if state == "good":
        text = f"strong: {n} requests rule out {bad} errors ({bounds})"
    elif state == "bad":
        text = f"bad: {n} requests with {errors} errors show {bad} errors or worse ({bounds})"
    else:
        text = f"weak: {n} requests cannot rule out {bad} errors; ~{needed} without a further error would ({bounds})"
    return Evidence(state, needed, text)


@dataclass(frozen=True)
class Verdict:
    """The outcome of one window: ``passed`` None when it held no data to judge."""

    passed: bool | None
    ended_by: Literal["decision", "window"]
    errors_state: State
    p99_state: State
    last: Look
    max_s: float
    why: str
    evidence: Evidence | None = None
    looks: tuple[Look, ...] = field(default=(), repr=False)

    @property
    def success_rate(self) -> float | None:
        return 1 - self.last.errors / self.last.requests if self.last.requests > 0 else None

    @property
    def decided_after_s(self) -> float:
        return self.last.at_s

    def record(self, **about: Any) -> dict[str, Any]:
        """The window as the summary keeps it (``judged``): enough to re-judge it under another policy."""
        return {**about, "verdict": {True: "pass", False: "fail", None: "no data"}[self.passed],
                "ended_by": self.ended_by, "decided_after_s": round(self.decided_after_s, 2), "max_s": self.max_s,
                "requests": round(self.last.requests, 1), "errors": round(self.last.errors, 1),
                "p99_ms": None if self.last.p99_ms is None else round(self.last.p99_ms, 1),
                "evidence": self.evidence.text if self.evidence else None,
                "looks": [look.as_list() for look in _thinned(self.looks)]}


def _thinned(looks: Sequence[Look], keep: int = 240) -> Sequence[Look]:
    """At most ``keep`` looks, the last always kept: a long window stays a small record."""
    if len(looks) <= keep:
        return looks
    step = math.ceil(len(looks) / keep)
    return [*looks[:-1:step], looks[-1]]


class SequentialVerdict:
    """Feed it cumulative looks; it returns a Verdict the moment the evidence suffices."""

    def __init__(self, policy: VerdictPolicy, max_s: float) -> None:
        self.policy = policy
        self.max_s = max_s
        self.looks: list[Look] = []

    def _states(self, look: Look) -> tuple[State, State, float | None]:
        p = self.policy
        test = p.sprt()
        errors_state: State = test.update(look.requests, look.errors) if test else "continue"
        if look.p99_ms is None or look.requests < p.p99_min_requests:
            p99_state: State = "continue"
        else:
            p99_state = "bad" if look.p99_ms > p.p99_max_ms else "good"
        return errors_state, p99_state, test.llr if test else None

    def look(self, look: Look) -> Verdict | None:
        """A verdict when this look decides (either says bad, or both say good), else None."""
        self.looks.append(look)
        errors_state, p99_state, llr = self._states(look)
        if "bad" in (errors_state, p99_state):
            return self._verdict(False, "decision", errors_state, p99_state, llr)
        if errors_state == p99_state == "good":
            return self._verdict(True, "decision", errors_state, p99_state, llr)
        return None

    def close(self) -> Verdict:
        """The window ended undecided: the SLOs on what it held (None: no data)."""
        last = self.looks[-1] if self.looks else Look(0.0, 0.0, 0.0, None)
        if not self.looks:
            self.looks.append(last)
        errors_state, p99_state, llr = self._states(last)
        if last.requests <= 0 or last.p99_ms is None:
            return self._verdict(None, "window", errors_state, p99_state, llr)
        success = 1 - last.errors / last.requests
        passed = success >= self.policy.success_rate_min and last.p99_ms <= self.policy.p99_max_ms
        return self._verdict(passed, "window", errors_state, p99_state, llr)

    def _verdict(self, passed: bool | None, ended_by: Literal["decision", "window"], errors_state: State,
                 p99_state: State, llr: float | None) -> Verdict:
        last = self.looks[-1]
        weight = evidence(self.policy, last.requests, last.errors) if last.requests > 0 else None
        return Verdict(passed, ended_by, errors_state, p99_state, last, self.max_s,
                       self._why(passed, ended_by, errors_state, p99_state, llr), weight, tuple(self.looks))

    def _why(self, passed: bool | None, ended_by: str, errors_state: State, p99_state: State,
             llr: float | None) -> str:
        last, p = self.looks[-1], self.policy
        how = (f"decided after {last.at_s:.1f} s (of at most {self.max_s:g} s)" if ended_by == "decision"
               else f"the window's {self.max_s:g} s ended undecided, judged on the SLOs")
        test = p.sprt()
        errors = (f"errors: {last.errors:.0f} of {last.requests:.0f} requests, " +
                  (f"LLR {llr:+.2f} ({'accepted' if errors_state == 'good' else 'rejected' if errors_state == 'bad' else 'between'} "
                   f"{test.lower:.2f}..{test.upper:.2f})" if test and llr is not None else "no sequential test for this SLO"))
        p99 = ("p99: no data" if last.p99_ms is None else
               f"p99 {last.p99_ms:.0f} ms vs ≤ {p.p99_max_ms:g} ms ({'decided' if p99_state != 'continue' else 'undecided'}"
               f" on {last.requests:.0f} of ≥ {p.p99_min_requests} requests)")
        return f"{how}; {errors}; {p99}"


def judge_looks(policy: VerdictPolicy, looks: Sequence[Look], max_s: float) -> Verdict:
    """Re-judge recorded looks under ``policy``: the first decision, or the window's end."""
    verdict = SequentialVerdict(policy, max_s)
    for look in looks:
        if look.at_s > max_s:
            break
        if (decided := verdict.look(look)) is not None:
            return decided
    return verdict.close()
