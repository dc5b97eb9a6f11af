"""lock: one change at a time per service, as a Lease; a stale one is taken over, only our own released."""
from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from runbooks_lib.errors import LockHeld
from runbooks_lib.run.lock import DeployLock

from ..kube_stub import wait_until
from .conftest import SERVICE, Platform

LEASE = f"runbook-lock-{SERVICE}"


def stamp(seconds_ago: float) -> str:
    return (datetime.now(timezone.utc) - timedelta(seconds=seconds_ago)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def lease(holder: str, renewed_s_ago: float, duration_s: int = 30) -> dict:
    return {"metadata": {"name": LEASE}, "spec": {"holderIdentity": holder, "leaseDurationSeconds": duration_s,
                                                  "acquireTime": stamp(600), "renewTime": stamp(renewed_s_ago)}}


def test_a_free_lock_is_taken_and_released(platform: Platform) -> None:
    with DeployLock(platform.cluster(), SERVICE, "run-a") as lock:
        held = platform.kube.get("leases", LEASE)
        assert held["spec"]["holderIdentity"] == "run-a" and held["spec"]["leaseDurationSeconds"] == 30
        assert lock.stale_taken_over is None
    assert platform.kube.get("leases", LEASE) is None


def test_a_held_lock_refuses_naming_the_holder_and_changes_nothing(platform: Platform) -> None:
    platform.kube.add("leases", lease("run-other", renewed_s_ago=5))
    with pytest.raises(LockHeld, match=rf"{LEASE} is held by run-other since .* \(renewed 5 s ago\)"):
        DeployLock(platform.cluster(), SERVICE, "run-a").acquire()
    assert platform.kube.writes == []


def test_a_stale_lock_is_taken_over_and_reported(platform: Platform) -> None:
    platform.kube.add("leases", lease("run-crashed", renewed_s_ago=120))
    before = platform.kube.get("leases", LEASE)["metadata"]["resourceVersion"]
    lock = DeployLock(platform.cluster(), SERVICE, "run-a")
    with lock:
        assert lock.stale_taken_over is not None and lock.stale_taken_over.holder == "run-crashed"
        (take_over,) = platform.kube.writes
        assert take_over.method == "PUT" and take_over.body["metadata"]["resourceVersion"] == before
        assert platform.kube.get("leases", LEASE)["spec"]["holderIdentity"] == "run-a"
    assert platform.kube.get("leases", LEASE) is None


def test_a_lock_freshly_renewed_by_a_run_whose_runner_is_gone_is_taken_over_at_once(platform: Platform) -> None:
    """The holder's journal (on this machine) names its `runbook run` process, which is gone: no
    need to wait for the lease to run out."""
    import socket
    import subprocess
    import sys

    import os

    import psutil

    from runbooks_lib.run.journal import Journal, journal_path

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    Journal(journal_path(platform.profile.name, "run-dead")).write(
        event="run-started", runbook="deploy", env=platform.profile.name,
        runner={"pid": gone.pid, "created": 0.0, "host": socket.gethostname()})
    platform.kube.add("leases", lease("run-dead", renewed_s_ago=2))
    lock = DeployLock(platform.cluster(), SERVICE, "run-a")
    with lock:
        assert lock.stale_taken_over is not None and lock.stale_taken_over.holder == "run-dead"
        assert lock.takeover_reason == "its `runbook run` process is gone"
    # A run whose runner still runs (this test's process) keeps its lock.
    Journal(journal_path(platform.profile.name, "run-alive")).write(
        event="run-started", runbook="deploy", env=platform.profile.name,
        runner={"pid": os.getpid(), "host": socket.gethostname(), "created": psutil.Process().create_time()})
    platform.kube.add("leases", lease("run-alive", renewed_s_ago=2))
    with pytest.raises(LockHeld, match="held by run-alive"):
        DeployLock(platform.cluster(), SERVICE, "run-b").acquire()


def test_release_leaves_a_lease_someone_else_holds_now(platform: Platform) -> None:
    lock = DeployLock(platform.cluster(), SERVICE, "run-a")
    lock.acquire()
    platform.kube.update("leases", LEASE, lambda l: l["spec"].update(holderIdentity="run-b"))
    lock.release()
    assert platform.kube.get("leases", LEASE)["spec"]["holderIdentity"] == "run-b"
    assert not any(w.method == "DELETE" for w in platform.kube.writes)


def test_two_runs_taking_a_free_lock_at_once_one_is_refused(platform: Platform) -> None:
    platform.kube.fail(r"/leases$", method="POST", status=409, times=1)  # the other run created it first
    with pytest.raises(LockHeld, match="taken by another run at the same moment"):
        DeployLock(platform.cluster(), SERVICE, "run-a").acquire()


def test_a_dry_run_checks_the_lock_without_taking_it(platform: Platform) -> None:
    with DeployLock(platform.cluster(dry_run=True), SERVICE, "run-a"):
        pass
    assert platform.kube.writes == [] and platform.kube.get("leases", LEASE) is None
    platform.kube.add("leases", lease("run-other", renewed_s_ago=1))
    with pytest.raises(LockHeld):
        DeployLock(platform.cluster(dry_run=True), SERVICE, "run-a").acquire()


def test_the_lease_is_renewed_while_held(platform: Platform) -> None:
    lock = DeployLock(platform.cluster(), SERVICE, "run-a", duration_s=1)
    lock.acquire()
    try:
        first = platform.kube.get("leases", LEASE)["spec"]["renewTime"]
        wait_until(lambda: platform.kube.get("leases", LEASE)["spec"]["renewTime"] != first, timeout_s=3)
        assert platform.kube.get("leases", LEASE)["spec"]["acquireTime"] is not None
    finally:
        lock.release()
    assert platform.kube.get("leases", LEASE) is None


def test_a_dead_runs_lease_is_found_in_its_journal_and_released_only_while_it_holds_it(platform: Platform) -> None:
    from runbooks_lib.run.lock import held_leases, release_orphaned

    cluster = platform.cluster()
    DeployLock(cluster, SERVICE, "run-dead").acquire()  # never released: its kernel died
    journal = [
        {"event": "lease-acquired", "lease": LEASE, "namespace": "veza", "holder": "run-dead"},
        {"event": "lease-acquired", "lease": "runbook-lock-other", "namespace": "veza", "holder": "run-dead"},
        {"event": "lease-released", "lease": "runbook-lock-other", "namespace": "veza", "holder": "run-dead"},
    ]
    assert [e["lease"] for e in held_leases(journal)] == [LEASE]
    [said] = release_orphaned(cluster, journal)
    assert said.startswith(f"{LEASE}: released") and platform.kube.get("leases", LEASE) is None

    # taken over meanwhile by another run: left alone
    platform.kube.add("leases", lease("run-next", renewed_s_ago=1))
    [said] = release_orphaned(cluster, journal)
    assert said == f"{LEASE}: no longer held by this run"
    assert platform.kube.get("leases", LEASE)["spec"]["holderIdentity"] == "run-next"


def test_a_lease_is_journaled_in_the_run_that_holds_it(platform: Platform, monkeypatch: pytest.MonkeyPatch) -> None:
    import runbooks_lib.run.context

    ctx = platform.ctx()
    monkeypatch.setattr(runbooks_lib.run.context, "_current", ctx)  # as start() makes it in a kernel
    with DeployLock(platform.cluster(), SERVICE, ctx.run_id):
        pass
    events = [(e["event"], e.get("lease")) for e in ctx.journal.entries() if e["event"].startswith("lease-")]
    assert events == [("lease-acquired", LEASE), ("lease-released", LEASE)]


def test_a_run_that_lost_its_lock_stops_before_its_next_change(platform: Platform) -> None:
    """Issue 25: a run paused longer than its lease (a laptop asleep) finds, on waking, that another
    run took the lease over: its next change is refused before it reaches the API server."""
    import time

    from runbooks_lib.errors import GuardRefused

    cluster = platform.cluster()
    lock = DeployLock(cluster, SERVICE, "run-a")
    lock.acquire()
    try:
        cluster.scale_deployment(SERVICE, 2)  # held: the change goes through
        platform.kube.update("leases", LEASE, lambda l: l["spec"].update(holderIdentity="run-b"))  # taken over
        time.sleep(1.1)  # past the last confirmation: the fence reads the lease again
        writes = len(platform.kube.writes)
        with pytest.raises(GuardRefused, match="run-a.* lost its lock .*now held by run-b.* stops before its next change"):
            cluster.scale_deployment(SERVICE, 3)
        assert len(platform.kube.writes) == writes  # nothing was sent
        assert cluster.dry_run is False and cluster.deployment(SERVICE)  # reads still work
    finally:
        lock.release()
    assert platform.kube.get("leases", LEASE)["spec"]["holderIdentity"] == "run-b"  # theirs, left alone
    cluster.scale_deployment(SERVICE, 3)  # released: no fence left on the cluster
