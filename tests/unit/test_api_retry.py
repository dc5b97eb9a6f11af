"""api_retry: what is sent again when the API server cannot serve, and what is not (KubeStub)."""
from __future__ import annotations

import time

import pytest

from runbooks_lib.platform.api_retry import RetryPolicy, retries_made
from runbooks_lib.errors import BackendUnavailable

from .conftest import SERVICE, Platform


def requests_to(platform: Platform, method: str, fragment: str) -> int:
    return sum(1 for r in platform.kube.requests if r.method == method and fragment in r.path)


def test_a_read_refused_with_503_is_sent_again_until_served(platform: Platform,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    before = retries_made()
    platform.kube.fail(r"/deployments/", status=503, times=2)
    assert platform.cluster().deployment(SERVICE)["metadata"]["name"] == SERVICE
    assert requests_to(platform, "GET", f"/deployments/{SERVICE}") == 3
    assert retries_made() - before == 2
    said = capsys.readouterr().out
    assert said.count("⟳ API server: HTTP 503 on GET") == 2 and "(retry 2)" in said


def test_a_write_refused_with_429_is_sent_again_and_applied_once(platform: Platform) -> None:
    platform.kube.fail(r"/deployments/", method="PATCH", status=429, times=1)
    platform.cluster().patch_deployment(SERVICE, {"spec": {"replicas": 3}})
    assert requests_to(platform, "PATCH", f"/deployments/{SERVICE}") == 2
    assert platform.cluster().deployment(SERVICE)["spec"]["replicas"] == 3


def test_a_write_answered_500_is_not_sent_again(platform: Platform) -> None:
    """A 500 may come after the write was applied: the step that made it decides, not the client."""
    platform.kube.fail(r"/deployments/", method="PATCH", status=500, times=1)
    with pytest.raises(BackendUnavailable, match=r"HTTP 500"):
        platform.cluster().patch_deployment(SERVICE, {"spec": {"replicas": 3}})
    assert requests_to(platform, "PATCH", f"/deployments/{SERVICE}") == 1


def test_a_read_answered_500_is_sent_again_then_fails_when_the_budget_is_spent(
        platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    platform.kube.fail(r"/deployments/", status=500)
    began = time.monotonic()
    with pytest.raises(BackendUnavailable, match=r"read deployment veza/.*\(HTTP 500\)"):
        platform.cluster().deployment(SERVICE)
    assert time.monotonic() - began < 2  # the test profile's budget is 0.5 s
    assert requests_to(platform, "GET", f"/deployments/{SERVICE}") >= 3
    assert "no more retries after" in capsys.readouterr().out


def test_a_dropped_read_is_sent_again(platform: Platform) -> None:
    platform.kube.fail(r"/pods", drop=True, times=1)
    assert platform.cluster().pods() is not None
    assert requests_to(platform, "GET", "/pods") == 2


def test_the_server_retry_after_is_honoured(platform: Platform, capsys: pytest.CaptureFixture[str]) -> None:
    # A write: urllib3 itself sends reads again after a Retry-After (its sleep is skipped in these tests).
    platform.kube.fail(r"/deployments/", method="PATCH", status=429, times=1, headers={"Retry-After": "0.3"})
    began = time.monotonic()
    platform.cluster().patch_deployment(SERVICE, {"spec": {"replicas": 3}})
    assert time.monotonic() - began >= 0.3
    assert "sending it again in 0.3 s" in capsys.readouterr().out


def test_waits_grow_and_are_capped() -> None:
    policy = RetryPolicy(budget_s=20, first_wait_s=0.1, max_wait_s=2.0, max_retry_after_s=5.0)
    assert [policy.wait(n, None) for n in range(7)] == [0.1, 0.2, 0.4, 0.8, 1.6, 2.0, 2.0]
    assert policy.wait(0, 60.0) == 5.0 and policy.wait(3, 1.0) == 1.0
