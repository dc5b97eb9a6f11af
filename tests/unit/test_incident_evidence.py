"""incident.evidence: which pods fail now, read from Prometheus through the real client."""
from __future__ import annotations

from runbooks_lib.procedures.incident.evidence import failing_pods, window_seconds
from runbooks_lib.platform.metrics import Metrics

from .backends import PrometheusStub


def test_failing_pods_are_those_whose_own_requests_miss_the_slos(prom: PrometheusStub) -> None:
    pods = lambda *values: [({"pod": name}, value) for name, value in values]  # noqa: E731
    prom.answer(r"^sum by \(pod\) \(increase", pods(("erroring", 200), ("slow", 200), ("unlucky", 20), ("fine", 300)))
    prom.answer(r"^\(sum by \(pod\) \(increase", pods(("erroring", 16), ("unlucky", 1)))
    prom.answer(r"histogram_quantile", pods(("erroring", 40), ("slow", 900), ("unlucky", 40), ("fine", 40)))
    failing = failing_pods(Metrics(prom.url), "veza-backend-api", "1m", 0.99, 500)
    assert failing == {"erroring": "92.0 % success of 200 requests over 1m",
                       "slow": "p99 900 ms over 1m (SLO ≤ 500 ms)"}
    # One error in 20 requests misses 99 % but shows nothing: the sequential test does not blame it.


def test_failing_pods_is_empty_when_prometheus_cannot_tell(prom: PrometheusStub) -> None:
    assert failing_pods(Metrics("http://127.0.0.1:9", timeout_s=0.5), "veza-backend-api", "1m", 0.99, 500) == {}


def test_window_seconds() -> None:
    assert [window_seconds(w) for w in ("15s", "1m", "2h")] == [15, 60, 7200]
