"""The evidence beside a version's SLO verdict: what the judged requests can rule out.

Meeting a 99 % SLO on 48 requests without an error is not evidence that the version is not
failing 5 % of them (P = 0.95^48 ≈ 8.5 % of seeing no error at that rate): the record says so,
with the number of requests Wald's SPRT (the canary judge's test and bounds) would need."""
from __future__ import annotations

import math

import pytest

from runbooks_lib.procedures.canary.judge import SPRT, Policy
from runbooks_lib.procedures.judging.judgement import evidence


def _needed_without_errors(success_rate_min: float) -> int:
    """From the SPRT's definition: n·ln((1-p1)/(1-p0)) ≤ ln(β/(1-α)), solved for n."""
    policy = Policy(success_rate_min=success_rate_min)
    p0, p1 = policy.error_budget, policy.bad_error_rate
    return math.ceil(math.log(policy.beta / (1 - policy.alpha)) / math.log((1 - p1) / (1 - p0)))


def test_a_short_clean_window_meets_the_slo_but_is_called_weak_with_the_requests_needed() -> None:
    needed = _needed_without_errors(0.99)
    weak = evidence(0.99, 48, 1.0)
    assert weak is not None and weak.state == "continue" and weak.needed == needed
    assert weak.text.startswith(f"weak: 48 requests cannot rule out 5 % errors; ~{needed} without a further error")
    assert "α = β = 1 %" in weak.text


def test_enough_clean_requests_rule_the_bad_rate_out() -> None:
    needed = _needed_without_errors(0.99)
    assert evidence(0.99, needed, 1.0).state == "good"  # type: ignore[union-attr]
    assert evidence(0.99, needed - 1, 1.0).state == "continue"  # type: ignore[union-attr]


def test_each_error_raises_the_requests_needed_by_what_the_test_says() -> None:
    clean, one_error = evidence(0.99, 100, 1.0), evidence(0.99, 100, 0.99)
    assert clean is not None and one_error is not None
    test = SPRT(0.01, 0.05)
    on_error, on_success = test.step_weights()
    assert one_error.needed - clean.needed == pytest.approx((on_error - on_success) / -on_success, abs=1.01)


def test_errors_at_the_bad_rate_are_shown_as_bad() -> None:
    bad = evidence(0.99, 50, 0.9)
    assert bad is not None and bad.state == "bad"
    assert bad.text.startswith("bad: 50 requests with 5 errors show 5 % errors or worse")


@pytest.mark.parametrize("success_rate_min", [1.0, 0.95, 0.9])
def test_an_slo_that_leaves_no_test_to_make_gives_no_evidence_row(success_rate_min: float) -> None:
    assert evidence(success_rate_min, 1000, 1.0) is None
