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
from .errors import CheckFailed, NotFound, ParameterError, RunbookTimeout
from .rollout import Revision, history, undo, wait_for_rollout

if TYPE_CHECKING:
    import pandas as pd

    from .cluster import Cluster
    from .context import RunContext

__all__ = ["RollbackResult", "RollbackRun", "roll_back", "wait_until_serving"]


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
    from tqdm import tqdm  # text bars: they stay readable in the record

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


class RollbackRun:
    """The rollback runbook's steps: history, plan, roll back under the lock, verify."""

    def __init__(self, ctx: "RunContext", service: str, *, to_revision: int | None = None) -> None:
        from .cluster import Cluster
        from .deploy import Deployment, DeployParams

        self.ctx = ctx
        self.service = service
        self.to_revision = to_revision
        self.cluster = Cluster(ctx.profile, dry_run=ctx.dry_run)
        self.spec = ctx.profile.services.get(service)
        # The live Deployment (blue-green renames it by colour) is found as a deploy would.
        probe = Deployment(ctx, DeployParams(service=service, version="probe", dry_run=True))
        self.deployment = probe.deployment_name
        self.revisions: list[Revision] = []
        self.current = 0
        self.result: RollbackResult | None = None

    def history(self) -> "pd.DataFrame":
        from .rollout import history_table

        self.revisions, self.current = revisions_of(self.cluster, self.deployment)
        return history_table(self.revisions, self.current)

    def plan(self) -> str:
        """Which revision we go to, or a clear refusal (exit 2) when there is none."""
        from .rollout import choose_revision

        try:
            target = choose_revision(self.revisions, self.current, self.to_revision)
        except NotFound as e:
            raise ParameterError(f"nothing to roll back to for {self.deployment}: {e}") from None
        if target.number == self.current:
            raise ParameterError(f"revision {target.number} is already the current one of {self.deployment}")
        self.target = target
        return (f"{self.deployment}: revision {self.current} ({self._version(self.current)}) → "
                f"revision {target.number} ({target.version}, {target.image})")

    def _version(self, number: int) -> str | None:
        return next((r.version for r in self.revisions if r.number == number), None)

    def run(self) -> str:
        from .lock import DeployLock

        undone_version = self._version(self.current)
        with DeployLock(self.cluster, self.service, self.ctx.run_id):
            self.result = roll_back(self.cluster, self.service, self.deployment, to_revision=self.target.number,
                                    timeout_s=self.ctx.profile.timeouts.rollback_s)
        self._link_undone_deploy(undone_version)
        if self.result.dry_run:
            return f"dry run: the API server accepted the rollback to revision {self.result.to_revision}; nothing changed"
        self.ctx.figure("time_to_rollback_s", self.result.time_to_rollback_s)
        self.ctx.figure("to_revision", self.result.to_revision)
        goal = self.ctx.profile.timeouts.rollback_s
        return (f"rolled back to revision {self.result.to_revision} ({self.result.to_version}): it serves 100 % "
                f"({self.result.versions_seen}) after {self.result.time_to_rollback_s:.1f} s (goal < {goal:g} s)")

    def _link_undone_deploy(self, version: str | None) -> None:
        """Link the newest deploy record of the version we undid, when the catalog has it."""
        try:
            from .records.catalog import summaries

            deploys = summaries(env=self.ctx.env, runbook="deploy", service=self.service)
        except Exception:  # no catalog or no records: the link is a convenience, not a step
            return
        if version is not None and not deploys.empty:
            mine = deploys[deploys["parameters"].map(lambda p: (p or {}).get("version") == version)]
            if not mine.empty:
                self.ctx.link("undoes", str(mine.iloc[0]["record"]))

    def verify(self) -> "pd.DataFrame":
        from .checks import pod_checks

        if self.ctx.dry_run or self.result is None:
            import pandas as pd

            return pd.DataFrame([{"dry run": "nothing changed; nothing to verify"}])
        return pod_checks(self.cluster, self.service, self.spec,
                          label_selector=f"app={self.service},version={self.result.to_version}")
