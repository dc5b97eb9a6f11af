"""Rolling a service back, fast, and proving the previous version serves again.

One named function, ``roll_back``, used both by the rollback runbook and by the deploy
runbook's automatic rollback (as Flagger's rollback is a short named sequence of calls).
time-to-rollback is DESIGN.md's: the moment the target version serves 100 % of sampled
requests (version endpoint, through the Service) minus the moment the rollback started.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ..config.parameters import RunbookParams
from ..display import Tables
from ..platform.checks import service_url, serving_versions
from ..errors import CheckFailed, NoData, NotFound, ParameterError, RunbookError, RunbookTimeout
from ..platform.rollout import Revision, history, undo, wait_for_rollout

if TYPE_CHECKING:
    from ..platform.cluster import Cluster
    from ..run.context import RunContext
    from ..display import RowsTable
    from .judging.verdicts import Verdict

__all__ = ["RollbackParams", "RollbackResult", "RollbackRun", "roll_back", "wait_until_serving"]


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
    from ..display import progress_bar

    url = service_url(cluster, service)
    deadline = time.monotonic() + timeout_s
    with progress_bar(total=samples, desc=f"{service} serving {version}", unit="req") as bar:
        while True:
            seen = serving_versions(url, samples=samples, reach=cluster.reach)
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


#: The titles of Verify's tables, as the record shows them.
VERIFY_TITLES = {"pods": "Pods of the target revision", "signals": "Golden signals vs SLOs",
                 "smoke": "Smoke requests through the Service"}


class RollbackParams(RunbookParams):
    """The rollback runbook's parameters, validated before anything is read."""

    service: str = Field(min_length=1, description="One service of parameters/services.yaml")
    to_revision: int = Field(0, ge=0, description="A revision number; 0 = the previous one")
    reason: str = Field("", max_length=500, description="Why: lands in the record (required with allow_known_bad)")
    allow_known_bad: bool = Field(False, description="Roll back onto a version known to have failed (needs a reason)")
    verify_s: float = Field(5.0, ge=0, le=600, description="At most this many seconds of the target's traffic judged: the "
                                                       "verdict ends as soon as the evidence suffices")
    run_down_migrations: bool = Field(False, description="Across a contract migration: back up, run its down file")
    defective: bool = Field(False, description="The version rolled back from is defective: mark it known bad")
    dry_run: bool = False


class RollbackRun:
    """The rollback runbook's steps: history, plan (known-bad targets refused), roll back under the
    lock, and verify that the service recovered (pods, smoke requests, golden signals vs SLOs)."""

    def __init__(self, ctx: "RunContext", params: RollbackParams) -> None:
        from ..platform.cluster import Cluster
        from .schema_change import SchemaChange

        service = params.service
        self.ctx = ctx
        self.params = params
        self.service = service
        self.to_revision = params.to_revision or None
        self.allow_known_bad = params.allow_known_bad
        self.reason = params.reason
        self.verify_s = params.verify_s
        self.run_down_migrations = params.run_down_migrations
        self.defective = params.defective  # the operator's word that the version rolled back from is bad
        self.schema_change = SchemaChange(ctx, service, dry_run=ctx.dry_run)
        self.cluster = Cluster(ctx.profile, dry_run=ctx.dry_run)
        self.spec = ctx.profile.services.get(service)
        self.deployment = self.cluster.live_deployment(service)
        self.revisions: list[Revision] = []
        self.current = 0
        self.verdicts: dict[str, "Verdict"] = {}
        self.target: Revision | None = None
        self.undone: Revision | None = None
        self.result: RollbackResult | None = None
        self.changed_at: float | None = None  # Unix seconds: when the undo was about to be applied

    def history(self) -> "RowsTable":
        """The revisions as kubectl reads them, each with its version (from the image) and what
        the records and the cluster know about it. Plain rows, no pandas: this runs before the
        rollback, and every second here is a second of the outage."""
        from ..platform.rollout import history_rows
        from ..display import RowsTable
        from .judging.verdicts import known_verdicts

        self.revisions, self.current = revisions_of(self.cluster, self.deployment)
        identity = (self.ctx.cluster or {}).get("identity")
        self.verdicts = known_verdicts(self.ctx.env, self.service, identity, self.revisions)
        for revision in self.revisions:
            if revision.label_warning:
                print(f"⚠ revision {revision.number}: {revision.label_warning}")
        rows = history_rows(self.revisions, self.current, {v: d.short() for v, d in self.verdicts.items()})
        return RowsTable(f"Revision history of {self.deployment}", rows)

    def plan(self) -> str:
        """Which revision we go to, or a clear refusal (exit 2) when there is none or it is known bad."""
        from ..platform.rollout import choose_revision
        from .judging.verdicts import newest_known_good, refuse_known_bad

        try:
            target = choose_revision(self.revisions, self.current, self.to_revision)
        except NotFound as e:
            raise ParameterError(f"nothing to roll back to for {self.deployment}: {e}") from None
        if target.number == self.current:
            raise ParameterError(f"revision {target.number} is already the current one of {self.deployment}")
        current_version = self._version(self.current)
        good = newest_known_good(self.revisions, self.current, self.verdicts, current_version)
        proposal = (f"The newest revision not known bad is {good.number} ({good.version}, "
                    f"{self._known(good.version)}): -p to_revision {good.number}." if good else
                    "No other revision is free of a bad verdict: roll forward with a fixed version.")
        override = refuse_known_bad(
            self.verdicts.get(target.version or ""),
            what=f"to roll {self.deployment} back to revision {target.number}",
            allow_known_bad=self.allow_known_bad, reason=self.reason, reason_parameter="reason", proposal=proposal)
        if override:
            print(f"⚠ {override}")
            self.ctx.note("override", override)
        migrations = self.schema_change.plan_rollback(
            current_version, target.version, run_down_migrations=self.run_down_migrations,
            what=f"to roll {self.deployment} back to revision {target.number} ({target.version})")
        self.target = target
        return (f"{self.deployment}: revision {self.current} ({current_version}) → "
                f"revision {target.number} ({target.version}, {target.image}; {self._known(target.version)})"
                + (f"\n{migrations}" if migrations else ""))

    def _known(self, version: str | None) -> str:
        verdict = self.verdicts.get(version or "")
        return verdict.short() if verdict else "no verdict on record"

    def _version(self, number: int) -> str | None:
        return next((r.version for r in self.revisions if r.number == number), None)

    def _revision(self, number: int) -> Revision | None:
        return next((r for r in self.revisions if r.number == number), None)

    def preview(self) -> str:
        """The planned rollback as the API server would make it (``dryRun=All``): a diff, nothing
        stored; and the down migrations that will run before it."""
        from ..platform.cluster import Cluster
        from ..platform.rollout import diff_objects, undo

        if self.target is None:
            raise ParameterError("no plan: run plan() before preview()")
        dry = Cluster(self.ctx.profile, dry_run=True, client=self.cluster.client)
        before = dry.deployment(self.deployment)
        _, after = undo(dry, self.deployment, self.target.number)
        return (f"deployment/{self.deployment}: revision {self.current} → {self.target.number}\n{diff_objects(before, after)}"
                f"\n{self.schema_change.to_run_for_rollback()}")

    def deployment_facts(self) -> dict[str, Any]:
        """The Deployment as the approval saw it (a resume refuses if it changed since)."""
        from ..platform.rollout import deployment_facts

        return deployment_facts(self.cluster, self.deployment)

    def run(self) -> str:
        from ..run.lock import DeployLock

        if self.target is None:
            raise ParameterError("no plan: run plan() before run()")
        undone = self.undone = self._revision(self.current)
        with DeployLock(self.cluster, self.service, self.ctx.run_id):
            self.schema_change.revert()  # planned only with run_down_migrations: a backup, then the down files
            self.changed_at = time.time()
            self.result = roll_back(self.cluster, self.service, self.deployment, to_revision=self.target.number,
                                    timeout_s=self.ctx.profile.timeouts.rollback_s)
        self._link_undone_deploy(undone.version if undone else None)
        if self.result.dry_run:
            return f"dry run: the API server accepted the rollback to revision {self.result.to_revision}; nothing changed"
        self.ctx.figure("time_to_rollback_s", self.result.time_to_rollback_s)
        self.ctx.figure("to_revision", self.result.to_revision)
        goal = self.ctx.profile.timeouts.rollback_s
        return (f"rolled back to revision {self.result.to_revision} ({self.result.to_version}): it serves 100 % "
                f"({self.result.versions_seen}) after {self.result.time_to_rollback_s:.1f} s (goal < {goal:g} s)")

    def _link_undone_deploy(self, version: str | None) -> None:
        """Link the newest deploy record of the version we undid, when the catalog has it."""
        from ..records.catalog import Catalog, RecordFilter

        if version is None:
            return
        try:
            rows = Catalog().rows(RecordFilter(env=self.ctx.env, runbook="deploy", service=self.service))
        except (OSError, RunbookError):  # no records folder: the link is a convenience, not a step
            return
        mine = [r for r in rows if (r.get("parameters") or {}).get("version") == version]
        if mine:
            self.ctx.link("undoes", str(mine[0]["record"]))

    def verify(self) -> "Tables":
        """Recovered means: every pod of the target answers, smoke requests through the Service pass,
        and the target version's golden signals meet the SLOs. Any miss fails the rollback, with numbers.

        The target's pods served real traffic from the moment the first of them was ready, during the
        rollout: those seconds count toward ``verify_s`` (judge_version's ``created_after``), and
        the signals table states the window judged and how many requests it held."""
        from ..platform.checks import pod_checks, service_url, smoke_checks
        from .judging.judgement import judge_version
        from .judging.verdicts import record_verdict

        if self.ctx.dry_run or self.result is None or self.target is None:
            import pandas as pd

            return Tables({"dry run": pd.DataFrame([{"dry run": "nothing changed; nothing to verify"}])})
        version = self.result.to_version or "?"
        selector = f"app={self.service}" + (f",pod-template-hash={self.target.pod_template_hash}"
                                           if self.target.pod_template_hash else f",version={version}")
        tables = {"pods": pod_checks(self.cluster, self.service, self.spec, label_selector=selector)}
        failures: list[str] = []
        try:
            tables["signals"] = judge_version(self.ctx, self.cluster, self.service, version,
                                              observe_s=self.verify_s, pod_label_selector=selector,
                                              created_after=self.changed_at, kind="rollback verify")
        except (CheckFailed, NoData) as e:
            failures.append(f"golden signals: {e}")
        try:
            tables["smoke"] = smoke_checks(service_url(self.cluster, self.service), self.spec, reach=self.cluster.reach)
        except CheckFailed as e:
            failures.append(str(e))
        if failures:
            # The target is bad; the undone version keeps its verdict: going back did not help,
            # so this run is no evidence that the undone version was the problem.
            why = "rollback target failed verification: " + "; ".join(failures)
            record_verdict(self.ctx, self.cluster, self.service, self.target, version, "bad", why)
            raise CheckFailed(f"the rollback to revision {self.target.number} ({version}) did not recover "
                              f"{self.service}: " + "; ".join(failures))
        record_verdict(self.ctx, self.cluster, self.service, self.target, version, "good",
                       "rollback target passed pod, smoke and SLO checks")
        undone = self.undone
        if undone is not None and undone.version != version:
            self._judge_undone(undone)
        return Tables(tables, VERIFY_TITLES)

    def _judge_undone(self, undone: Revision) -> None:
        """The version rolled back from is known bad only on evidence: its own signals over the
        minutes before the rollback missed the SLOs, or the operator says so (``defective``).
        Otherwise the record says it was rolled back, not blamed, with its numbers: a drill, a
        freeze or an unwanted feature rolls back healthy versions, which must stay deployable."""
        from .judging.judgement import signals_before
        from ..platform.metrics import Metrics
        from .judging.verdicts import record_verdict

        reason = f": {self.reason}" if self.reason else ""
        if self.defective:
            why = f"declared defective by {self.ctx.operator or 'the operator'} when rolled back (run {self.ctx.run_id}){reason}"
            record_verdict(self.ctx, self.cluster, self.service, undone, undone.version, "bad", why)
            return
        slo = self.ctx.profile.slo
        before = signals_before(Metrics.of(self.ctx.profile.prometheus, timeout_s=5), self.service, undone.replica_set,
                                self.changed_at or time.time(), success_rate_min=slo.success_rate_min,
                                p99_max_ms=slo.p99_latency_max_ms)
        if before.failed:
            record_verdict(self.ctx, self.cluster, self.service, undone, undone.version, "bad",
                           f"its own signals failed the SLOs before run {self.ctx.run_id} rolled it back: {before.text}")
            print(f"{undone.version} is marked known bad: {before.text}")
            return
        note = f"{undone.version} rolled back, not blamed: {before.text}{reason}"
        self.ctx.note("not blamed", note)
        print(note)
