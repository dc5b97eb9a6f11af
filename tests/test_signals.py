"""The one set of golden-signal queries: every caller gets the same PromQL."""
from __future__ import annotations

import pytest

from runbooks_lib.platform import signals


def test_selector_names_a_service_and_one_or_several_versions() -> None:
    assert signals.selector("veza-backend-api") == 'job="veza-backend-api"'
    assert signals.selector("s", "v1") == 'job="s",version="v1"'
    assert signals.selector("s", ["v1", "v2"]) == 'job="s",version=~"v1|v2"'


def test_success_rate_treats_no_5xx_series_as_no_errors_and_keeps_the_grouping() -> None:
    q = signals.success_rate('job="s"', "1m", by="version")
    assert q == ('1 - ((sum by (version) (rate(http_requests_total{job="s",code=~"5.."}[1m]))) '
                 'or 0 * sum by (version) (rate(http_requests_total{job="s"}[1m]))) '
                 '/ sum by (version) (rate(http_requests_total{job="s"}[1m]))')
    assert "vector(0)" not in q  # vector(0) has no labels: it cannot stand in for a missing version


def test_quantiles_come_from_the_histogram_in_ms() -> None:
    assert signals.latency_quantile(0.99, 'job="s"', "5s") == (
        '1000 * histogram_quantile(0.99, sum by (le) (rate(http_request_duration_seconds_bucket{job="s"}[5s])))')
    assert "sum by (version, le)" in signals.latency_quantile(0.5, 'job="s"', "5s", by="version")


def test_signal_queries_name_every_signal_and_refuse_unknown_ones() -> None:
    assert set(signals.signal_queries("", "1m", signals=list(signals.SIGNALS))) == set(signals.SIGNALS)
    with pytest.raises(ValueError, match="unknown signal"):
        signals.signal_queries('job="s"', "1m", signals=["p42"])


def test_counters_for_sequential_tests_read_the_raw_totals() -> None:
    assert signals.request_total('job="s"') == 'sum (http_requests_total{job="s"})'
    assert signals.error_total('job="s"').startswith('(sum (http_requests_total{job="s",code=~"5.."})) or 0 *')
