"""The API server's own faults (runbook sandbox fault apiserver): kubectl and the official client
see what an overloaded kube-apiserver answers, and everything serves again once cleared."""
from __future__ import annotations

import time
from typing import Iterator

import pytest

from runbooks_sandbox.apiserver import ApiServer
from runbooks_sandbox.http.faults import FaultSettings

pytestmark = pytest.mark.sandbox


@pytest.fixture
def faults(apiserver: ApiServer) -> Iterator[ApiServer]:
    yield apiserver
    apiserver.faults.clear()


def test_refused_requests_are_503_service_unavailable_for_kubectl_and_the_client(faults: ApiServer, kubectl,
                                                                                  api_client, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    refused_before = faults.faults.refused
    faults.faults.set(FaultSettings(error_rate=1.0))
    got = kubectl("get", "pods", check=False)
    assert got.returncode != 0
    assert "the server is currently unable to handle the request" in got.stderr
    with pytest.raises(ApiException) as raised:
        client.CoreV1Api(api_client).list_namespaced_pod(namespace)
    assert raised.value.status == 503 and "ServiceUnavailable" in raised.value.body
    assert faults.faults.refused > refused_before

    faults.faults.clear()
    assert kubectl("get", "pods").returncode == 0
    assert client.CoreV1Api(api_client).list_namespaced_pod(namespace).items == []


def test_a_share_of_requests_is_refused(faults: ApiServer, api_client, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    faults.faults.set(FaultSettings(error_rate=0.5))
    outcomes = []
    for _ in range(200):
        try:
            client.CoreV1Api(api_client).list_namespaced_pod(namespace)
            outcomes.append(True)
        except ApiException as e:
            assert e.status == 503
            outcomes.append(False)
    # 200 draws at 1/2: fewer than 60 or more than 140 refusals happens about once in 10^8 runs.
    assert 60 < outcomes.count(False) < 140


def test_added_latency_slows_every_answer(faults: ApiServer, api_client, namespace: str) -> None:
    from kubernetes import client

    faults.faults.set(FaultSettings(latency_ms=300))
    began = time.monotonic()
    client.CoreV1Api(api_client).list_namespaced_pod(namespace)
    assert time.monotonic() - began >= 0.3


def test_fault_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="error_rate"):
        FaultSettings(error_rate=1.5)
    with pytest.raises(ValueError, match="latency_ms"):
        FaultSettings(latency_ms=-1)


def test_a_lost_write_is_applied_then_answered_500_and_dry_runs_and_reads_are_left_alone(
        faults: ApiServer, api_client, namespace: str) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    core = client.CoreV1Api(api_client)
    body = {"metadata": {"name": "lost-answer"}, "data": {"k": "v1"}}
    failed_before = faults.faults.describe()["writes_failed"]
    faults.faults.set(FaultSettings(fail_writes=1, resource="configmaps"))
    core.create_namespaced_config_map(namespace, body, dry_run="All")  # no commit, no lost answer
    with pytest.raises(ApiException) as raised:
        core.create_namespaced_config_map(namespace, body)
    assert raised.value.status == 500 and "InternalError" in raised.value.body
    assert core.read_namespaced_config_map("lost-answer", namespace).data == {"k": "v1"}, "applied all the same"
    # Only the next N writes: the one after is answered as usual.
    assert core.patch_namespaced_config_map("lost-answer", namespace, {"data": {"k": "v2"}}).data == {"k": "v2"}
    assert faults.faults.describe()["writes_failed"] == failed_before + 1
    assert faults.faults.describe()["writes_left"] == 0


def test_a_write_left_unanswered_is_applied_all_the_same(faults: ApiServer, api_client, namespace: str) -> None:
    from kubernetes import client
    from urllib3.exceptions import HTTPError

    core = client.CoreV1Api(api_client)
    core.create_namespaced_config_map(namespace, {"metadata": {"name": "no-answer"}, "data": {"n": "0"}})
    failed_before = faults.faults.describe()["writes_failed"]
    faults.faults.set(FaultSettings(fail_writes=1, resource="configmaps", no_answer=True))
    with pytest.raises(HTTPError):  # the connection closed: no status, no body
        core.patch_namespaced_config_map("no-answer", namespace, {"data": {"n": "1"}})
    live = core.read_namespaced_config_map("no-answer", namespace)
    assert live.data == {"n": "1"}, "applied all the same"
    assert faults.faults.describe()["writes_failed"] == failed_before + 1
