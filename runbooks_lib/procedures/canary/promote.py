"""Canary promotion (guide §6.2): the new version beside the primary at weight 0, then 5 → 25 →
50 → 100 % with the judge looking every ``interval_s``, then promote — or abort at once.

``abort_canary`` and ``promote_canary`` are short named sequences of router and cluster calls,
as Flagger's rollback and ``rollback.roll_back`` are. ``CanaryRun`` carries one run: each method
is one notebook step and returns a table or a sentence for the record.

The primary is the service's Deployment; the canary is ``<service>-canary`` (one pod, labels
``app``, ``version`` and ``track: canary``). The router tells them apart by their ``version``
label. time-to-abort is DESIGN.md's: canary routed to 0 % minus the first request the canary
served (the load generator's report where there is one, else the moment it was first routed).
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from pydantic import Field, field_validator

from ...config.parameters import RunbookParams
from ...display import Said, Titled, titled
from ...config.clock import utcnow
from ...platform.cluster import Cluster
from ...errors import CheckFailed, NoData, NotFound, ParameterError, RunbookError
from ...platform.images import version_of_image
from ...platform.routing import Router, Routes, Target, make_router
from .judge import Decision, Judge, Policy, Window
from .measure import Looker
from .provider import PrometheusProvider

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ...run.context import RunContext

__all__ = ["CanaryParams", "CanaryRun", "abort_canary", "promote_canary", "CONTROL_ANNOTATION"]

CONTROL_ANNOTATION = "veza.app/canary-control"  # "hold" or "abort", set by an operator (see CanaryRun.request)
_HOPELESS = {"ErrImagePull", "ImagePullBackOff", "CrashLoopBackOff", "CreateContainerConfigError", "InvalidImageName"}


class CanaryParams(RunbookParams):
    """The canary runbook's parameters, validated before anything changes."""

    service: str
    version: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$", description="Image tag of the canary")
    steps: tuple[int, ...] | None = Field(None, description="Canary weights in %; None: the profile's canary_steps")
    interval_s: float = Field(10, ge=2, le=600, description="Seconds between two looks of the judge")
    max_hold_s: float = Field(60, ge=0, le=3600, description="Abort after holding this long without data")
    dry_run: bool = False

    @field_validator("steps")
    @classmethod
    def _steps_increase_to_100(cls, steps: tuple[int, ...] | None) -> tuple[int, ...] | None:
        if steps is not None and (not steps or list(steps) != sorted(set(steps)) or steps[-1] != 100 or steps[0] <= 0):
            raise ValueError("steps must increase strictly, start above 0 and end at 100")
        return steps


@dataclass(frozen=True)
class AbortResult:
    reason: str
    routes: Routes
    zeroed_at: datetime  # the canary's weight reached 0 here
    cleanup: str


def abort_canary(router: Router, cluster: Cluster, canary: str, reason: str) -> AbortResult:
    """All traffic to the primary at once, the canary scaled to 0, the routing objects removed."""
    routes = router.set_routes(100, 0)
    zeroed_at = utcnow()
    try:
        cluster.scale_deployment(canary, 0)
    except NotFound:
        pass  # the canary never got created: nothing to scale
    return AbortResult(reason, routes, zeroed_at, router.cleanup())


def promote_canary(router: Router, cluster: Cluster, target: Target, image: str, version: str, *,
                   timeout_s: float, change_cause: str) -> list[str]:
    """The primary takes the canary's version while the canary serves everything; then the primary
    takes the traffic back, the canary is deleted and the routing objects removed."""
    from ...platform.rollout import set_image, wait_for_rollout

    done = [str(router.set_routes(0, 100))]
    set_image(cluster, target.primary, target.service, image, version=version, change_cause=change_cause)
    state = wait_for_rollout(cluster, target.primary, timeout_s)
    done.append(f"{target.primary} rolled out {version}: {state.ready}/{state.desired} ready, revision {state.revision}")
    # Both subsets now select the new version: moving the weight back changes no pod.
    router.target = Target(target.service, target.primary, target.canary, dict(target.canary_labels),
                           dict(target.canary_labels))
    router.setup()
    done.append(str(router.set_routes(100, 0)))
    cluster.delete_deployment(target.canary)  # its pod leaves the endpoints before it stops
    done.append(f"deleted {target.canary}")
    done.append(router.cleanup())
    return done


@dataclass
class CanaryRun:
    """One canary of one service, from preflight to promote or abort."""

    ctx: "RunContext"
    params: CanaryParams
    outcome: str | None = field(default=None, init=False)  # "promoted" / "aborted"
    aborted: AbortResult | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        from ...platform.metrics import Metrics

        profile = self.ctx.profile
        self.cluster = Cluster(profile, dry_run=self.params.dry_run)
        self.spec = profile.services.get(self.params.service)
        self.image = profile.services.image(self.params.service, self.params.version)
        self.steps = tuple(self.params.steps or profile.canary_steps)
        self.canary = f"{self.params.service}-canary"
        try:
            primary = self.cluster.deployment(self.params.service)
        except NotFound:
            raise ParameterError(f"no Deployment {self.params.service}: a canary needs the primary it is compared with") from None
        # What runs is the image; the pods' version label only tells them apart for the router
        # (and `kubectl set image` may have left it stale).
        primary_label = (primary["spec"]["template"]["metadata"].get("labels") or {}).get("version")
        containers = primary["spec"]["template"]["spec"].get("containers") or [{}]
        self.primary_version = version_of_image(containers[0].get("image")) or primary_label
        if not primary_label:
            raise ParameterError(f"{self.params.service}'s pods carry no version label: the router cannot tell primary from canary")
        if self.primary_version == self.params.version:
            raise ParameterError(f"{self.params.service} already runs {self.params.version}: nothing to canary")
        if primary_label == self.params.version:
            raise ParameterError(
                f"{self.params.service}'s pods are labelled version={primary_label} but run {self.primary_version} "
                f"(a stale label, e.g. after `kubectl set image`): the router could not tell them from the canary's; "
                "deploy or relabel the primary first")
        self.target = Target(self.params.service, self.params.service, self.canary,
                             {"version": primary_label}, {"version": self.params.version})
        self.router = make_router(profile, self.cluster, self.target)
        self.plan = [self.router.achievable(100 - w, w) for w in self.steps]  # an impossible split stops here
        self.metrics = Metrics.of(profile.prometheus)
        self.provider = PrometheusProvider(self.metrics)
        self.looker = Looker(self.provider, self.params.service, self.primary_version, self.params.version)
        self.judge = Judge(Policy.from_slo(profile.slo, max_hold_s=self.params.max_hold_s))
        self.started = utcnow()
        self.step_changes: list[tuple[datetime, float, Routes]] = []
        self.first_routed_at: datetime | None = None
        self.windows: list[Window] = []  # every look, as judged (the bench replays them)

    # -- 1. preflight ------------------------------------------------------------------------

    def preflight(self) -> Titled:
        """Prometheus online, the baseline healthy, no canary in flight, the router's plan; then the lock."""
        import pandas as pd

        from ...platform import signals

        items: list[tuple[str, str, str]] = []

        def item(name: str, ok: bool, detail: str) -> None:
            items.append((name, "pass" if ok else "FAIL", detail))

        online = self.provider.is_online()
        item("Prometheus online", online, self.metrics.url)
        state = self.cluster.deployment_state(self.params.service)
        item("primary rolled out", state.rolled_out, f"{state.name} {self.primary_version}: {state.ready}/{state.desired} ready")
        sel = signals.selector(self.params.service, self.primary_version)
        slo = self.ctx.profile.slo
        sr = self.provider.query(signals.success_rate(sel, "1m"))
        p99 = self.provider.query(signals.latency_quantile(0.99, sel, "1m"))
        healthy = sr.ok and p99.ok and sr.value >= slo.success_rate_min and p99.value <= slo.p99_latency_max_ms  # type: ignore[operator]
        item("baseline healthy (1 min)", healthy,
             f"success {_pct(sr.value)} (≥ {100 * slo.success_rate_min:g} %), p99 {_ms(p99.value)} (≤ {slo.p99_latency_max_ms:g} ms)"
             + ("" if sr.ok and p99.ok else f"; no data: {sr.no_data or p99.no_data}"))
        try:
            live = self.cluster.deployment_state(self.canary)
            item("no canary in flight", live.desired == 0, f"{self.canary} has {live.desired} replica(s)"
                 + (" (left at 0 by an earlier run: reused)" if live.desired == 0 else ""))
        except NotFound:
            item("no canary in flight", True, f"{self.canary} does not exist yet")
        item(f"router {self.router.name} can split every step", True, "; ".join(f"{w} %: {r}" for w, r in zip(self.steps, self.plan)))
        table = pd.DataFrame(items, columns=["item", "status", "detail"]).set_index("item")
        failing = table[table["status"] == "FAIL"]
        if not failing.empty:
            raise CheckFailed("preflight failed: " + "; ".join(f"{i}: {d}" for i, d in failing["detail"].items()))
        self._lock()
        return titled("Preflight", table)

    def _lock(self) -> None:
        from ...run.lock import DeployLock

        lock = DeployLock(self.cluster, self.params.service, self.ctx.run_id)
        lock.acquire()
        self.ctx.on_finish(lock.release)

    def describe_change(self) -> str:
        """What the canary will change, for the approval gate."""
        return (f"deployment/{self.canary}: created with {self.image} beside {self.params.service} "
                f"({self.primary_version}); traffic then moves {', '.join(f'{w} %' for w in self.steps)} through the "
                f"{self.router.name} router, judged at every step; a promotion makes {self.params.service} run "
                f"{self.params.version}, an abort routes everything back")

    def primary_facts(self) -> dict[str, Any]:
        """The primary as the approval saw it (a resume refuses if it changed since)."""
        from ...platform.rollout import deployment_facts

        return deployment_facts(self.cluster, self.params.service)

    # -- 2. canary at weight 0 -----------------------------------------------------------------

    def start_canary(self) -> str:
        """Routing set up with 100 % on the primary, then the canary's pod started and scraped.
        A canary that cannot start is aborted (nothing reached it) before the error is re-raised."""
        try:
            return self._start_canary()
        except BaseException as e:
            if not self.params.dry_run and self.outcome is None:
                # Pods that crash or never get ready (CheckFailed) are the version's doing; a timeout
                # or an unreachable API server is not.
                self.abort(f"the canary did not start: {type(e).__name__}: {e}",
                           blames_the_version=isinstance(e, CheckFailed))
            raise

    def _start_canary(self) -> str:
        setup = self.router.setup()
        replicas = 0 if self.router.name == "replicas" else 1  # replicas router: pods are the weight
        self._apply_canary(replicas)
        if self.params.dry_run:
            return f"dry run: the API server accepted {setup}; and {self.canary} ({self.params.version}); nothing changed"
        if replicas:
            from ...platform.rollout import wait_for_rollout

            wait_for_rollout(self.cluster, self.canary, self.ctx.profile.timeouts.rollout_s, on_progress=self._fail_fast)
            from ...platform import signals

            try:
                self.metrics.wait_for_targets(signals.selector(self.params.service, self.params.version), replicas, timeout_s=30)
            except (NoData, RunbookError) as e:
                print(f"warning: the canary is not scraped yet ({e}); the judge holds until it is")
        return f"{setup}\n{self.canary} runs {self.params.version} with {replicas} pod(s) and no traffic"

    def _fail_fast(self, _: Any) -> None:
        stuck = {p.waiting_reason for p in self.cluster.pod_states(f"app={self.params.service},track=canary")
                 if p.waiting_reason in _HOPELESS}
        if stuck:
            raise CheckFailed(f"the canary's pod cannot start: {', '.join(sorted(stuck))}")

    def _apply_canary(self, replicas: int) -> None:
        labels = {"app": self.params.service, "version": self.params.version, "track": "canary"}
        containers = [{"name": self.params.service, "image": self.image}]
        cause = {"kubernetes.io/change-cause": f"canary {self.params.version} (run {self.ctx.run_id})"}
        try:
            self.cluster.deployment(self.canary)
        except NotFound:
            primary = self.cluster.deployment(self.params.service)
            template = copy.deepcopy(primary["spec"]["template"])
            template["metadata"]["labels"] = labels
            for container in template["spec"]["containers"]:
                if container["name"] == self.params.service:
                    container["image"] = self.image
            self.cluster.create_deployment({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": self.canary, "labels": {"app": self.params.service, "track": "canary"}, "annotations": cause},
                "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": self.params.service, "track": "canary"}},
                         "strategy": primary["spec"].get("strategy") or {}, "template": template},
            })
            return
        self.cluster.patch_deployment(self.canary, {
            "metadata": {"annotations": {**cause, CONTROL_ANNOTATION: None}},
            "spec": {"replicas": replicas, "template": {"metadata": {"labels": labels}, "spec": {"containers": containers}}},
        })

    # -- 3. the steps ---------------------------------------------------------------------------

    def run_steps(self) -> Titled:
        """Each step: set the weight, look every interval_s, advance / hold / abort / promote.
        Anything going wrong on the way (an interrupt included) aborts before it is re-raised."""
        if self.params.dry_run:
            return titled("The steps it would take (dry run)", self._dry_plan())
        try:
            self._steps()
        except BaseException as e:
            if self.outcome is None:
                why = "interrupted by the operator" if isinstance(e, KeyboardInterrupt) else f"{type(e).__name__}: {e}"
                self.abort(why)
            raise
        return titled("Decisions", self.decisions_table())

    def _steps(self) -> None:
        for index, weight in enumerate(self.steps, 1):
            self._capacity_for(weight)
            routes = self.router.set_routes(100 - weight, weight)
            at = utcnow()
            self.step_changes.append((at, weight, routes))
            self.first_routed_at = self.first_routed_at or at
            print(f"→ step {index}/{len(self.steps)}: {routes}", flush=True)
            step_started = last_look = at
            while True:
                self._wait(self.params.interval_s, f"step {index} ({weight:g} %): next look")
                window = self._look(index, weight, step_started, last_look)
                last_look = window.at
                self.windows.append(window)
                decision = self.judge.judge(window)
                print(_line(decision), flush=True)
                if decision.action == "abort":
                    self.abort(decision.why, blames_the_version=decision.blames_the_canary)
                    return
                if decision.action == "promote":
                    self.promote()
                    return
                if decision.action == "advance":
                    break

    def _capacity_for(self, weight: float) -> None:
        """Enough canary pods for the share it is about to take (the primary's replicas times the
        weight), ready before the weight moves: one pod taking 100 % of the traffic would be slow
        for the wrong reason. The replicas router sizes the canary itself."""
        if self.router.name == "replicas":
            return
        from ...platform.rollout import wait_for_rollout

        needed = max(1, math.ceil(self.spec.replicas * weight / 100))
        if self.cluster.deployment_state(self.canary).desired < needed:
            self.cluster.scale_deployment(self.canary, needed)
            wait_for_rollout(self.cluster, self.canary, self.ctx.profile.timeouts.rollout_s, on_progress=self._fail_fast)

    def _wait(self, seconds: float, what: str) -> None:
        from ...display import progress_bar

        with progress_bar(total=round(seconds, 1), desc=what, unit="s", bar_format="{desc}: {n:.0f}/{total:.0f} s") as bar:
            end = time.monotonic() + seconds
            while (left := end - time.monotonic()) > 0:
                time.sleep(min(0.5, left))
                bar.n = min(seconds, seconds - max(left - 0.5, 0))
                bar.refresh()

    def _look(self, index: int, weight: float, step_started: datetime, last_look: datetime) -> Window:
        now = utcnow()
        readings = self.looker.readings((now - last_look).total_seconds())
        online = any(r.ok for r in readings.values()) or self.looker.online()
        series = self.looker.series(max((now - step_started).total_seconds(), self.params.interval_s), online)
        return Window(utcnow(), index, weight, index == len(self.steps), readings, series, self._operator())

    def _operator(self) -> str | None:
        try:
            annotations = self.cluster.deployment(self.canary)["metadata"].get("annotations") or {}
        except RunbookError:
            return None
        asked = annotations.get(CONTROL_ANNOTATION)
        return asked if asked in ("hold", "abort") else None

    def request(self, action: str) -> str:
        """An operator's hold / abort / resume, from any cell or shell (it is an annotation on the canary:
        ``kubectl annotate deploy <service>-canary veza.app/canary-control=abort`` does the same)."""
        if action not in ("hold", "abort", "resume"):
            raise ParameterError(f"ask hold, abort or resume, not {action!r}")
        value = None if action == "resume" else action
        self.cluster.patch_deployment(self.canary, {"metadata": {"annotations": {CONTROL_ANNOTATION: value}}})
        return f"asked the running canary to {action}; the judge reads it at its next look"

    # -- 4. the two ends --------------------------------------------------------------------------

    def abort(self, reason: str, *, blames_the_version: bool = False) -> AbortResult:
        """Route everything back to the primary. The version is remembered as bad only when its own
        numbers failed a check: not for missing data, an operator's request or a broken step."""
        self.aborted = abort_canary(self.router, self.cluster, self.canary, reason)
        self.outcome = "aborted"
        self.ctx.error = f"aborted: {reason}"
        self.ctx.figure("time_to_abort_s", self._time_to_abort())
        if blames_the_version and not self.params.dry_run:  # what later deploys and rollbacks read (verdicts)
            self.ctx.verdict(self.params.service, self.params.version, "bad", f"canary aborted: {reason}")
        elif not self.params.dry_run:
            self.ctx.note("not judged", f"{self.params.version} aborted without a verdict on it: {reason}")
        print(f"✗ aborted: {reason}\n↩ {self.aborted.routes}; {self.canary} scaled to 0; {self.aborted.cleanup}", flush=True)
        return self.aborted

    def promote(self) -> list[str]:
        done = promote_canary(self.router, self.cluster, self.target, self.image, self.params.version,
                              timeout_s=self.ctx.profile.timeouts.rollout_s,
                              change_cause=f"canary promotion of {self.params.version} (run {self.ctx.run_id})")
        self.outcome = "promoted"
        self.ctx.verdict(self.params.service, self.params.version, "good", "canary promoted through every step")
        print("✓ promoted: " + "; ".join(done), flush=True)
        return done

    def _record_judged(self) -> None:
        """The canary's looks for the record (``judged``), as a deploy's analysis keeps its window."""
        from .judge import canary_looks

        if not self.windows or any(w.get("kind") == "canary" for w in self.ctx.judged):
            return  # nothing judged, or already recorded (summary() shown twice)
        looks = canary_looks(self.windows)
        blamed = any(d.blames_the_canary for d in self.judge.decisions)
        verdict = "pass" if self.outcome == "promoted" else ("fail" if blamed else "no data")
        last = looks[-1]
        self.ctx.judged_window({
            "kind": "canary", "service": self.params.service, "version": self.params.version, "verdict": verdict,
            "ended_by": "decision", "decided_after_s": round(last.at_s, 2), "max_s": round(last.at_s, 2),
            "requests": round(last.requests, 1), "errors": round(last.errors, 1), "p99_ms": last.p99_ms,
            "steps": list(self.steps), "looks": [look.as_list() for look in looks]})

    def _time_to_abort(self) -> float | None:
        if self.aborted is None or self.first_routed_at is None:
            return None
        first = self._canary_traffic().get("first")
        began = datetime.fromisoformat(first.replace("Z", "+00:00")) if first else self.first_routed_at
        return round((self.aborted.zeroed_at - began).total_seconds(), 3)

    def _canary_traffic(self) -> dict[str, Any]:
        from ...platform.load_report import load_report

        try:
            report = load_report(self.ctx.profile.load_report_url, self.started) or {}
        except RunbookError:
            return {}
        return ((report.get(self.params.service) or {}).get("by_version") or {}).get(self.params.version) or {}

    # -- 5. the record ---------------------------------------------------------------------------

    def decisions_table(self) -> "pd.DataFrame":
        """One row per decision: time, step, weight, each value and verdict, the decision and why."""
        import pandas as pd

        return pd.DataFrame([d.row() for d in self.judge.decisions]).set_index("#") if self.judge.decisions else pd.DataFrame()

    def evidence_table(self) -> Titled:
        """Every check of every decision: the query as sent, the value, the threshold, the verdict and why."""
        import pandas as pd

        rows = [{"decision": d.number, "layer": c.layer, "check": c.name, "query": c.query, "value": c.value,
                 "threshold": c.threshold, "verdict": c.verdict, "why": c.why}
                for d in self.judge.decisions for c in d.checks]
        return titled("Evidence: every check of every decision", pd.DataFrame(rows))

    def plot(self) -> "Figure":
        """Success rate and p99, canary vs baseline, over the run; step changes and decisions marked."""
        from ...platform import signals

        minutes = max((utcnow() - self.started).total_seconds() / 60 + 0.25, 1.0)
        sel = signals.selector(self.params.service, [self.primary_version, self.params.version])
        panels = signals.signal_panels(self.metrics, sel, by="version", minutes=minutes, window="5s",
                                       slo=self.ctx.profile.slo, step_s=1)
        marks = [(at, f"→ {w:g} %", "tab:blue") for at, w, _ in self.step_changes]
        colours = {"abort": "red", "hold": "orange", "advance": "green", "promote": "green"}
        marks += [(d.at, f"#{d.number} {d.action}", colours[d.action]) for d in self.judge.decisions
                  if d.action != "advance" or d.number == len(self.judge.decisions)]
        return signals.plot_signal_panels(panels, title=f"{self.params.service} canary",
                                          marks=marks, colours={self.primary_version: "tab:grey", self.params.version: "tab:purple"})

    def describe(self) -> Said:
        """The canary this run starts: image, beside which version, the steps, the router."""
        return Said(f"canary {self.image} beside {self.params.service} {self.primary_version}; steps {list(self.steps)} % "
                    f"via the {self.router.name} router{' (dry run)' if self.params.dry_run else ''}")

    def summary(self) -> str:
        """The figures for the record, and the outcome in one sentence with its numbers."""
        traffic = self._canary_traffic()
        self.ctx.figure("decisions", len(self.judge.decisions))
        self.ctx.figure("canary_failed_requests", traffic.get("failed") if traffic else None)
        self.ctx.figure("canary_requests", traffic.get("requests") if traffic else None)
        if self.params.dry_run:
            return "dry run: nothing was routed, nothing promoted"
        self._record_judged()
        if self.outcome == "promoted":
            return (f"promoted {self.params.version} after {len(self.judge.decisions)} decisions: "
                    f"{self.params.service} serves it with {self.spec.replicas} replicas")
        assert self.aborted is not None
        return (f"aborted {self.params.version}: {self.aborted.reason}; time to abort "
                f"{self.ctx.figures.get('time_to_abort_s')} s; the canary failed {traffic.get('failed', '?')} of "
                f"{traffic.get('requests', '?')} requests; {self.primary_version} serves 100 %")

    def _dry_plan(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame([{"step": i, "canary %": w, "split": str(r)} for i, (w, r) in enumerate(zip(self.steps, self.plan), 1)]
                            ).set_index("step")


def _pct(value: float | None) -> str:
    return "no data" if value is None else f"{100 * value:.2f} %"


def _ms(value: float | None) -> str:
    return "no data" if value is None else f"{value:.0f} ms"


def _line(d: Decision) -> str:
    return f"#{d.number} {d.at:%H:%M:%S} step {d.step} ({d.weight:g} %): {d.action.upper()} — {d.why}"
