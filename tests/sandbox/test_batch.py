"""batch/v1 Jobs and CronJobs: the controllers, pods run to completion as real processes, kubectl.

One API server with the process pod runtime for the module; Jobs run the project's runner image
(``registry.veza.app/veza-runbooks:<version>``), whose command line (the runbook runner's, nothing
else: tests/security/test_runner_image.py) runs as a local process; a Job that must run for a while
runs a server of the workload catalog, which serves until it is stopped. Everything is driven
through the official client and kubectl, as against a cluster.
"""
from __future__ import annotations

import json
import subprocess
import time
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
from kubernetes import client as k8s
from kubernetes.client.rest import ApiException

from runbooks_sandbox.apiserver import ApiServer
from runbooks_sandbox.models.batch import CRONJOBS
from runbooks_sandbox.models.controllers.cronjob import most_recent_schedule, next_schedule
from runbooks_sandbox.models.resources import EVENTS, NAMESPACES
from runbooks_sandbox.runtime.pods import ProcessRuntime
from runbooks_sandbox.runtime.runner_image import runner_tags

pytestmark = [pytest.mark.sandbox, pytest.mark.timeout(120)]
RUNNER = f"registry.veza.app/veza-runbooks:v{sorted(runner_tags() - {'latest'})[0].lstrip('v')}"
SERVER = "registry.veza.app/veza-frontend:v1.6.0"  # runs until stopped: the Jobs that must outlast a deadline
QUICK = ["runbook", "records", "--help"]  # the runner, done in a second
QUICK_SAYS = "Find, verify, seal and export run records"
Obj = dict[str, Any]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiServer]:
    folder = tmp_path_factory.mktemp("batch")
    runtime = ProcessRuntime(time_scale=0.1, state_dir=str(folder / "pods"))
    api = ApiServer(port=0, kubeconfig=folder / "config", runtime=runtime).start()
    yield api
    api.stop()
    assert runtime.pids() == {}


@pytest.fixture
def ns(server: ApiServer) -> str:
    name = f"b-{uuid.uuid4().hex[:6]}"
    server.store.create(NAMESPACES, None, {"metadata": {"name": name}})
    return name


@pytest.fixture(scope="module")
def batch(server: ApiServer) -> Iterator[k8s.BatchV1Api]:
    from kubernetes import config

    api_client = config.new_client_from_config(config_file=str(server.kubeconfig))
    yield k8s.BatchV1Api(api_client)
    api_client.close()


@pytest.fixture
def kubectl(server: ApiServer, ns: str, tmp_path: Path) -> Callable[..., str]:
    def run(*args: str, input: str | None = None) -> str:
        result = subprocess.run(["kubectl", "--kubeconfig", str(server.kubeconfig), "--cache-dir", str(tmp_path),
                                 "-n", ns, *args], input=input, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    return run


def job_manifest(name: str, command: list[str] | None, **spec: Any) -> Obj:
    """A Job of the runner image running ``command``, or (None) of a server that runs until stopped."""
    container = {"name": "task", "image": RUNNER, "command": command} if command else {"name": "task", "image": SERVER}
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
            "spec": {"template": {"spec": {"restartPolicy": "Never", "containers": [container]}}, **spec}}


def wait_job(batch: k8s.BatchV1Api, ns: str, name: str, condition: str, timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = batch.read_namespaced_job(name, ns)
        if any(c.type == condition and c.status == "True" for c in job.status.conditions or []):
            return job
        time.sleep(0.1)
    raise AssertionError(f"job {name} never {condition}: {job.status}")


def pods_of(server: ApiServer, ns: str, job: str) -> list[Obj]:
    from runbooks_sandbox.models.resources import PODS

    return server.store.list(PODS, ns, label_selector=f"batch.kubernetes.io/job-name={job}")[0]


def test_a_job_runs_its_pods_to_completion(server: ApiServer, batch: k8s.BatchV1Api, ns: str, kubectl) -> None:
    batch.create_namespaced_job(ns, job_manifest("count", QUICK,
                                                 completions=2, parallelism=1))
    job = wait_job(batch, ns, "count", "Complete")
    assert (job.status.succeeded, job.status.failed or 0, job.status.active or 0) == (2, 0, 0)
    assert job.status.start_time and job.status.completion_time
    assert [c.type for c in job.status.conditions] == ["SuccessCriteriaMet", "Complete"]
    assert job.spec.backoff_limit == 6 and job.spec.selector.match_labels  # defaulted as the API server does
    pods = pods_of(server, ns, "count")
    assert len(pods) == 2 and {p["status"]["phase"] for p in pods} == {"Succeeded"}
    table = kubectl("get", "jobs")
    assert "count" in table and "Complete" in table and "2/2" in table
    assert QUICK_SAYS in kubectl("logs", "job/count")


def test_backoff_limit_fails_the_job_after_retries(server: ApiServer, batch: k8s.BatchV1Api, ns: str, kubectl) -> None:
    batch.create_namespaced_job(ns, job_manifest("flaky", ["runbook", "records", "show"], backoffLimit=1))
    kubectl("wait", "--for=condition=failed", "job/flaky", "--timeout=30s")
    job = batch.read_namespaced_job("flaky", ns)
    assert job.status.failed == 2 and not job.status.succeeded
    failed = next(c for c in job.status.conditions if c.type == "Failed")
    assert failed.reason == "BackoffLimitExceeded"
    codes = {p["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] for p in pods_of(server, ns, "flaky")}
    assert codes == {2}  # click's usage error: `records show` without a RUN_ID


def test_active_deadline_stops_a_job_that_runs_too_long(server: ApiServer, batch: k8s.BatchV1Api, ns: str) -> None:
    batch.create_namespaced_job(ns, job_manifest("slow", None, activeDeadlineSeconds=1))
    job = wait_job(batch, ns, "slow", "Failed", timeout=20)
    assert next(c for c in job.status.conditions if c.type == "Failed").reason == "DeadlineExceeded"
    deadline = time.monotonic() + 10  # its pod is deleted, its process stopped
    while pods_of(server, ns, "slow") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert pods_of(server, ns, "slow") == []
    assert not [key for key in server.runtime.pids() if key.startswith(f"{ns}/slow-")]


def test_invalid_jobs_and_cronjobs_are_refused(batch: k8s.BatchV1Api, ns: str) -> None:
    always = job_manifest("bad", QUICK)
    always["spec"]["template"]["spec"]["restartPolicy"] = "Always"
    with pytest.raises(ApiException) as refused:
        batch.create_namespaced_job(ns, always)
    assert refused.value.status == 422 and "restartPolicy" in refused.value.body
    with pytest.raises(ApiException) as refused:
        batch.create_namespaced_cron_job(ns, cronjob_manifest("bad", "61 * * * *"))
    assert refused.value.status == 422 and "spec.schedule" in refused.value.body


def test_schedule_arithmetic() -> None:
    monthly = "0 3 1 * *"  # the guide's monthly restore test
    now = datetime(2026, 12, 1, 12, 0, tzinfo=timezone.utc)
    assert most_recent_schedule(monthly, now - timedelta(days=1), now) == datetime(2026, 12, 1, 3, 0, tzinfo=timezone.utc)
    assert most_recent_schedule(monthly, now - timedelta(hours=2), now) is None
    assert next_schedule(monthly, now) == datetime(2027, 1, 1, 3, 0, tzinfo=timezone.utc)


def cronjob_manifest(name: str, schedule: str, command: list[str] | None = QUICK, **spec: Any) -> Obj:
    template = job_manifest("x", command, backoffLimit=0)["spec"]
    return {"apiVersion": "batch/v1", "kind": "CronJob", "metadata": {"name": name},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": template}, **spec}}


def _pretend_last_run(server: ApiServer, ns: str, name: str, ago: timedelta) -> None:
    """As if the CronJob last ran ``ago``: the schedule times since then are due now."""
    stamp = (datetime.now(timezone.utc) - ago).strftime("%Y-%m-%dT%H:%M:%SZ")
    status = server.store.get(CRONJOBS, ns, name).get("status") or {}
    server.store.update_status(CRONJOBS, ns, name, {**status, "lastScheduleTime": stamp})


def _wait(predicate: Callable[[], Any], timeout: float = 15) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if value := predicate():
            return value
        time.sleep(0.1)
    raise AssertionError("timed out")


def test_a_due_schedule_starts_a_job_and_forbid_skips_while_one_runs(server: ApiServer, batch: k8s.BatchV1Api,
                                                                      ns: str, kubectl) -> None:
    batch.create_namespaced_cron_job(ns, cronjob_manifest("drill", "*/5 * * * *", None,
                                                          concurrencyPolicy="Forbid"))
    _pretend_last_run(server, ns, "drill", timedelta(minutes=6))
    first = _wait(lambda: batch.list_namespaced_job(ns).items)
    assert len(first) == 1 and first[0].metadata.name.startswith("drill-")
    assert first[0].metadata.owner_references[0].kind == "CronJob"
    scheduled = first[0].metadata.annotations["batch.kubernetes.io/cronjob-scheduled-timestamp"]
    assert int(first[0].metadata.name.rsplit("-", 1)[1]) * 60 == int(
        datetime.strptime(scheduled, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp())
    cronjob = _wait(lambda: (cj := batch.read_namespaced_cron_job("drill", ns)).status.active and cj)
    assert [ref.name for ref in cronjob.status.active] == [first[0].metadata.name]
    assert "drill" in kubectl("get", "cronjobs") and "*/5 * * * *" in kubectl("get", "cj", "drill")
    # Another schedule time is due while the first run is active: Forbid skips it.
    _pretend_last_run(server, ns, "drill", timedelta(minutes=11))
    _wait(lambda: any(e["reason"] == "JobAlreadyActive" for e in server.store.list(EVENTS, ns)[0]))
    assert len(batch.list_namespaced_job(ns).items) == 1


def test_replace_deletes_the_running_job_for_the_new_one(server: ApiServer, batch: k8s.BatchV1Api, ns: str,
                                                        kubectl) -> None:
    batch.create_namespaced_cron_job(ns, cronjob_manifest("rotate", "*/5 * * * *", None,
                                                          concurrencyPolicy="Replace"))
    kubectl("create", "job", "by-hand", "--from=cronjob/rotate")  # a run in progress, owned by the CronJob
    _wait(lambda: batch.read_namespaced_cron_job("rotate", ns).status.active)
    _pretend_last_run(server, ns, "rotate", timedelta(minutes=6))  # a schedule time is due: it replaces
    names = _wait(lambda: (n := [j.metadata.name for j in batch.list_namespaced_job(ns).items]) != ["by-hand"]
                  and "by-hand" not in n and n)
    assert len(names) == 1 and names[0].startswith("rotate-")


def test_kubectl_create_job_from_a_cronjob_runs_it_now_and_history_is_limited(
        server: ApiServer, batch: k8s.BatchV1Api, ns: str, kubectl) -> None:
    kubectl("apply", "-f", "-", input=json.dumps(cronjob_manifest("nightly", "0 3 * * *",
                                                                  successfulJobsHistoryLimit=1)))
    for name in ("by-hand-1", "by-hand-2"):
        assert f"job.batch/{name} created" in kubectl("create", "job", name, "--from=cronjob/nightly")
        kubectl("wait", "--for=condition=complete", f"job/{name}", "--timeout=30s")
    job = batch.read_namespaced_job("by-hand-2", ns)
    assert job.metadata.annotations["cronjob.kubernetes.io/instantiate"] == "manual"
    assert job.spec.backoff_limit == 0  # the template's zero survived kubectl's protobuf body
    assert QUICK_SAYS in kubectl("logs", "job/by-hand-2")
    # successfulJobsHistoryLimit 1: the older finished Job goes, with its pods.
    _wait(lambda: [j.metadata.name for j in batch.list_namespaced_job(ns).items] == ["by-hand-2"])
    _wait(lambda: not pods_of(server, ns, "by-hand-1"))
    assert batch.read_namespaced_cron_job("nightly", ns).status.last_successful_time is not None
