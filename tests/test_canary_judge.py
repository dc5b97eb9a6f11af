"""The canary judge on synthetic series: bad detected, good passed, no data held, edges, SPRT bounds.

Pure logic, no sandbox: each test builds the windows a run would measure and checks the
decision the judge takes and the evidence it shows.
"""
from __future__ import annotations

import math
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from runbooks_lib.procedures.canary.judge import SPRT, Judge, Policy, Window, compare, expected_requests, replay
from runbooks_lib.procedures.canary.provider import Reading, Series

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
BASELINE_P99 = [9.0, 9.4, 8.8, 9.9, 9.2, 9.6, 9.1, 9.3]


def window(k: int, *, step: int = 1, weight: float = 5, last: bool = False, sr: float | None = 1.0,
           p99: float | None = 9.5, requests: float | None = 120, errors: float | None = 0,
           canary_series: list[float] | None = None, baseline_series: list[float] | None = None,
           no_data: str = "", operator: str | None = None, interval_s: float = 5) -> Window:
    """The k-th look (every interval_s) with the canary's numbers; the baseline is healthy."""
    def r(value: float | None) -> Reading:
        return Reading(f"q{k}", value, no_data if value is None else "")

    readings = {
        "canary_success_rate": r(sr), "canary_p99_ms": r(p99), "canary_requests": r(requests), "canary_errors": r(errors),
        "baseline_success_rate": r(1.0 if not no_data else None), "baseline_p99_ms": r(9.3 if not no_data else None),
        "baseline_requests": r(475 if not no_data else None), "baseline_errors": r(0 if not no_data else None),
    }
    canary = canary_series if canary_series is not None else [v + 0.2 for v in BASELINE_P99]
    baseline = baseline_series if baseline_series is not None else BASELINE_P99
    series = {"canary_p99_ms": Series("c", tuple(canary), no_data if not canary else ""),
              "baseline_p99_ms": Series("b", tuple(baseline), no_data if not baseline else "")}
    return Window(T0 + timedelta(seconds=interval_s * k), step, weight, last, readings, series, operator)


def test_a_good_canary_advances_through_every_step_and_is_promoted() -> None:
    weights = [5, 25, 50, 100]
    windows = [window(i, step=i + 1, weight=w, last=w == 100) for i, w in enumerate(weights)]
    decisions = replay(Policy(), windows)
    assert [d.action for d in decisions] == ["advance", "advance", "advance", "promote"]
    # every decision shows every layer, each with its query and verdict
    for d in decisions:
        assert {c.layer for c in d.checks} == {"1 gates", "2 vs baseline", "3 sequential"}
        assert all(c.query for c in d.checks) and all(c.verdict == "pass" or c.layer == "3 sequential" for c in d.checks)


def test_an_erroring_canary_is_stopped_by_the_sequential_test_before_the_gate_threshold() -> None:
    # 8 % errors at 5 req/s over 5 s looks: 25 requests, 2 errors each
    policy = Policy(failure_threshold=5)
    judge = Judge(policy)
    actions = []
    for k in range(1, 10):
        d = judge.judge(window(k, sr=0.92, requests=25, errors=2))
        actions.append(d.action)
        if d.action == "abort":
            break
    assert actions[-1] == "abort" and len(actions) < policy.failure_threshold
    assert d.why.startswith("sequential test")
    sequential = next(c for c in d.checks if c.layer == "3 sequential")
    assert sequential.verdict == "fail" and sequential.value >= judge.sprt.upper
    assert "alpha 0.01" in sequential.why
    assert d.blames_the_canary  # its own errors: the version is remembered as bad


def test_a_slow_canary_within_the_slo_is_caught_against_the_baseline() -> None:
    slow = [v + 400 + 88 for v in BASELINE_P99]  # ~497 ms: under the 500 ms SLO, 50x the baseline
    d = Judge(Policy()).judge(window(1, p99=497.5, canary_series=slow))
    gates = {c.name: c.verdict for c in d.checks if c.layer == "1 gates"}
    assert gates == {"canary_success_rate": "pass", "canary_p99_ms": "pass"}
    assert d.action == "abort" and d.why.startswith("canary vs baseline")
    comparison = next(c for c in d.checks if c.layer == "2 vs baseline")
    assert comparison.verdict == "fail" and 450 < comparison.value < 500
    assert d.blames_the_canary


def test_no_data_holds_never_promotes_and_aborts_after_max_hold() -> None:
    judge = Judge(Policy(max_hold_s=20))
    down = "Prometheus unreachable (connection refused)"
    actions = [judge.judge(window(k, step=4, weight=100, last=True, sr=None, p99=None, requests=None, errors=None,
                                  canary_series=[], baseline_series=[], no_data=down)) for k in range(5)]
    # held at 0, 5, 10 and 15 s; at 20 s (max_hold_s) it aborts, and no look ever promotes
    assert [d.action for d in actions] == ["hold", "hold", "hold", "hold", "abort"]
    assert "no data for 20 s" in actions[-1].why and down in actions[-1].why
    assert "held 15 of 20 s" in actions[3].why
    assert all(c.verdict == "no data" for c in actions[0].checks)
    assert not actions[-1].blames_the_canary  # monitoring's fault: no verdict on the version


def test_data_coming_back_resets_the_hold_clock() -> None:
    judge = Judge(Policy(max_hold_s=12))
    silent = dict(sr=None, p99=None, requests=None, errors=None, no_data="no samples")
    assert judge.judge(window(0, **silent)).action == "hold"
    assert judge.judge(window(2, **silent)).action == "hold"  # held 10 s
    assert judge.judge(window(3)).action == "advance"
    assert judge.judge(window(4, **silent)).action == "hold"  # a new hold: 0 s, not 20 s
    assert judge.judge(window(6, **silent)).action == "hold"


def test_a_good_canary_on_little_traffic_holds_for_evidence_then_advances() -> None:
    # 25 requests a look, no error: each success moves the ratio by ln(0.95/0.99); ~112 are needed
    judge = Judge(Policy(max_hold_s=5))
    actions = [judge.judge(window(k, requests=25)).action for k in range(6)]
    assert actions == ["hold"] * 4 + ["advance", "advance"]
    assert "gathering evidence" in judge.decisions[0].why  # not "no data": max_hold_s does not apply


def test_a_canary_without_requests_is_no_data_not_healthy() -> None:
    d = Judge(Policy()).judge(window(1, requests=0, errors=0))
    assert d.action == "hold" and "served no request" in d.why


@pytest.mark.parametrize("sr, p99, verdicts", [
    (0.99, 500.0, ("pass", "pass")),  # exactly at the SLOs: pass
    (0.9899, 500.0, ("fail", "pass")),
    (0.99, 500.01, ("pass", "fail")),
])
def test_slo_gates_at_their_edges(sr: float, p99: float, verdicts: tuple[str, str]) -> None:
    # the comparison layer is kept neutral (same series), so the gates alone decide
    d = Judge(Policy()).judge(window(1, sr=sr, p99=p99, canary_series=BASELINE_P99))
    gates = tuple(c.verdict for c in d.checks if c.layer == "1 gates")
    assert gates == verdicts
    assert d.action == ("advance" if verdicts == ("pass", "pass") else "hold")


def test_failed_gates_hold_until_the_threshold_then_abort() -> None:
    judge = Judge(Policy(failure_threshold=3))
    bad = dict(sr=0.98, canary_series=BASELINE_P99)
    assert [judge.judge(window(k, **bad)).action for k in range(3)] == ["hold", "hold", "abort"]
    assert "failed intervals 3/3" in judge.decisions[-1].why
    assert judge.decisions[-1].blames_the_canary


def test_gates_skip_an_interval_with_too_few_requests() -> None:
    judge = Judge(Policy(failure_threshold=1, gate_min_requests=10))
    d = judge.judge(window(1, sr=0.5, requests=2, errors=1, canary_series=BASELINE_P99))
    gates = [c for c in d.checks if c.layer == "1 gates"]
    assert [c.verdict for c in gates] == ["skipped", "skipped"] and "too few for a rate" in gates[0].why
    assert d.action == "hold" and judge.failed_intervals == 0  # held for evidence, not aborted
    assert judge.judge(window(2, sr=0.5, requests=10, errors=5, canary_series=BASELINE_P99)).action == "abort"


@pytest.mark.parametrize("extra, verdict", [(50.0, "pass"), (50.5, "fail")])
def test_tolerated_regression_at_its_edge(extra: float, verdict: str) -> None:
    # baseline 9 ms: the tolerance is max(25 % of 9 ms, 50 ms) = 50 ms; flat series: a point interval
    flat = [9.0] * 8
    result = compare([v + extra for v in flat], flat, tolerated_pct=25, tolerated_ms=50)
    assert result.low == result.high == pytest.approx(extra)
    assert result.tolerance == 50 and result.verdict == verdict
    assert result.shift == pytest.approx(extra)


def test_too_few_points_for_the_comparison_is_no_data() -> None:
    d = Judge(Policy(min_points=5)).judge(window(1, canary_series=[9.0, 9.1]))
    assert d.action == "hold"
    assert next(c for c in d.checks if c.layer == "2 vs baseline").verdict == "no data"


def test_at_100_percent_the_last_baseline_series_is_used() -> None:
    judge = Judge(Policy())
    assert judge.judge(window(1, step=3, weight=50)).action == "advance"
    d = judge.judge(window(2, step=4, weight=100, last=True, baseline_series=[]))
    assert d.action == "promote"
    slow = judge.judge(window(3, step=4, weight=100, last=True, baseline_series=[], canary_series=[300.0] * 8))
    assert slow.action == "abort"


def test_an_operator_abort_or_hold_is_a_decision_row() -> None:
    judge = Judge(Policy())
    assert judge.judge(window(1, operator="hold")).action == "hold"
    d = judge.judge(window(2, operator="abort"))
    assert d.action == "abort" and "operator" in d.why
    assert not d.blames_the_canary
    assert [r["decision"] for r in (x.row() for x in judge.decisions)] == ["hold", "abort"]


# -- the sequential test ---------------------------------------------------------------------------

def test_sprt_boundaries_and_the_statistical_floor_match_wald() -> None:
    sprt = SPRT(0.01, 0.05, 0.01, 0.01)
    assert sprt.upper == pytest.approx(math.log(99)) and sprt.lower == pytest.approx(-math.log(99))
    # REFERENCES.md: about 47 requests for 1 % vs 8 %, about 111 for 1 % vs 5 % (A/drift only)
    assert 43 < expected_requests(0.01, 0.08, 0.01, 0.01) < 48
    assert 105 < expected_requests(0.01, 0.05, 0.01, 0.01) < 112


def _simulate(p: float, canaries: int, batches: int, batch: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Crossed the upper boundary (bool) and requests seen at the crossing, per simulated canary."""
    sprt = SPRT(0.01, 0.05, 0.01, 0.01)
    on_error, on_success = sprt.step_weights()
    errors = np.random.default_rng(seed).binomial(batch, p, size=(canaries, batches))
    llr = np.cumsum(errors * on_error + (batch - errors) * on_success, axis=1)
    crossed = llr >= sprt.upper
    first = np.where(crossed.any(axis=1), crossed.argmax(axis=1) + 1, batches) * batch
    return crossed.any(axis=1), first


def test_sprt_false_alarm_rate_on_good_canaries_is_within_its_bound() -> None:
    # Good canaries at the worst acceptable rate (the SLO's 1 %), watched for 5 000 requests each,
    # never stopped at the lower boundary: Ville's inequality bounds false alarms by alpha/(1-beta).
    n = 4000
    alarms, _ = _simulate(0.01, canaries=n, batches=500, batch=10, seed=7)
    bound = 0.01 / 0.99
    assert alarms.mean() <= bound + 3 * math.sqrt(bound * (1 - bound) / n), alarms.mean()
    # a canary truly better than the SLO (the usual good release) almost never alarms
    better, _ = _simulate(0.002, canaries=n, batches=500, batch=10, seed=8)
    assert better.mean() < 0.001


def test_sprt_catches_bad_canaries_near_the_floor() -> None:
    caught, at = _simulate(0.08, canaries=2000, batches=600, batch=1, seed=9)
    assert caught.mean() > 0.99
    floor = expected_requests(0.01, 0.05, 0.01, 0.01, true_rate=0.08)
    assert at[caught].mean() < 1.3 * floor


# -- parameters ---------------------------------------------------------------------------------

@pytest.mark.parametrize("steps", [(5, 25), (0, 100), (50, 25, 100), (), (5, 5, 100)])
def test_steps_must_increase_to_100(steps: tuple[int, ...]) -> None:
    import pydantic

    from runbooks_lib.procedures.canary import CanaryParams

    with pytest.raises(pydantic.ValidationError, match="steps must increase strictly"):
        CanaryParams(service="s", version="v1.6.0", steps=steps)
    assert CanaryParams(service="s", version="v1.6.0", steps=[5, 100]).steps == (5, 100)
    assert CanaryParams(service="s", version="v1.6.0").steps is None  # the profile's canary_steps


def test_the_canarys_looks_add_up_across_steps_for_the_record_and_its_replay() -> None:
    """What the record keeps of a canary (``judged``): the requests and errors summed look by look,
    as the canary's own SPRT sums them, so the shared verdict re-judges them to the same end."""
    from runbooks_lib.procedures.canary.judge import canary_looks
    from runbooks_lib.procedures.judging.sequential import VerdictPolicy, judge_looks

    erroring = [window(k, sr=0.92, requests=25, errors=2) for k in range(1, 10)]
    looks = canary_looks(erroring)
    assert [(look.at_s, look.requests, look.errors) for look in looks[:3]] == [(0, 25, 2), (5, 50, 4), (10, 75, 6)]
    decisions = replay(Policy(failure_threshold=5), erroring)  # the SLO gates wait: the sequential layer decides
    replayed = judge_looks(VerdictPolicy(), looks, max_s=looks[-1].at_s)
    assert decisions[-1].action == "abort" and "sequential test" in decisions[-1].why and replayed.passed is False
    assert replayed.decided_after_s == (decisions[-1].at - erroring[0].at).total_seconds()


def test_a_canary_run_records_its_looks_once_with_its_verdict() -> None:
    """CanaryRun._record_judged on a run's state (no cluster needed): an abort the numbers decided
    is a "fail", kept once however often the summary is shown."""
    from types import SimpleNamespace

    from runbooks_lib.procedures.canary.promote import CanaryRun

    judged: list[dict] = []
    ctx = SimpleNamespace(judged=judged, judged_window=judged.append)
    windows = [window(k, sr=0.92, requests=25, errors=2) for k in range(1, 10)]
    judge = Judge(Policy(failure_threshold=5))
    for w in windows:
        if judge.judge(w).action == "abort":
            break
    run = SimpleNamespace(ctx=ctx, windows=windows[:len(judge.decisions)], judge=judge, outcome="aborted",
                          steps=(5, 25, 50, 100), params=SimpleNamespace(service="veza-backend-api", version="v9"))
    CanaryRun._record_judged(run)  # type: ignore[arg-type]
    CanaryRun._record_judged(run)  # type: ignore[arg-type]
    [record] = judged
    assert record["kind"] == "canary" and record["verdict"] == "fail" and record["version"] == "v9"
    assert record["requests"] == 25 * len(judge.decisions) and record["looks"][-1][0] == record["decided_after_s"]
    run.outcome, run.judge = "promoted", Judge(Policy())
    judged.clear()
    CanaryRun._record_judged(run)  # type: ignore[arg-type]
    assert judged[0]["verdict"] == "pass"
