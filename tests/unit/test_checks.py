"""checks: pod checks, smoke requests and version sampling against a tiny local HTTP server."""
from __future__ import annotations

import pytest

from runbooks_lib.platform.checks import error_budget_check, pod_checks, service_url, serving_versions, smoke_checks
from runbooks_lib.errors import CheckFailed, NotFound

from ..kube_stub import HTTPStub, pod
from .conftest import SERVICE, Platform, image


def test_every_pod_answers_health_ready_and_version(platform: Platform) -> None:
    spec = platform.profile.services.get(SERVICE)
    table = pod_checks(platform.cluster(), SERVICE, spec)
    assert list(table.index) == [f"{SERVICE}-h3-0", f"{SERVICE}-h3-1"]
    assert (table[["/health", "/ready", "/version"]] == 200).all().all()
    assert sorted({r.path for r in platform.app.requests}) == ["/health", "/ready", "/version"]


def test_a_failing_pod_check_names_the_pod_the_path_and_the_code(platform: Platform) -> None:
    platform.app.fail(r"^/ready$", status=503)
    platform.kube.add("pods", pod("no-ip", image("v1.6.0"), labels={"app": SERVICE}, ip=None))
    with pytest.raises(CheckFailed) as failed:
        pod_checks(platform.cluster(), SERVICE, platform.profile.services.get(SERVICE))
    message = str(failed.value)
    assert message.startswith(f"{SERVICE}: 5 pod check(s) failed: ")
    assert f"{SERVICE}-h3-0 /ready → 503" in message and "no-ip /health → no answer" in message


def test_pods_being_deleted_are_skipped_and_no_pod_is_a_failure(platform: Platform) -> None:
    for name in (f"{SERVICE}-h3-0", f"{SERVICE}-h3-1"):
        platform.kube.update("pods", name, lambda p: p["metadata"].update(deletionTimestamp="2026-12-01T00:00:00Z"))
    with pytest.raises(CheckFailed, match=f"{SERVICE}: no pods to check"):
        pod_checks(platform.cluster(), SERVICE, platform.profile.services.get(SERVICE))


def test_smoke_requests_pass_and_report_what_was_seen(platform: Platform) -> None:
    table = smoke_checks(platform.app.url, platform.profile.services.get(SERVICE), requests_per_route=5)
    assert table.loc["/api/v1/health", "requests"] == 5 and table.loc["/api/v1/health", "failed"] == 0
    assert table.loc["/api/v1/health", "codes"] == {"200": 5}


def test_failed_smoke_requests_are_counted_by_code(platform: Platform) -> None:
    platform.app.fail(r"/api/v1/health", status=500, times=2)
    with pytest.raises(CheckFailed, match=r"smoke checks failed: /api/v1/health: 2/5 failed \(\{'500': 2\}\)"):
        smoke_checks(platform.app.url, platform.profile.services.get(SERVICE), requests_per_route=5)


def test_slow_smoke_requests_fail_the_latency_bound(platform: Platform) -> None:
    platform.app.fail(r"/api/v1/health", delay_s=0.05, status=200, body={"ok": True}, times=1)
    with pytest.raises(CheckFailed, match=r"/api/v1/health: slowest \d+ ms > 10 ms"):
        smoke_checks(platform.app.url, platform.profile.services.get(SERVICE), requests_per_route=2, max_p99_ms=10)


def test_an_unreachable_service_fails_every_smoke_request(platform: Platform) -> None:
    with HTTPStub() as gone:
        url = gone.url
    with pytest.raises(CheckFailed, match=r"2/2 failed \(\{'None': 2\}\)"):
        smoke_checks(url, platform.profile.services.get(SERVICE), requests_per_route=2, timeout_s=0.5)


def test_serving_versions_counts_answers_and_errors(platform: Platform) -> None:
    platform.app.fail(r"^/version$", status=502, times=3)
    assert serving_versions(platform.app.url, samples=10) == {"error 502": 3, "v1.6.0": 7}
    platform.app.fail(r"^/version$", drop=True, times=2)
    assert serving_versions(platform.app.url, samples=4) == {"error None": 2, "v1.6.0": 2}


def test_a_version_answer_that_is_not_json_is_counted_as_an_error(platform: Platform) -> None:
    platform.app.fail(r"^/version$", garbage=True, times=1)
    seen = serving_versions(platform.app.url, samples=3)
    assert seen.get("v1.6.0") == 2 and sum(seen.values()) == 3


def test_service_url_is_the_cluster_ip_and_port(platform: Platform) -> None:
    assert service_url(platform.cluster(), SERVICE) == f"http://127.0.0.1:{platform.app.port}"
    platform.kube.update("services", SERVICE, lambda s: s["spec"].update(clusterIP="None"))
    with pytest.raises(NotFound, match="has no cluster IP"):
        service_url(platform.cluster(), SERVICE)


@pytest.mark.parametrize("failures, over_budget", [(2, False), (8, False), (9, True), (24, True)])
def test_the_error_budget_check_decides_by_a_binomial_test(platform: Platform, failures: int, over_budget: bool) -> None:
    # 300 requests against a 1 % budget: up to 8 failures is within it (p ≥ 0.01), 9 is not.
    platform.app.fail(r"/api/v1/health", status=500, times=failures)
    spec = platform.profile.services.get(SERVICE)
    if over_budget:
        with pytest.raises(CheckFailed, match=rf"error budget: {failures}/300 requests failed .* p = [0-9.e-]+ < 0.01"):
            error_budget_check([platform.app.url], spec, success_rate_min=0.99)
        return
    table = error_budget_check([platform.app.url], spec, success_rate_min=0.99)
    row = table.loc[300]
    assert row["failed"] == failures and row["decision"] == "within budget"
    assert row["p-value (over budget)"] >= 0.01


def test_the_error_budget_requests_are_spread_over_every_pod(platform: Platform) -> None:
    with HTTPStub() as other:
        error_budget_check([platform.app.url, other.url], platform.profile.services.get(SERVICE),
                           success_rate_min=0.99, requests_total=40)
        assert len(other.requests) == 20
    assert sum(1 for r in platform.app.requests if r.path == "/api/v1/health") == 20
