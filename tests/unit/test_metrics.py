"""metrics: prometheus-api-client against a fake Prometheus; no samples is NoData, a dead server unavailable."""
from __future__ import annotations

import math

import pytest

from runbooks_lib.errors import BackendUnavailable, NoData, ParameterError, RunbookError
from runbooks_lib.platform.metrics import Metrics
from runbooks_lib.platform.signals import golden_signals, signal_queries

from ..kube_stub import HTTPStub
from .backends import PrometheusStub


def test_a_query_is_its_single_value_and_silence_is_no_data(prom: PrometheusStub) -> None:
    metrics = Metrics(prom.url, timeout_s=2)
    prom.answer(r"^up$", 1)
    assert metrics.query("up") == 1.0
    assert prom.requests[-1].query == {"query": "up", "timeout": "2s"}
    with pytest.raises(NoData, match="no data for absent_metric"):
        metrics.query("absent_metric")
    prom.answer(r"^nan$", float("nan"))
    with pytest.raises(NoData):
        metrics.query("nan")
    prom.answer(r"^many$", [({"pod": "a"}, 1.0), ({"pod": "b"}, 2.0)])
    with pytest.raises(ParameterError, match="returned 2 series; aggregate it to one"):
        metrics.query("many")
    assert metrics.vector("many") == [({"pod": "a"}, 1.0), ({"pod": "b"}, 2.0)]


def test_a_range_query_is_a_frame_per_series(prom: PrometheusStub) -> None:
    prom.answer(r"rate", [({"version": "v1"}, 0.5), ({"version": "v2"}, 0.25)])
    frame = Metrics(prom.url).range("sum by (version) (rate(x[1m]))", minutes=2, step_s=0.4)
    assert list(frame.columns) == ["version=v1", "version=v2"] and len(frame) == 2
    assert prom.requests[-1].query["step"] == "1s"  # a duration Prometheus accepts, never 0s
    with pytest.raises(NoData, match="over the last 2 min"):
        Metrics(prom.url).range("nothing", minutes=2)


def test_golden_signals_read_three_queries_and_judge_against_the_slos(prom: PrometheusStub) -> None:
    prom.answer(r"^1 - ", 0.995)
    prom.answer(r"histogram_quantile", 120.0)
    signals = golden_signals(Metrics(prom.url), "svc", "30s")
    assert (signals.requests_per_s, signals.success_rate, signals.p99_ms) == (20.0, 0.995, 120.0)
    assert signals.within(0.99, 500) and not signals.within(0.999, 500) and not signals.within(0.99, 100)
    sent = prom.queries()
    assert sent == list(signal_queries('job="svc"', "30s").values())
    assert all("[30s]" in q and 'job="svc"' in q for q in sent)


def test_golden_signals_with_no_traffic_are_none_not_zero(prom: PrometheusStub) -> None:
    prom.answers.clear()
    prom.answer(r"histogram_quantile", math.inf)
    signals = golden_signals(Metrics(prom.url), "svc")
    assert (signals.requests_per_s, signals.success_rate, signals.p99_ms) == (None, None, None)
    assert not signals.within(0.5, 10_000)


def test_alert_rules_are_listed_by_name(prom: PrometheusStub) -> None:
    assert Metrics(prom.url).alert_rules() == ["HighErrorRate", "HighLatency"]
    assert Metrics(prom.url).is_online()


def test_an_unreachable_prometheus_is_unavailable() -> None:
    with HTTPStub() as gone:
        url = gone.url
    metrics = Metrics(url, timeout_s=1)
    with pytest.raises(BackendUnavailable, match=f"Prometheus at {url} unreachable during query up"):
        metrics.query("up")
    with pytest.raises(BackendUnavailable, match="cannot list rules"):
        metrics.alert_rules()
    assert not metrics.is_online()


def test_a_failing_prometheus_is_a_project_error_naming_the_query(prom: PrometheusStub) -> None:
    prom.fail(r"/api/v1/query", status=422)
    with pytest.raises(RunbookError, match="Prometheus rejected query up"):
        Metrics(prom.url).query("up")


def test_wait_for_targets_counts_up_targets_until_enough(prom: PrometheusStub) -> None:
    answers = iter([0, 1, 2])
    prom.answers.clear()
    prom.hooks.append(lambda r: prom.answer(r"^count\(up", next(answers, 2)))
    assert Metrics(prom.url).wait_for_targets('job="svc"', 2, timeout_s=5) == 2
    prom.hooks.clear()
    prom.answer(r"^count\(up", None)
    with pytest.raises(NoData, match=r'only 0 of 2 targets \{job="svc"\} scraped'):
        Metrics(prom.url).wait_for_targets('job="svc"', 2, timeout_s=0.1)
