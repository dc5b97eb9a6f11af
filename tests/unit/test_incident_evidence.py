"""incident.evidence: which ReplicaSets fail now, each on its own pods' requests, read through the real client."""
from __future__ import annotations

from runbooks_lib.platform.metrics import Metrics
from runbooks_lib.procedures.incident.evidence import judge_replica_sets, window_seconds

from .backends import PrometheusStub

OWNERS = {"bad-a": "rs-bad", "bad-b": "rs-bad", "slow-a": "rs-slow", "young-a": "rs-young", "fine-a": "rs-fine",
          "fine-b": "rs-fine"}


def test_each_live_replica_set_is_judged_on_its_own_pods(prom: PrometheusStub) -> None:
    pods = lambda *values: [({"pod": name}, value) for name, value in values]  # noqa: E731
    prom.answer(r"^sum by \(pod\) \(increase", pods(("bad-a", 60), ("bad-b", 60), ("slow-a", 200), ("young-a", 20),
                                                      ("fine-a", 150), ("fine-b", 150), ("gone-a", 500)))
    prom.answer(r"^\(sum by \(pod\) \(increase", pods(("bad-a", 5), ("bad-b", 5), ("young-a", 1), ("gone-a", 400)))
    prom.answer(r"histogram_quantile", pods(("bad-a", 40), ("bad-b", 40), ("slow-a", 900), ("young-a", 40),
                                             ("fine-a", 40), ("fine-b", 40)))
    judged = judge_replica_sets(Metrics(prom.url), "veza-backend-api", "1m", 0.99, 500, OWNERS)
    assert set(judged) == {"rs-bad", "rs-slow", "rs-young", "rs-fine"}  # a pod that is gone is not judged
    assert (judged["rs-bad"].state, judged["rs-bad"].pods) == ("bad", ("bad-a", "bad-b"))
    # 10 errors in 120 requests: one pod alone (5 in 60) would not yet rule either way
    assert judged["rs-bad"].why == "91.7 % success of 120 requests over 1m"
    assert judged["rs-slow"].state == "bad" and "slow-a p99 900 ms (SLO ≤ 500 ms)" in judged["rs-slow"].why
    assert judged["rs-young"].state == "continue" and not judged["rs-young"].decided  # 1 error in 20: too few
    assert judged["rs-fine"].state == "good" and judged["rs-fine"].decided  # 300 requests rule out 5 % errors


def test_nothing_is_judged_when_prometheus_cannot_tell() -> None:
    assert judge_replica_sets(Metrics("http://127.0.0.1:9", timeout_s=0.5), "veza-backend-api", "1m", 0.99, 500,
                              OWNERS) == {}


def test_window_seconds() -> None:
    assert [window_seconds(w) for w in ("15s", "1m", "2h")] == [15, 60, 7200]
