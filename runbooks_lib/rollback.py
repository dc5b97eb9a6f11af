"""Rolling a service back, fast, and proving the previous version serves again.

One named function, ``roll_back``, used both by the rollback runbook and by the deploy
runbook's automatic rollback (as Flagger's rollback is a short named sequence of calls).
time-to-rollback is DESIGN.md's: the moment the target version serves 100 % of sampled
requests (version endpoint, through the Service) minus the moment the rollback started.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .checks import service_url, serving_versions
from .errors import CheckFailed, RunbookTimeout
from .rollout import Revision, history, undo, wait_for_rollout

if TYPE_CHECKING:
    from .cluster import Cluster

__all__ = ["RollbackResult", "roll_back", "wait_until_serving"]


@dataclass(frozen=True)
class RollbackResult:
    deployment: str
    from_revision: int | None
    to_revision: int
    to_version: str | None
    to_image: str | None
    time_to_rollback_s: float | None
    versions_seen: dict[str, int]
    dry_run: bool


def wait_until_serving(cluster: "Cluster", service: str, version: str, timeout_s: float,
                       samples: int = 20) -> dict[str, int]:
    """Sample the Service's /version until every sampled answer is ``version``."""
    from tqdm.auto import tqdm

    url = service_url(cluster, service)
    deadline = time.monotonic() + timeout_s
    with tqdm(total=samples, desc=f"{service} serving {version}", unit="req") as bar:
        while True:
            seen = serving_versions(url, samples=samples)
            bar.n = seen.get(version, 0)
            bar.set_postfix(seen=seen)
            bar.refresh()
            if seen.get(version, 0) == samples:
                return seen
            if time.monotonic() > deadline:
                raise RunbookTimeout(f"{service}: {version} not serving 100 % after {timeout_s:.0f} s (seen {seen})")
            time.sleep(0.2)


def roll_back(cluster: "Cluster", service: str, deployment: str | None = None, *,
              to_revision: int | None = None, timeout_s: float = 300) -> RollbackResult:
    """Undo to ``to_revision`` (default: previous), wait, and verify the target version serves."""
    deployment = deployment or service
    began = time.monotonic()
    current = cluster.deployment_state(deployment).revision
    target, _ = undo(cluster, deployment, to_revision)
    if cluster.dry_run:
        return RollbackResult(deployment, int(current or 0), target.number, target.version, target.image, None, {}, True)
    wait_for_rollout(cluster, deployment, timeout_s)
    remaining = max(5.0, timeout_s - (time.monotonic() - began))
    seen = wait_until_serving(cluster, service, target.version, remaining) if target.version else {}
    elapsed = round(time.monotonic() - began, 3)
    if target.version is None:
        raise CheckFailed(f"revision {target.number} has no version label: cannot verify what serves")
    return RollbackResult(deployment, int(current or 0), target.number, target.version, target.image, elapsed, seen, False)


def previous_revision(revisions: list[Revision], current: int) -> Revision | None:
    earlier = [r for r in revisions if r.number < current]
    return earlier[-1] if earlier else None


def revisions_of(cluster: "Cluster", deployment: str) -> tuple[list[Revision], int]:
    """The history and the current revision number."""
    state = cluster.deployment_state(deployment)
    return history(cluster, deployment), int(state.revision or 0)
