"""kube.translate and Cluster's named operations, with the official client against KubeStub."""
from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from runbooks_lib.platform.cluster import Cluster
from runbooks_lib.errors import BackendUnavailable, Conflict, GuardRefused, NotFound, ParameterError
from runbooks_lib.platform.kube import translate

from ..kube_stub import KubeStub, deployment, event, service, write_kubeconfig
from .conftest import SERVICE, Platform, image, profile_for


@pytest.mark.parametrize("status, error", [
    (404, NotFound), (409, Conflict), (400, ParameterError), (422, ParameterError),
    (401, GuardRefused), (403, GuardRefused), (500, BackendUnavailable), (503, BackendUnavailable),
])
def test_an_api_error_becomes_the_project_error_saying_what_failed(platform: Platform, status: int,
                                                                   error: type[Exception]) -> None:
    from kubernetes.client.exceptions import ApiException

    platform.kube.fail(r"/deployments/", status=status)
    with pytest.raises(error) as raised:
        platform.cluster().deployment(SERVICE)
    assert str(raised.value) == f"read deployment veza/{SERVICE}: injected fault (HTTP {status})"
    assert isinstance(raised.value.__cause__, ApiException)


def test_a_status_without_a_message_still_names_the_call(platform: Platform) -> None:
    platform.kube.fail(r"/services/", status=500, body={"kind": "Status"})
    with pytest.raises(BackendUnavailable, match=rf"read service veza/{SERVICE}: .* \(HTTP 500\)"):
        platform.cluster().service(SERVICE)


def test_an_api_server_that_is_not_there_is_unavailable(tmp_path: Path, platform: Platform) -> None:
    with KubeStub() as gone:
        kubeconfig = gone.write_kubeconfig(tmp_path / "gone")
    profile = profile_for(kubeconfig, vault_url=platform.vault.url, prometheus_url=platform.prom.url, port=1)
    with pytest.raises(BackendUnavailable, match=r"list pods in veza: cannot reach the API server"):
        Cluster(profile).pods()


def test_a_dropped_connection_is_unavailable(platform: Platform) -> None:
    platform.kube.fail(r"/pods", drop=True)
    with pytest.raises(BackendUnavailable, match="cannot reach the API server"):
        platform.cluster().pods()


def test_a_missing_kubeconfig_is_unavailable_before_any_call(tmp_path: Path, platform: Platform) -> None:
    profile = profile_for(tmp_path / "absent", vault_url=platform.vault.url, prometheus_url=platform.prom.url, port=1)
    with pytest.raises(BackendUnavailable, match="does not exist"):
        Cluster(profile).deployment(SERVICE)


def test_translate_passes_project_errors_through_and_keeps_others_out() -> None:
    from urllib3.exceptions import ReadTimeoutError

    with pytest.raises(NotFound, match="^mine$"):
        with translate("anything"):
            raise NotFound("mine")
    with pytest.raises(BackendUnavailable, match=r"list pods: cannot reach the API server \(ReadTimeoutError\)"):
        with translate("list pods"):
            raise ReadTimeoutError(None, "/api", "read timed out")  # type: ignore[arg-type]
    with pytest.raises(BackendUnavailable, match=r"\(ConnectionRefusedError\)"):
        with translate("list pods"):
            raise ConnectionRefusedError(111, "refused")


# -- named operations ---------------------------------------------------------------------------

def test_reads_come_back_in_the_api_shape(platform: Platform) -> None:
    cluster = platform.cluster()
    state = cluster.deployment_state(SERVICE)
    assert (state.desired, state.ready, state.revision, state.image) == (2, 2, "3", image("v1.6.0"))
    assert state.rolled_out and not state.deadline_exceeded
    assert [p.version for p in cluster.pod_states(f"app={SERVICE}")] == ["v1.6.0", "v1.6.0"]
    assert len(cluster.replica_sets(f"app={SERVICE}")) == 3
    assert cluster.replica_sets("app=other") == []
    assert cluster.secret("absent") is None and cluster.lease("absent") is None
    assert platform.kube.requests[-1].query.get("labelSelector") is None


def test_a_pod_version_is_its_image_even_when_the_label_is_stale(platform: Platform) -> None:
    platform.kube.update("pods", f"{SERVICE}-h3-0", lambda p: p["metadata"]["labels"].update(version="v1.5.1-errors"))
    versions = {p.name: p.version for p in platform.cluster().pod_states()}
    assert versions[f"{SERVICE}-h3-0"] == "v1.6.0"


def test_the_live_deployment_is_the_one_the_service_selects(platform: Platform) -> None:
    cluster = platform.cluster()
    assert cluster.live_deployment(SERVICE) == SERVICE  # no colour: the service's own name
    platform.kube.add("deployments", deployment(f"{SERVICE}-green", image("v1.7.0"),
                                                labels={"app": SERVICE, "color": "green"}))
    platform.kube.update("services", SERVICE, lambda s: s["spec"]["selector"].update(color="green"))
    assert cluster.live_deployment(SERVICE) == f"{SERVICE}-green"
    assert cluster.live_deployment("no-such-service") == "no-such-service"


def test_events_are_recent_and_filtered_by_object(platform: Platform) -> None:
    platform.kube.add("events", event("e1", "BackOff", involved=f"{SERVICE}-h3-0"))
    platform.kube.add("events", event("e2", "Unhealthy", involved="veza-frontend-1"))
    old = event("e3", "Failed", involved=f"{SERVICE}-h3-1")
    old["lastTimestamp"] = "2020-01-01T00:00:00Z"
    platform.kube.add("events", old)
    cluster = platform.cluster()
    assert [e["reason"] for e in cluster.events(involving=SERVICE)] == ["BackOff"]
    assert sorted(e["reason"] for e in cluster.events(since=timedelta(days=36500))) == ["BackOff", "Failed", "Unhealthy"]


def test_pod_log(platform: Platform) -> None:
    platform.kube.logs[f"{SERVICE}-h3-0"] = "listening on :8080\n"
    assert platform.cluster().pod_log(f"{SERVICE}-h3-0") == "listening on :8080\n"
    with pytest.raises(NotFound, match="read log of pod veza/gone"):
        platform.cluster().pod_log("gone")


def test_a_dry_run_write_is_sent_with_dry_run_all_and_changes_nothing(platform: Platform) -> None:
    dry = platform.cluster(dry_run=True)
    after = dry.patch_deployment(SERVICE, {"spec": {"replicas": 5}}, what="scale")
    assert after["spec"]["replicas"] == 5  # the API server's answer: what it would be
    dry.patch_service(SERVICE, {"spec": {"selector": {"color": "blue"}}}, what="pin")
    dry.create_deployment(deployment("new", image("v2")))
    dry.delete_deployment(SERVICE)
    assert [w.query.get("dryRun") for w in platform.kube.writes] == ["All"] * 4
    assert platform.kube.get("deployments", SERVICE)["spec"]["replicas"] == 2
    assert platform.kube.get("deployments", "new") is None
    assert "color" not in platform.kube.get("services", SERVICE)["spec"]["selector"]


def test_writes_change_the_store(platform: Platform) -> None:
    cluster = platform.cluster()
    cluster.patch_deployment(SERVICE, {"spec": {"replicas": 3}}, what="scale")
    assert platform.kube.get("deployments", SERVICE)["spec"]["replicas"] == 3
    cluster.create_deployment(deployment("other", image("v2")))
    with pytest.raises(Conflict, match="create deployment veza/other"):
        cluster.create_deployment(deployment("other", image("v2")))
    assert cluster.delete_deployment("other") is True
    assert cluster.delete_deployment("other") is False  # already gone: said, not raised
    assert all(w.query.get("dryRun") is None for w in platform.kube.writes)


def test_a_secret_is_created_then_replaced_guarded_by_its_resource_version(platform: Platform) -> None:
    cluster = platform.cluster()
    body = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}, "data": {"k": "djE="}}
    cluster.apply_secret(body, None)
    live = cluster.secret("s")
    assert live is not None and live["data"] == {"k": "djE="}
    cluster.apply_secret({**body, "data": {"k": "djI="}}, live)
    assert cluster.secret("s")["data"] == {"k": "djI="}
    with pytest.raises(Conflict, match="apply secret veza/s"):
        cluster.apply_secret(body, live)  # live is stale now: someone changed it since it was read
    assert set(cluster.secret_keys("s")) == {"k"} and "djI=" not in str(cluster.secret_keys("s"))


def test_a_lease_is_deleted_only_while_it_is_the_one_read(platform: Platform) -> None:
    cluster = platform.cluster()
    lease = cluster.create_lease({"metadata": {"name": "l"}, "spec": {"holderIdentity": "a"}})
    version = lease["metadata"]["resourceVersion"]
    cluster.replace_lease("l", {**lease, "spec": {"holderIdentity": "b"}})
    with pytest.raises(Conflict, match="delete lease veza/l"):
        cluster.delete_lease("l", version)
    cluster.delete_lease("l", cluster.lease("l")["metadata"]["resourceVersion"])
    assert cluster.lease("l") is None


def test_service_objects_are_read_as_stored(kube: KubeStub, tmp_path: Path) -> None:
    kube.add("services", service("x", 8080, selector={"app": "x", "color": "blue"}))
    profile = profile_for(write_kubeconfig(kube.url, tmp_path / "kc"), vault_url="http://127.0.0.1:1",
                          prometheus_url="http://127.0.0.1:1", port=1)
    assert Cluster(profile).service("x")["spec"]["selector"] == {"app": "x", "color": "blue"}
