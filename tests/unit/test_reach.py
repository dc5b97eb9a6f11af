"""reach: checks through the API server's proxy send again what the API server refused, and only that.

The stub stands for the API server: its Status answers are the server's own, any other body is
the pod's. The real proxy path is exercised by the sandbox's runbook tests (pod and smoke checks
of every deploy go through the real kube-apiserver).
"""
from __future__ import annotations

import pytest

from runbooks_lib.platform import api_retry
from runbooks_lib.platform.reach import Reach

from ..kube_stub import HTTPStub, Reply

POD = "/api/v1/namespaces/veza/pods/web-1:8080/proxy"


def status(code: int, message: str) -> dict[str, object]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "message": message,
            "reason": "ServiceUnavailable" if code == 503 else "TooManyRequests"}


@pytest.fixture
def server() -> HTTPStub:
    with HTTPStub() as stub:
        stub.route("GET", f"{POD}/health", lambda request, match: Reply(200, {"status": "ok"}))
        yield stub


def reach(server: HTTPStub, retry_for_s: float = 5.0) -> Reach:
    return Reach("veza", api_url=server.url, auth={"headers": {"Authorization": "Bearer t0ken"}},
                 retry_for_s=retry_for_s)


def test_urls_name_the_pod_and_service_under_the_api_server_and_the_ips_when_direct() -> None:
    through = Reach("veza", api_url="https://k8s:6443")
    assert through.pod_url("web-1", "10.244.0.7", 8080) == "https://k8s:6443/api/v1/namespaces/veza/pods/web-1:8080/proxy"
    assert through.service_url("web", "10.96.0.9", 80) == "https://k8s:6443/api/v1/namespaces/veza/services/web:80/proxy"
    direct = Reach("veza")
    assert direct.pod_url("web-1", "10.244.0.7", 8080) == "http://10.244.0.7:8080"
    assert direct.pod_url("web-1", None, 8080) is None
    assert direct.service_url("web", "10.96.0.9", 80) == "http://10.96.0.9:80"


def test_a_refusal_by_the_api_server_is_sent_again_with_the_credentials(server: HTTPStub) -> None:
    server.fail(rf"^{POD}/health$", status=503, times=2,
                body=status(503, "the server is currently unable to handle the request"))
    before = api_retry.retries_made()
    code, _, reply = reach(server).get(f"{server.url}{POD}/health", 2)
    assert code == 200 and reply.json() == {"status": "ok"}
    assert api_retry.retries_made() - before == 2
    assert [r.headers.get("authorization") for r in server.requests] == ["Bearer t0ken"] * 3


@pytest.mark.parametrize("body", [
    status(503, 'error trying to reach service: dial tcp 10.244.0.7:8080: connect: connection refused'),
    {"error": "the pod's own 503"},  # the pod answered: not the API server's Status
])
def test_a_pod_that_cannot_be_reached_or_answers_503_is_its_failure_not_sent_again(server: HTTPStub, body: object) -> None:
    server.fail(rf"^{POD}/health$", status=503, body=body)
    code, _, _ = reach(server).get(f"{server.url}{POD}/health", 2)
    assert code == 503
    assert len(server.requests) == 1


def test_refusals_past_the_budget_give_the_last_answer(server: HTTPStub) -> None:
    server.fail(rf"^{POD}/health$", status=429, body=status(429, "too many requests"))
    code, _, _ = reach(server, retry_for_s=0.5).get(f"{server.url}{POD}/health", 2)
    assert code == 429
    assert 2 <= len(server.requests) <= 5


def test_a_direct_reach_never_sends_again(server: HTTPStub) -> None:
    server.fail(rf"^{POD}/health$", status=503, body=status(503, "overloaded"))
    code, _, _ = Reach("veza").get(f"{server.url}{POD}/health", 2)
    assert code == 503 and len(server.requests) == 1


def test_the_cluster_ca_is_used_even_when_requests_ca_bundle_is_set(monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE override a Session's verify; the API server's proxy is
    # signed by the cluster CA, so that would fail every check (CERTIFICATE_VERIFY_FAILED).
    import requests

    seen: list[object] = []

    def send(adapter: object, request: requests.PreparedRequest, **kwargs: object) -> requests.Response:
        seen.append(kwargs.get("verify"))
        response = requests.Response()
        response.status_code, response._content, response.url = 200, b"{}", request.url
        return response

    monkeypatch.setenv("REQUESTS_CA_BUNDLE", "/etc/ssl/certs/ca-certificates.crt")
    monkeypatch.setattr(requests.adapters.HTTPAdapter, "send", send)
    through = Reach("veza", api_url="https://k8s:6443", auth={"headers": {}, "verify": "/cluster/ca.crt"})
    code, _, _ = through.get(f"{through.pod_url('web-1', None, 8080)}/health", 2)
    assert code == 200 and seen == ["/cluster/ca.crt"]
