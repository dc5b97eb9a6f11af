"""Deploying a new version of one service: the guide's sections 3–8 and 12.

``DeployRun`` carries one deploy run: the pre-deployment checklist, the lock, the secrets
from Vault, the rollout (rolling, or blue-green in ``bluegreen``), the post-deploy checks,
and the automatic rollback when any check fails. Each method is one notebook step and
returns a table for the record; failures raise CheckFailed with the numbers behind them.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Iterator, Literal

from pydantic import Field

from ...config.parameters import RunbookParams
from ...display import Said, Tables, Titled, show, titled
from ...platform.checks import pod_checks, service_url, smoke_checks
from ...platform.vault import SECRET_NAME, vault_key_to_secret_key
from ...platform.cluster import Cluster, secret_hashes
from ...errors import BackendUnavailable, CheckFailed, LockHeld, RunbookError, RunbookTimeout
from ...run.lock import DeployLock
from ..rollback import RollbackResult, roll_back
from ...platform.rollout import diff_objects, set_image, wait_for_rollout

if TYPE_CHECKING:
    import pandas as pd

    from ...run.context import RunContext

__all__ = ["DeployParams", "DeployRun", "diff_objects"]

VERIFY_TITLES = {"pods": "New pods: health, readiness, version", "smoke": "Smoke requests",
                 "budget": "Requests to the new pods vs the SLO's error budget (binomial test)",
                 "signals": "Golden signals of the new version vs SLOs"}
# Pods that will never become ready without a human: fail at once instead of waiting.
_HOPELESS = {"ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerConfigError", "InvalidImageName"}


class DeployParams(RunbookParams):
    """The deploy runbook's parameters, validated before anything changes."""

    service: str
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Image tag")
    strategy: Literal["rolling", "blue-green"] = "rolling"
    dry_run: bool = False
    change_cause: str = ""
    ticket: str = ""
    analysis_s: float = Field(10, ge=0, le=3600, description="At most this many seconds of the new version's "
                                                "traffic judged: the verdict ends as soon as the evidence suffices")
    monitor_s: float = Field(15, ge=0, le=3600, description="Blue-green: watch the new colour this long before "
                                                              "deleting the old one")
    allow_known_bad: bool = Field(False, description="Deploy a version the records or the cluster know as bad "
                                                     "(needs a change_cause saying why)")




@dataclass
class DeployRun:
    """One deploy of one service to one environment."""

    ctx: "RunContext"
    params: DeployParams
    cluster: Cluster = field(init=False)
    started: datetime = field(init=False)
    rollback: RollbackResult | None = field(default=None, init=False)
    lock: DeployLock | None = field(default=None, init=False)
    diffs: dict[str, str] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self.changed = False  # the new version was applied to the cluster (roll_out)
        self.cluster = Cluster(self.ctx.profile, dry_run=self.params.dry_run)
        self.spec = self.ctx.profile.services.get(self.params.service)
        self.image = self.ctx.profile.services.image(self.params.service, self.params.version)
        self.started = datetime.now(timezone.utc)
        self.deployment_name = self.active_deployment()
        self._schema_change: Any = None
        self._rollout_checkpointed = False

    def describe(self) -> Said:
        """What this run deploys, where, how, and onto which live Deployment."""
        p = self.params
        return Said(f"deploying {self.image} to {self.ctx.env} ({p.strategy}{', dry run' if p.dry_run else ''}); "
                    f"live deployment: {self.deployment_name}")

    @property
    def schema_change(self) -> Any:
        """The release's database migrations (runbooks_lib.procedures.schema_change), read on first use."""
        if self._schema_change is None:
            from ..schema_change import SchemaChange

            self._schema_change = SchemaChange(self.ctx, self.params.service, dry_run=self.params.dry_run)
        return self._schema_change

    # -- what is running -------------------------------------------------------------------

    def active_deployment(self) -> str:
        """The Deployment the Service sends traffic to (blue-green renames it by colour)."""
        return self.cluster.live_deployment(self.params.service)

    def deployment_facts(self) -> dict[str, Any]:
        """What a resume checks has not changed since: the live Deployment's spec as it runs."""
        from ...platform.rollout import deployment_facts

        return deployment_facts(self.cluster, self.deployment_name)

    def secret_facts(self) -> dict[str, Any]:
        """The Secret the pods read, as hashes of its values (never the values)."""
        from ...errors import NotFound

        try:
            keys: dict[str, str] | None = self.cluster.secret_keys(SECRET_NAME)
        except NotFound:
            keys = None
        return {"object": f"secret/{SECRET_NAME}", "keys": keys}

    def preview_rollout(self) -> str:
        """The rolling change as the API server would make it (``dryRun=All``): a diff, nothing stored."""
        dry = Cluster(self.ctx.profile, dry_run=True, client=self.cluster.client)
        before = dry.deployment(self.deployment_name)
        after = set_image(dry, self.deployment_name, self.params.service, self.image, version=self.params.version,
                          change_cause=self._change_cause())
        return diff_objects(before, after)

    def preview_changes(self) -> str:
        """Everything this deploy will change, for the approval gate: the Secret's keys that Vault
        would change (names only), the rollout (the API server's dry-run diff for rolling), and the
        database migrations that will run."""
        from ...platform.vault import Vault, fingerprint

        try:
            wanted = {vault_key_to_secret_key(k): fingerprint(v) for k, v in Vault(self.ctx.profile.vault).read().items()}
        except BackendUnavailable as e:  # the secrets step will say so; the rollout's diff still stands
            lines = [f"secret/{SECRET_NAME}: synced from Vault at the secrets step (Vault cannot be read now: {e})"]
        else:
            live = secret_hashes(self.cluster.secret(SECRET_NAME))
            changed = sorted(k for k in set(wanted) | set(live) if wanted.get(k) != live.get(k))
            lines = [f"secret/{SECRET_NAME}: " + (f"keys {', '.join(changed)} change (values not shown)" if changed
                                                   else "already matches Vault")]
        if self.params.strategy == "blue-green":
            lines.append(f"deployment/{self.params.service}-<new colour>: created with {self.image} beside "
                         f"{self.deployment_name}; after its tests service/{self.params.service} flips to it, "
                         f"then {self.deployment_name} is deleted")
        else:
            lines.append(f"deployment/{self.deployment_name}:\n{self.preview_rollout()}")
        lines.append(self.schema_change.to_run_for_deploy(self.params.version))
        return "\n".join(lines)

    # -- 1. checklist ----------------------------------------------------------------------

    def checklist(self) -> Titled:
        """The guide's pre-deployment checklist, checked; a failing item stops before any change."""
        import pandas as pd

        from ...platform.metrics import Metrics

        items: list[tuple[str, str, str]] = []

        def item(name: str, ok: bool | None, detail: str) -> None:
            items.append((name, "n/a" if ok is None else ("pass" if ok else "FAIL"), detail))

        # A live lock means another run is changing this service right now: that is a guard
        # refusal (exit 4), checked first, not a checklist failure.
        held = DeployLock(self.cluster, self.params.service, self.ctx.run_id).read()
        if held is not None and not held[0].expired() and held[0].holder != self.ctx.run_id:
            raise LockHeld(
                f"another run ({held[0].holder}) is changing {self.params.service} in {self.ctx.env} since "
                f"{held[0].acquired:%H:%M:%S} UTC; refusing a concurrent deploy"
            )
        state = self.cluster.deployment_state(self.deployment_name)
        current_image = state.image or ""
        item("version not known bad", *self._known_bad_check())
        item("service is in the catalog", True, f"{self.params.service} (:{self.spec.port}, {self.spec.replicas} replicas)")
        item("new version differs from the running one", current_image != self.image,
             f"running {current_image}, deploying {self.image}")
        item("no rollout in progress", state.rolled_out and not state.paused,
             f"{state.ready}/{state.desired} ready, {state.updated} updated, revision {state.revision}")
        item("previous revision available for rollback", state.revision is not None and state.ready >= 1,
             f"revision {state.revision} ({current_image}) serves {state.ready} ready replicas")
        item("no other deploy holds the lock", True,
             "free" if held is None else f"stale lease of {held[0].holder}: will be taken over")
        metrics = Metrics.of(self.ctx.profile.prometheus)
        try:
            rules = metrics.alert_rules()
            item("Prometheus reachable and alert rules loaded", bool(rules), f"{len(rules)} alert rules: {', '.join(rules[:4])}")
        except BackendUnavailable as e:
            item("Prometheus reachable and alert rules loaded", False, str(e))
        item("staging already runs this version", *self._staging_runs_version())
        item("database migrations", *self.schema_change.checklist_item(self.params.version))
        table = pd.DataFrame(items, columns=["item", "status", "detail"]).set_index("item")
        failing = table[table["status"] == "FAIL"]
        if not failing.empty:
            raise CheckFailed("pre-deployment checklist failed: " + "; ".join(f"{i}: {d}" for i, d in failing["detail"].items()))
        return titled("Pre-deployment checklist", table)

    def _known_bad_check(self) -> tuple[bool, str]:
        """A version that failed before is refused (exit 2) unless explicitly overridden with a reason."""
        from ...platform.rollout import history
        from ..judging.verdicts import known_verdicts, refuse_known_bad

        identity = (self.ctx.cluster or {}).get("identity")
        revisions = history(self.cluster, self.deployment_name)
        verdict = known_verdicts(self.ctx.env, self.params.service, identity, revisions).get(self.params.version)
        override = refuse_known_bad(
            verdict, what=f"to deploy {self.params.service} {self.params.version}",
            allow_known_bad=self.params.allow_known_bad, reason=self.params.change_cause, reason_parameter="change_cause",
            proposal="Deploy a fixed version instead.")
        if override:
            print(f"⚠ {override}")
            self.ctx.note("override", override)
            return True, override
        if verdict is not None:
            return True, f"last verdict: {verdict.short()}"
        return True, "no record or ReplicaSet says it failed before"

    def _staging_runs_version(self) -> tuple[bool | None, str]:
        if self.ctx.env != "production":
            return None, f"only checked for production deploys (this is {self.ctx.env})"
        from ...config.profiles import load_profile

        try:
            staging = Cluster(load_profile("staging"))
            image = staging.deployment_state(self.params.service).image
        except RunbookError as e:
            return False, f"cannot read staging: {e}"
        return image == self.image, f"staging runs {image}"

    # -- 2. lock ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def locked(self) -> Iterator[DeployLock]:
        """Hold the env+service lease for the changing part of the run."""
        self.lock = DeployLock(self.cluster, self.params.service, self.ctx.run_id)
        with self.lock:
            if self.lock.stale_taken_over is not None:
                stale = self.lock.stale_taken_over
                print(f"took over a stale lock left by {stale.holder} ({self.lock.takeover_reason})")
            yield self.lock

    def acquire_lock(self) -> str:
        """Notebook form: take the lock now; ``release_lock`` (also run on failure) gives it back."""
        self.lock = DeployLock(self.cluster, self.params.service, self.ctx.run_id)
        self.lock.acquire()
        self.ctx.on_finish(self.release_lock)
        stale = self.lock.stale_taken_over
        note = f" (took over a stale lock of {stale.holder}: {self.lock.takeover_reason})" if stale else ""
        return f"lock {self.lock.name} held by run {self.ctx.run_id}{note}" + (" [dry run: checked only]" if self.params.dry_run else "")

    def release_lock(self) -> None:
        if self.lock is not None:
            self.lock.release()

    # -- 3. secrets ------------------------------------------------------------------------

    def sync_secrets(self) -> Titled:
        """Vault's secret/veza/<env> → the Kubernetes Secret the pods read; shows keys and hashes only."""
        from ..rotation import sync_secret
        from ...platform.vault import Vault

        table = sync_secret(self.cluster, Vault(self.ctx.profile.vault), self.ctx.profile.vault.path, SECRET_NAME)
        self.ctx.figure("secret_keys_changed", int(table["changed"].sum()))
        return titled(f"{SECRET_NAME} after the sync (keys and hashes, never a value)", table)

    # -- 4. database migrations, before any pod changes --------------------------------------

    def migrate(self) -> Titled:
        """A backup, then the release's pending migrations, one verified transaction each. A failing
        migration rolls itself back and stops the deploy here: no pod has changed yet."""
        try:
            return titled(f"Database migrations of {self.params.version}", self.schema_change.apply_for(self.params.version))
        except CheckFailed as e:
            if not self.params.dry_run:
                self._mark_bad(f"deploy stopped before the rollout: {e}")
            raise

    # -- 4a. rolling -----------------------------------------------------------------------

    def _change_cause(self) -> str:
        cause = self.params.change_cause or f"deploy {self.params.version}"
        return f"{cause} (ticket {self.params.ticket}, run {self.ctx.run_id})" if self.params.ticket else f"{cause} (run {self.ctx.run_id})"

    def _fail_fast(self, _: Any) -> None:
        stuck = {p.waiting_reason for p in self.cluster.pod_states(f"app={self.params.service},version={self.params.version}")
                 if p.waiting_reason in _HOPELESS}
        if stuck:
            raise CheckFailed(f"new pods of {self.params.version} cannot start: {', '.join(sorted(stuck))}")

    def _on_rollout_progress(self, state: Any) -> None:
        if not self._rollout_checkpointed and state.observed_generation >= state.generation:
            # The controller has taken the new template (and numbered its revision): journaled now, a
            # resume after this run dies mid-wait sees the change as this run's own, not as drift.
            self.ctx.checkpoint()
            self._rollout_checkpointed = True
        self._fail_fast(state)

    def roll_out(self) -> str:
        """Set the image (with change-cause), then wait as ``kubectl rollout status`` does."""
        before = self.cluster.deployment(self.deployment_name)
        after = set_image(self.cluster, self.deployment_name, self.params.service, self.image,
                          version=self.params.version, change_cause=self._change_cause())
        self.changed = not self.params.dry_run  # from here on, a failure of any kind is undone
        self.diffs[self.deployment_name] = diff_objects(before, after)
        if self.params.dry_run:
            return f"dry run: the API server accepted the change; nothing was applied\n\n{self.diffs[self.deployment_name]}"
        state = wait_for_rollout(self.cluster, self.deployment_name, self.ctx.profile.timeouts.rollout_s,
                                 on_progress=self._on_rollout_progress)
        self.ctx.figure("time_to_healthy_s", round((datetime.now(timezone.utc) - self.started).total_seconds(), 3))
        return f"{self.deployment_name} rolled out: revision {state.revision}, {state.ready}/{state.desired} ready"

    # -- post-deploy checks ------------------------------------------------------------------

    def verify(self, *, base_url: str | None = None, label_selector: str | None = None) -> dict[str, "pd.DataFrame"]:
        """Health, readiness and version of each new pod, smoke requests, then the golden signals."""
        if self.params.dry_run:
            return {}
        selector = label_selector or f"app={self.params.service},version={self.params.version}"
        tables = {"pods": pod_checks(self.cluster, self.params.service, self.spec, label_selector=selector)}
        tables["smoke"] = smoke_checks(base_url or service_url(self.cluster, self.params.service), self.spec,
                                       reach=self.cluster.reach)
        tables["signals"] = self.judge_metrics()
        self.ctx.verdict(self.params.service, self.params.version, "good", "deployed and passed pod, smoke and SLO checks")
        return tables

    def judge_metrics(self, observe_s: float | None = None, bake: bool = False) -> "pd.DataFrame":
        """Error rate and p99 of the new version's pods over ``observe_s`` (default ``analysis_s``), against
        the SLOs; ``bake``: watch all of it unless the version fails (``judge_version``)."""
        from ..judging.judgement import judge_version

        observe_s = self.params.analysis_s if observe_s is None else observe_s
        return judge_version(self.ctx, self.cluster, self.params.service, self.params.version, observe_s=observe_s,
                             pod_label_selector=f"app={self.params.service},version={self.params.version}", bake=bake)

    # -- 4. the rollout, by strategy ---------------------------------------------------------

    def rolling_update(self) -> None:
        """The rolling strategy as one record step: set the image, wait, verify; any failure rolls back."""
        with self.ctx.step("Rolling update and checks", key=f"rollout-{self.params.version}"), self.rollback_on_failure():
            print(self.roll_out())
            show(Tables(self.verify(), VERIFY_TITLES))

    # -- 5. automatic rollback ---------------------------------------------------------------

    @contextlib.contextmanager
    def rollback_on_failure(self) -> Iterator[None]:
        """Any failure inside this block, once the new version was applied, rolls the service back,
        then re-raises: a failed check or rollout (the version is then known bad), and anything else
        (no metrics, a Vault or API outage, an interrupt, a bug: rolled back without a verdict). A
        failure before the change landed changes nothing and undoes nothing (the previous release is
        live and must stay so)."""
        try:
            yield
        except BaseException as failure:
            if self.params.dry_run or not self.changed or isinstance(failure, (SystemExit, GeneratorExit)):
                raise
            print(f"✗ {type(failure).__name__}: {failure}\n↩ rolling back automatically")
            self.ctx.figure("rolled_back", True)
            if isinstance(failure, (CheckFailed, RunbookTimeout)):
                self._mark_bad(f"deploy failed and rolled back: {failure}")
            else:
                # Nothing judged the version (no metrics, an outage, an interrupt): rolled back to be
                # safe, not remembered as bad, or a later deploy of it would be refused for no evidence.
                self.ctx.note("not judged", f"{self.params.version} rolled back without a verdict: "
                                            f"{type(failure).__name__}: {failure}")
            with self.ctx.step("Automatic rollback", key="auto-rollback") as step:
                self.rollback = roll_back(self.cluster, self.params.service, self.deployment_name,
                                          timeout_s=self.ctx.profile.timeouts.rollback_s)
                step.note(reason=str(failure), to_revision=self.rollback.to_revision, to_version=self.rollback.to_version)
                self.ctx.figure("time_to_rollback_s", self.rollback.time_to_rollback_s)
            raise CheckFailed(
                f"{failure} — rolled back to revision {self.rollback.to_revision} ({self.rollback.to_version}) "
                f"in {self.rollback.time_to_rollback_s:.1f} s"
            ) from failure

    def _mark_bad(self, why: str) -> None:
        """Remember the failed version, in the record and on its ReplicaSet (see runbooks_lib.procedures.judging.verdicts)."""
        from ...platform.rollout import history
        from ..judging.verdicts import record_verdict

        try:
            revision = next((r for r in history(self.cluster, self.deployment_name) if r.image == self.image), None)
        except RunbookError:
            revision = None  # the record still says it; the cluster's copy is a convenience
        record_verdict(self.ctx, self.cluster, self.params.service, revision, self.params.version, "bad", why)

    # -- 6. summary ------------------------------------------------------------------------

    def failed_requests(self) -> str:
        """What the load generator saw during the deploy (sandbox), as a figure for the record."""
        from ...platform.load_report import failed_requests

        seen = failed_requests(self.ctx.profile.load_report_url, self.params.service, self.started)
        if seen is None:
            return "no load generator in this environment: see the golden signals above"
        total, failed = seen
        self.ctx.figure("requests_during_deploy", total)
        self.ctx.figure("failed_requests", failed)
        return f"{failed} failed of {total} requests to {self.params.service} since the deploy started"
