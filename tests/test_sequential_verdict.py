"""The one sequential verdict (judging/sequential.py): its decision boundaries, derived here from
the SPRT's definition with scipy's binomial likelihoods, not from the module's own formulas.

Wald's test of H0 (error rate p0) against H1 (p1) after n requests with e errors compares the
log-likelihood ratio ln(P(e | n, p1) / P(e | n, p0)) with A = ln((1-β)/α) (reject H0: the version is
bad) and B = ln(β/(1-α)) (accept H0: good)."""
from __future__ import annotations

import math

import pytest
from pydantic import ValidationError
from scipy.stats import binom

from runbooks_lib.procedures.judging.sequential import (
    SPRT, Look, SequentialVerdict, VerdictPolicy, clean_requests_to_accept, errors_to_reject, judge_looks)

P0, P1, ALPHA, BETA = 0.01, 0.05, 0.01, 0.01
A, B = math.log((1 - BETA) / ALPHA), math.log(BETA / (1 - ALPHA))


def llr(n: int, e: int, p0: float = P0, p1: float = P1) -> float:
    """The log-likelihood ratio by its definition (the binomial coefficient cancels out)."""
    return float(binom.logpmf(e, n, p1) - binom.logpmf(e, n, p0))


def fewest_clean_to_accept(p0: float = P0, p1: float = P1, b: float = B) -> int:
    return next(n for n in range(1, 100_000) if llr(n, 0, p0, p1) <= b)


def fewest_errors_to_reject(n: int) -> int:
    return next((e for e in range(n + 1) if llr(n, e) >= A), n + 1)


def clean(n: float, at_s: float = 1.0, p99: float | None = 40.0) -> Look:
    return Look(at_s, n, 0, p99)


def test_the_sprt_accepts_after_the_fewest_clean_requests_its_definition_allows() -> None:
    needed = fewest_clean_to_accept()
    assert needed == 112  # the "Wald's SPRT needs ~112" at 1 % vs 5 %, α = β = 1 %
    assert clean_requests_to_accept(P0, P1, ALPHA, BETA) == needed
    test = SPRT(P0, P1, ALPHA, BETA)
    assert test.update(needed - 1, 0) == "continue" and test.update(1, 0) == "good"
    assert test.llr == pytest.approx(llr(needed, 0))


@pytest.mark.parametrize("errors", [1, 2, 5])
def test_each_error_costs_the_clean_requests_the_definition_says(errors: int) -> None:
    expected = next(n for n in range(errors, 100_000) if llr(n, errors) <= B)
    assert clean_requests_to_accept(P0, P1, ALPHA, BETA, errors=errors) == expected


@pytest.mark.parametrize("n", [1, 10, 48, 100, 112, 500, 2000])
def test_the_errors_among_n_requests_that_reject_are_those_of_the_definition(n: int) -> None:
    assert errors_to_reject(n, P0, P1, ALPHA, BETA) == fewest_errors_to_reject(n)


def test_the_verdict_passes_at_the_first_look_that_holds_enough_clean_requests() -> None:
    verdict = SequentialVerdict(VerdictPolicy(), max_s=30)
    needed = fewest_clean_to_accept()
    assert verdict.look(clean(needed - 1, at_s=11.0)) is None
    decided = verdict.look(clean(needed, at_s=12.5))
    assert decided is not None and decided.passed is True and decided.ended_by == "decision"
    assert decided.decided_after_s == 12.5 and decided.evidence is not None
    assert decided.evidence.text.startswith(f"strong: {needed} requests rule out 5 % errors")
    assert "decided after 12.5 s (of at most 30 s)" in decided.why


@pytest.mark.parametrize("n", [48, 200])
def test_the_verdict_fails_at_the_first_look_whose_errors_reject(n: int) -> None:
    e = fewest_errors_to_reject(n)
    assert SequentialVerdict(VerdictPolicy(), max_s=30).look(Look(3.0, n, e - 1, 40.0)) is None
    decided = SequentialVerdict(VerdictPolicy(), max_s=30).look(Look(3.0, n, e, 40.0))
    assert decided is not None and decided.passed is False and decided.errors_state == "bad"


def test_the_p99_is_judged_on_the_same_window_and_must_be_decided_too() -> None:
    policy = VerdictPolicy(p99_max_ms=500, p99_min_requests=150)
    needed = fewest_clean_to_accept()
    verdict = SequentialVerdict(policy, max_s=30)
    # Errors ruled out at 112, but a p99 of 112 requests is not decided under this policy: wait.
    assert verdict.look(clean(needed, p99=90.0)) is None
    decided = verdict.look(clean(150, p99=90.0, at_s=2.0))
    assert decided is not None and decided.passed is True and decided.p99_state == "good"
    slow = SequentialVerdict(policy, max_s=30)
    assert slow.look(clean(149, p99=900.0)) is None
    decided = slow.look(clean(150, p99=900.0))
    assert decided is not None and decided.passed is False and decided.p99_state == "bad"


def test_a_window_that_ends_undecided_is_judged_on_the_slos_and_says_so() -> None:
    verdict = SequentialVerdict(VerdictPolicy(), max_s=5)
    assert verdict.look(clean(48, at_s=5.0)) is None
    closed = verdict.close()
    assert closed.passed is True and closed.ended_by == "window" and closed.errors_state == "continue"
    assert closed.evidence is not None and closed.evidence.text.startswith("weak: 48 requests cannot rule out 5 %")
    assert closed.why.startswith("the window's 5 s ended undecided")
    one_error = SequentialVerdict(VerdictPolicy(), max_s=5)
    one_error.look(Look(5.0, 48, 1, 40.0))  # 97.9 %: not enough to reject 1 %, but below the SLO
    assert one_error.close().passed is False


def test_a_window_without_requests_is_no_data_not_a_pass() -> None:
    assert SequentialVerdict(VerdictPolicy(), max_s=5).close().passed is None
    verdict = SequentialVerdict(VerdictPolicy(), max_s=5)
    verdict.look(Look(5.0, 0, 0, None))
    assert verdict.close().passed is None


def test_an_slo_that_leaves_no_test_is_judged_at_the_window_end_only() -> None:
    policy = VerdictPolicy(success_rate_min=1.0)
    assert not policy.testable and policy.sprt() is None
    verdict = SequentialVerdict(policy, max_s=5)
    assert verdict.look(clean(10_000)) is None
    assert verdict.close().passed is True


@pytest.mark.parametrize("bad", [{"alpha": 0.7}, {"bad_error_rate": 0}, {"alfa": 0.01}, {"p99_min_requests": 0}])
def test_a_bad_policy_is_refused_by_name(bad: dict) -> None:
    with pytest.raises(ValidationError, match=next(iter(bad))):
        VerdictPolicy(**bad)


def test_replaying_recorded_looks_under_a_stricter_policy_decides_later() -> None:
    looks = [clean(10 * t, at_s=float(t)) for t in range(1, 31)]  # 10 clean requests a second
    default = judge_looks(VerdictPolicy(), looks, max_s=30)
    strict = judge_looks(VerdictPolicy(alpha=0.001, beta=0.001), looks, max_s=30)
    assert default.decided_after_s == 12.0  # 120 ≥ 112 clean requests
    assert strict.decided_after_s == float(math.ceil(fewest_clean_to_accept(b=math.log(0.001 / 0.999)) / 10))
    short = judge_looks(VerdictPolicy(), looks, max_s=5)
    assert short.ended_by == "window" and short.last.at_s == 5.0


def test_a_verdicts_record_keeps_its_looks_for_replay() -> None:
    verdict = SequentialVerdict(VerdictPolicy(), max_s=30)
    for t in range(1, 13):
        decided = verdict.look(clean(10 * t, at_s=float(t)))
    assert decided is not None
    record = decided.record(kind="rollback verify", version="v1")
    assert record["verdict"] == "pass" and record["ended_by"] == "decision" and record["decided_after_s"] == 12.0
    assert [Look.from_list(values) for values in record["looks"]] == list(decided.looks)


def test_the_canary_judge_and_the_judgements_share_the_one_test() -> None:
    from runbooks_lib.procedures.canary import judge
    from runbooks_lib.procedures.judging import judgement, sequential

    assert judge.SPRT is sequential.SPRT and judge.expected_requests is sequential.expected_requests
    assert judgement.SequentialVerdict is sequential.SequentialVerdict


class _ScriptedWindow:
    """A window whose looks follow a script: clean traffic, then errors from ``sour_at_s`` on."""

    def __init__(self, sour_at_s: float) -> None:
        import time

        self.start, self.sour_at_s, self.what = time.time(), sour_at_s, "scripted"

    def look(self, moment: float) -> Look:
        at = moment - self.start
        clean_requests = 400 * min(at, self.sour_at_s)
        erroring = max(at - self.sour_at_s, 0.0) * 400
        return Look(at, clean_requests + erroring, 0.3 * erroring, 40.0)

    def scraped_after(self, moment: float) -> float:
        return moment


@pytest.mark.parametrize("bake", [False, True])
def test_a_bake_window_is_watched_to_its_end_unless_the_version_fails(bake: bool,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """Blue-green's monitor (bake=True) must see a fault that appears after the first good seconds;
    a deploy's analysis (bake=False) takes the first good decision."""
    from runbooks_lib.procedures.judging import judgement

    monkeypatch.setattr(judgement, "LOOK_S", 0.1)
    window = _ScriptedWindow(sour_at_s=0.5)
    verdict = judgement.watch(window, SequentialVerdict(VerdictPolicy(success_rate_min=0.99, p99_max_ms=500), 3.0),
                              "v2", bake=bake)
    if bake:
        assert verdict.passed is False and verdict.ended_by == "decision"
        assert 0.5 < verdict.last.at_s < 3.0  # ended by the errors, before the window's end
    else:
        assert verdict.passed is True and verdict.last.at_s < 0.5
