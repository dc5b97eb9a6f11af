"""One change at a time per environment and service: a Kubernetes Lease held for the run.

The Lease ``runbook-lock-<service>`` in the profile's namespace names its holder (run id,
runbook, operator) and is renewed while the run lasts. A second run finds it held and is
refused with exit 4 (``LockHeld``) before any change. A lease whose holder stopped renewing
(a crashed run), or whose run's `runbook run` process is gone from this machine (liveness),
is reported as stale, with who held it, since when and why, and taken over.
Release happens at the end of the run, also when it fails. Taking and giving back the lease
are journaled by the run that holds it (``lease-acquired`` / ``lease-released``), so that when
the kernel dies holding it, ``runbook run`` can release it at once (``release_orphaned``)
instead of leaving the next run to wait for it to go stale.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from ..config.clock import utcnow
from ..errors import Conflict, GuardRefused, LockHeld

if TYPE_CHECKING:
    from ..platform.cluster import Cluster

__all__ = ["DeployLock", "LeaseState", "held_leases", "release_orphaned"]


def _micro(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseState:
    holder: str
    acquired: datetime | None
    renewed: datetime | None
    duration_s: int

    def expired(self, now: datetime | None = None) -> bool:
        if self.renewed is None:
            return True
        return (now or utcnow()) > self.renewed + timedelta(seconds=self.duration_s)


def _parse(stamp: Any) -> datetime | None:
    if stamp is None:
        return None
    if isinstance(stamp, datetime):
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=timezone.utc)
    return datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))


class DeployLock:
    """A lease-based lock; use as a context manager around the changing part of a run."""

    def __init__(self, cluster: "Cluster", service: str, holder: str, *, duration_s: int = 30) -> None:
        self.cluster = cluster
        self.name = f"runbook-lock-{service}"
        self.holder = holder
        self.duration_s = duration_s
        self.stale_taken_over: LeaseState | None = None
        self.takeover_reason = ""  # why a lease held by another run was taken over
        self._stop = threading.Event()
        self._renewer: threading.Thread | None = None
        self._held = False
        self.lost: str | None = None  # why this run no longer holds the lease, once it knows
        self._confirmed = 0.0  # monotonic time the lease was last seen ours

    def _body(self, acquired: datetime, resource_version: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": self.name, "labels": {"app.kubernetes.io/managed-by": "veza-runbooks"}}
        if resource_version:
            meta["resourceVersion"] = resource_version
        return {
            "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": meta,
            "spec": {"holderIdentity": self.holder, "leaseDurationSeconds": self.duration_s,
                     "acquireTime": _micro(acquired), "renewTime": _micro(utcnow())},
        }

    def read(self) -> tuple[LeaseState, str] | None:
        """The lease as it stands (and its resourceVersion), or None when nobody holds it."""
        lease = self.cluster.lease(self.name)
        if lease is None:
            return None
        spec = lease.get("spec") or {}
        state = LeaseState(spec.get("holderIdentity") or "", _parse(spec.get("acquireTime")),
                           _parse(spec.get("renewTime")), int(spec.get("leaseDurationSeconds") or self.duration_s))
        return state, lease["metadata"]["resourceVersion"]

    def acquire(self) -> None:
        """Take the lock or raise LockHeld naming the holder. Dry runs only check."""
        current = self.read()
        if current is not None:
            state, version = current
            if state.holder != self.holder and not state.expired() and not self._holder_died(state.holder):
                raise LockHeld(
                    f"{self.name} is held by {state.holder} since {state.acquired:%Y-%m-%d %H:%M:%S} UTC "
                    f"(renewed {(utcnow() - state.renewed).total_seconds():.0f} s ago); refusing a concurrent change"
                )
            if state.holder != self.holder:
                self.stale_taken_over = state
                renewed = f"{(utcnow() - state.renewed).total_seconds():.0f} s ago" if state.renewed else "never"
                self.takeover_reason = ("its `runbook run` process is gone" if not state.expired()
                                        else f"last renewed {renewed}, lease of {state.duration_s} s")
            if self.cluster.dry_run:
                return
            try:
                self.cluster.replace_lease(self.name, self._body(utcnow(), version), what="take over stale")
            except Conflict as e:
                raise LockHeld(f"{self.name} was taken by another run at the same moment") from e
        else:
            if self.cluster.dry_run:
                return
            try:
                self.cluster.create_lease(self._body(utcnow()))
            except Conflict as e:
                raise LockHeld(f"{self.name} was taken by another run at the same moment") from e
        self._held = True
        self._confirmed = time.monotonic()
        self.cluster.fences.append(self.fence)
        self._journal("lease-acquired")
        self._renewer = threading.Thread(target=self._renew_until_released, name=f"renew-{self.name}", daemon=True)
        self._renewer.start()

    def fence(self) -> None:
        """Before each change of the run (Cluster calls it): refuse when the lease is no longer this
        run's. Another run may have taken it over (this one stopped renewing for longer than its
        duration: a paused laptop, a partition) and be changing the same service now; two writers
        must never interleave. Read again when not confirmed within the last second."""
        if self.lost is None and time.monotonic() - self._confirmed > 1.0:
            try:
                current = self.read()
            except Exception as e:  # cannot tell: the renewer's last word stands until the lease runs out
                if time.monotonic() - self._confirmed > self.duration_s:
                    self.lost = f"not confirmed for {self.duration_s} s ({type(e).__name__})"
            else:
                if current is None or current[0].holder != self.holder:
                    self.lost = f"now held by {current[0].holder}" if current else "it was deleted"
                else:
                    self._confirmed = time.monotonic()
        if self.lost is not None:
            raise GuardRefused(f"this run ({self.holder}) lost its lock {self.name}: {self.lost}. It stops before "
                               "its next change; look at what the other run did before going on")

    def _holder_died(self, holder: str) -> bool:
        """Whether the holder is a run of this machine whose `runbook run` process is gone (its
        watcher died too, or has not ended it yet): its lease is as good as stale."""
        from ..errors import RunbookError
        from .journal import find_journal
        from .liveness import find_dead

        try:
            return find_dead(find_journal(holder)) is not None
        except RunbookError:  # not a run of this machine: only its lease's age tells
            return False

    def _renew_until_released(self) -> None:
        while not self._stop.wait(self.duration_s / 3):
            try:
                current = self.read()
                if current is None or current[0].holder != self.holder:
                    # Lost it: the next change is refused (fence), and release() will not delete
                    # someone else's lease.
                    self.lost = f"now held by {current[0].holder}" if current else "it was deleted"
                    return
                state, version = current
                self.cluster.replace_lease(self.name, self._body(state.acquired or utcnow(), version))
                self._confirmed = time.monotonic()
            except Exception:  # a missed renewal is retried; the lease outlives a few of them
                if time.monotonic() - self._confirmed > self.duration_s:
                    self.lost = f"not renewed for {self.duration_s} s"
                continue

    def release(self) -> None:
        """Give the lock back (only if we still hold it)."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=5)
        if self.fence in self.cluster.fences:
            self.cluster.fences.remove(self.fence)
        if not self._held:
            return
        self._held = False
        current = self.read()
        if current is not None and current[0].holder == self.holder:
            self.cluster.delete_lease(self.name, current[1])
        self._journal("lease-released")

    def _journal(self, event: str) -> None:
        """Journal the lease in the run that holds it (the holder is that run's id)."""
        from .context import current

        ctx = current()
        if ctx is not None and ctx.run_id == self.holder:
            ctx.journal.write(event=event, lease=self.name, namespace=self.cluster.namespace, holder=self.holder)

    def __enter__(self) -> "DeployLock":
        self.acquire()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.release()


def held_leases(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The leases a run's journal shows taken and not given back (a dead kernel's)."""
    held: dict[tuple[str, str], dict[str, Any]] = {}
    for entry in entries:
        key = (entry.get("namespace") or "", entry.get("lease") or "")
        if entry.get("event") == "lease-acquired":
            held[key] = entry
        elif entry.get("event") == "lease-released":
            held.pop(key, None)
    return list(held.values())


def release_orphaned(cluster: "Cluster", entries: list[dict[str, Any]]) -> list[str]:
    """Release the leases a dead run still holds (only while it is still their holder).

    Returns one line per lease saying what became of it. A lease that cannot be deleted (the API
    server unreachable) is left to go stale: its holder renews it no more."""
    from ..errors import RunbookError

    said = []
    for entry in held_leases(entries):
        name, holder = entry["lease"], entry.get("holder") or ""
        lock = DeployLock(cluster, name.removeprefix("runbook-lock-"), holder)
        try:
            current = lock.read()
            if current is None or current[0].holder != holder:
                said.append(f"{name}: no longer held by this run")
                continue
            state, version = current
            cluster.delete_lease(name, version)
            said.append(f"{name}: released (held by this run since {state.acquired:%H:%M:%S} UTC)")
        except RunbookError as e:
            said.append(f"{name}: NOT released ({e}); stale in at most {lock.duration_s} s, when the next run "
                        f"takes it over")
    return said
