"""kube.call: the API by path, through the official client's own REST layer, dicts in and out.

The Cluster never goes through the typed APIs (AppsV1Api, CoreV1Api...): their modules build
hundreds of pydantic models on import, about a second before a rollback could send its patch.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from runbooks_lib.errors import BackendUnavailable, NotFound, ParameterError
from runbooks_lib.platform.kube import resource_path

from .conftest import SERVICE, Platform


def test_reads_and_writes_go_to_the_resource_paths_with_the_query_the_api_expects(platform: Platform) -> None:
    cluster = platform.cluster(dry_run=True)
    assert cluster.deployment(SERVICE)["metadata"]["name"] == SERVICE
    assert [rs["metadata"]["name"] for rs in cluster.replica_sets(f"app={SERVICE}")] == [
        f"{SERVICE}-h1", f"{SERVICE}-h2", f"{SERVICE}-h3"]
    cluster.patch_deployment(SERVICE, {"spec": {"replicas": 3}}, what="scale")
    # The runbooks' own locks are taken for real even in a dry run (that is how a dry run checks).
    cluster.create_lease({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "lock"}})
    reads = [r for r in platform.kube.requests if r.method == "GET"]
    assert reads[0].path == f"/apis/apps/v1/namespaces/veza/deployments/{SERVICE}"
    assert reads[1].path == "/apis/apps/v1/namespaces/veza/replicasets"
    assert reads[1].query == {"labelSelector": f"app={SERVICE}"}
    patch, lease = platform.kube.writes
    assert patch.headers["content-type"].startswith("application/strategic-merge-patch+json")
    assert patch.query == {"dryRun": "All"} and patch.body == {"spec": {"replicas": 3}}
    assert (lease.method, lease.path, lease.query) == ("POST", "/apis/coordination.k8s.io/v1/namespaces/veza/leases", {})
    # A dry run stores nothing: the live Deployment still has its two replicas.
    assert platform.kube.get("deployments", SERVICE)["spec"]["replicas"] == 2


def test_a_name_cannot_leave_its_path(platform: Platform) -> None:
    with pytest.raises(NotFound):
        platform.cluster().deployment("../../../api/v1/namespaces/kube-system")
    assert platform.kube.requests[-1].path == (
        "/apis/apps/v1/namespaces/veza/deployments/..%2F..%2F..%2Fapi%2Fv1%2Fnamespaces%2Fkube-system")
    assert resource_path("/api/v1", "namespaces", "a?b") == "/api/v1/namespaces/a%3Fb"


def test_a_pod_log_is_read_as_text(platform: Platform) -> None:
    name = next(name for plural, _, name in platform.kube.objects if plural == "pods")
    platform.kube.logs[name] = "line one\n{\"level\": \"error\"}\n"
    assert platform.cluster().pod_log(name, tail=5) == "line one\n{\"level\": \"error\"}\n"
    assert platform.kube.requests[-1].query == {"tailLines": "5", "previous": "false"}


def test_an_answer_that_is_not_a_json_object_is_an_error_that_says_so(platform: Platform) -> None:
    platform.kube.fail(r"/deployments/odd$", status=200, body=["not", "an", "object"])
    with pytest.raises(BackendUnavailable, match="answer could not be read"):
        platform.cluster().deployment("odd")


def test_the_typed_apis_are_never_imported(platform: Platform, tmp_path: Path) -> None:
    """In a fresh interpreter (this one's sandbox tests import them): the identity guard, a read,
    a list, a patch, a lease and a log, and not one module of kubernetes.client.api."""
    script = f"""
import json, sys
from runbooks_lib.platform.cluster import Cluster
from runbooks_lib.run.cluster_identity import check_cluster_identity
from runbooks_lib.config.profiles import Profile
profile = Profile.model_validate_json({platform.profile.model_dump_json()!r})
check_cluster_identity(profile)
cluster = Cluster(profile, dry_run=True)
cluster.deployment({SERVICE!r}); cluster.pods("app={SERVICE}"); cluster.lease("none")
cluster.patch_deployment({SERVICE!r}, {{"spec": {{"replicas": 3}}}})
print(json.dumps(sorted(m for m in sys.modules if m.startswith("kubernetes.client.api."))))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == []
    assert any(r.method == "PATCH" for r in platform.kube.requests), "the script did reach the stub"


def test_a_scale_goes_through_the_scale_subresource_and_a_dry_run_stores_nothing(platform: Platform) -> None:
    """As `kubectl scale` and an autoscaler do: the Deployment's template (and so its revision)
    is not part of the change, only its replica count."""
    scale = platform.cluster(dry_run=True).scale_deployment(SERVICE, 5)
    assert (scale["kind"], scale["spec"]["replicas"]) == ("Scale", 5)
    assert platform.kube.get("deployments", SERVICE)["spec"]["replicas"] == 2
    dry = platform.kube.writes[-1]
    assert (dry.method, dry.path, dry.query) == (
        "PATCH", f"/apis/apps/v1/namespaces/veza/deployments/{SERVICE}/scale", {"dryRun": "All"})
    assert dry.body == {"spec": {"replicas": 5}}

    before = platform.kube.get("deployments", SERVICE)
    platform.cluster().scale_deployment(SERVICE, 0)
    after = platform.kube.get("deployments", SERVICE)
    assert after["spec"]["replicas"] == 0
    assert after["spec"]["template"] == before["spec"]["template"]
    assert platform.kube.writes[-1].query == {}


def test_a_scale_the_api_server_rejects_is_a_parameter_error_naming_the_change(platform: Platform) -> None:
    with pytest.raises(ParameterError, match=f"scale deployment veza/{SERVICE} to -1"):
        platform.cluster().scale_deployment(SERVICE, -1)
    assert platform.kube.get("deployments", SERVICE)["spec"]["replicas"] == 2
    with pytest.raises(NotFound, match="scale deployment veza/gone"):
        platform.cluster().scale_deployment("gone", 1)
