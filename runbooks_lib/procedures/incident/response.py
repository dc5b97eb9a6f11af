"""One incident, from the page to the post-mortem draft: the notebook's steps, one method each.

``IncidentResponse`` keeps the incident's clock (triggered, acknowledged, mitigated,
recovered), its evidence (snapshot, signals, ranked changes) and its notices, and records the
figures DESIGN.md defines: time_to_acknowledge_s, time_to_mitigate_s, time_to_recover_s (each
from ``triggered_at``) and failed_requests. Every read is tolerant of a missing source (the
timeline says what was missing); every change goes through ``mitigation``.
"""
from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...display import MarkdownText, Parts, Said, Titled, titled
from ...platform.cluster import Cluster
from ...errors import BackendUnavailable, RunbookError
from .correlation import Breach, RankedChange, Suggestion, incident_breach, rank_changes, ranked_table, suggest
from .evidence import (
    SignalFrames, current_signals, judge_replica_sets, onset_frames, signal_frames, usable_window, window_seconds,
)
from .mitigation import MitigationResult, execute_mitigation, plan_mitigation, safe_rollback_target
from .params import ALL_SERVICES, SEVERITIES, IncidentParams
from .postmortem import PostMortem, render_html, render_markdown
from .snapshot import Snapshot, image_tag, take_snapshot
from .timeline import Timeline, iso

if TYPE_CHECKING:
    import pandas as pd
    from matplotlib.figure import Figure

    from ...run.context import RunContext

__all__ = ["IncidentResponse", "postmortem_paths"]

# Recovery is judged on the shortest rate window with data (evidence.usable_window): long
# enough for a few scrapes, short enough that the errors before the mitigation leave it quickly.
ACK_TARGET_S = 300  # the guide's §12.3: acknowledge within 5 minutes
# How long the correlation may wait for the live ReplicaSets' own requests to tell which fail (a page
# seconds after a push). At production rates they decide in about a second; on thin traffic the
# sequential test's floor is some 10 to 15 s.
EVIDENCE_WAIT_S = 60


def postmortem_paths(ctx: "RunContext") -> tuple[Path, Path]:
    """``<record>-postmortem.md`` and ``.html`` next to where this run's record will be sealed."""
    from ...records.ledger import record_path, records_root

    root = records_root(ctx.env)
    relative = ctx.record_name
    if relative:
        record = root / relative
    else:  # plain papermill: where `runbook records seal` will put the record
        record = record_path(root, ctx.env, ctx.runbook, ctx.run_id, ctx.started)
    stem = record.with_suffix("").name
    return record.with_name(f"{stem}-postmortem.md"), record.with_name(f"{stem}-postmortem.html")


class IncidentResponse:
    """The incident a run responds to."""

    def __init__(self, ctx: "RunContext", params: IncidentParams) -> None:
        from ...platform.metrics import Metrics
        from ...platform.notify import notifier_for

        self.ctx, self.params, self.profile = ctx, params, ctx.profile
        self.cluster = Cluster(ctx.profile)
        self.services = (list(self.profile.services.services) if params.service == ALL_SERVICES else [params.service])
        self.triggered = params.triggered
        self.metrics = Metrics.of(self.profile.prometheus, timeout_s=5)
        self.notifier = notifier_for(params.notify or None, self.profile)
        self.timeline = Timeline()
        self.timeline.add(self.triggered, "triggered", detail=f"{params.severity}: {params.summary}")
        self.acknowledged: datetime | None = None
        self.snapshot_: Snapshot | None = None
        self.signals: dict[str, SignalFrames] = {}
        self.breach_at: datetime | None = None
        self.failing_pods: dict[str, dict[str, str]] = {}  # service -> pod -> why, from the pod's own series
        self.ranked: list[RankedChange] = []
        self.suggestion: Suggestion | None = None
        self.mitigation: MitigationResult | None = None
        self.recovered_at: datetime | None = None
        self.prior: list[str] = []

    # -- 1. declare ----------------------------------------------------------------------------

    def declare(self) -> "pd.DataFrame":
        """Acknowledge now; the roles; the first notice. Returns the declaration as a table."""
        import pandas as pd

        self.acknowledged = datetime.now(timezone.utc)
        tta = round((self.acknowledged - self.triggered).total_seconds(), 1)
        self.ctx.figure("time_to_acknowledge_s", tta)
        self.timeline.add(self.acknowledged, "acknowledged", detail=f"{tta:.0f} s after the trigger (target < {ACK_TARGET_S} s)")
        self._notify("declared", f"commander {self.params.incident_commander or 'not named'}")
        rows = [
            ("severity", f"{self.params.severity} ({SEVERITIES[self.params.severity]})"),
            ("summary", self.params.summary), ("services", ", ".join(self.services)),
            ("triggered (UTC)", iso(self.triggered)), ("acknowledged (UTC)", iso(self.acknowledged)),
            ("time to acknowledge", f"{tta:.0f} s — {'within' if tta <= ACK_TARGET_S else 'OVER'} the 5-minute target"),
            ("incident commander", self.params.incident_commander or "NOT NAMED: name one"),
            ("scribe", f"{self.ctx.operator or 'the operator of this run'} (this notebook)"),
            ("communications", "to be named by the commander"),
            ("notices go to", self._target()),
        ]
        return pd.DataFrame(rows, columns=["", "value"]).set_index("")

    def declare_again(self) -> "pd.DataFrame":
        """A resumed run's declaration: the one the original run made, as it made it. Its time of
        acknowledgement stands and its notice is not sent again (people were paged once)."""
        from ...run.replay import decode_result

        done = self.ctx.replay.completed("declare") if self.ctx.replay is not None else None
        if done is None:  # nothing to replay: declare now
            return self.declare()
        table = decode_result(done.result)

        def moment(row: str) -> datetime:
            return datetime.fromisoformat(str(table.loc[row, "value"]).replace("Z", "+00:00"))

        # The page fired when the original run said (a trigger left empty means "now" to each run).
        self.triggered, self.acknowledged = moment("triggered (UTC)"), moment("acknowledged (UTC)")
        self.timeline.moments = [m for m in self.timeline.moments if m.what != "triggered"]
        self.timeline.add(self.triggered, "triggered", detail=f"{self.params.severity}: {self.params.summary}")
        tta = round((self.acknowledged - self.triggered).total_seconds(), 1)
        self.ctx.figure("time_to_acknowledge_s", tta)
        origin = done.replayed_from or self.ctx.replay.run_id
        self.timeline.add(self.acknowledged, "acknowledged", detail=f"{tta:.0f} s after the trigger, by run {origin}")
        print(f"declared by run {origin}; its notice was sent then and is not sent again")
        return table

    def _target(self) -> str:
        from ...platform.notify import describe_target

        url = getattr(self.notifier, "url", None)
        return describe_target(url) if url else "nobody (notify=none, or no webhook in the profile)"

    # -- 2. snapshot ---------------------------------------------------------------------------

    def snapshot(self) -> Snapshot:
        """The cluster's state and the changes of the lookback window."""
        since = self.triggered - timedelta(minutes=self.params.lookback_minutes)
        records = self._records(since)
        self.snapshot_ = take_snapshot(self.cluster, self.services, since, records=records)
        self.timeline.add(self.snapshot_.taken_at, "snapshot taken",
                          detail=f"{len(self.snapshot_.unhealthy_pods)} unhealthy pod(s), {len(self.snapshot_.changes)} change(s)")
        for change in self.snapshot_.changes:
            self.timeline.add(change.at, f"{change.kind}: {change.service}", "evidence", change.description)
            if change.completed_at:
                self.timeline.add(change.completed_at, f"{change.version} at 100 %", "evidence", change.source)
        if self.snapshot_.first_warning:
            e = self.snapshot_.first_warning
            self.timeline.add(e.get("firstTimestamp") or e.get("lastTimestamp"), f"first warning: {e.get('reason')}", "evidence",
                              f"{(e.get('involvedObject') or {}).get('name')}: {(e.get('message') or '')[:80]}")
        for item in self.snapshot_.missing:
            self.timeline.note_missing(item)
        return self.snapshot_

    def _records(self, since: datetime) -> Any:
        from ...records.catalog import summaries

        try:
            frame = summaries(env=self.ctx.env, since=since - timedelta(days=90))
        except Exception:  # the catalog is evidence, not a step: a broken one is named as missing
            return None
        if not frame.empty:
            mine = frame[(frame["runbook"] == "incident_response") & (frame["run_id"] != self.ctx.run_id)
                         & ~frame["outcome"].isin(["rejected", "refused"])  # a run stopped before it began was no incident
                         & frame["service"].isin(self.services + [ALL_SERVICES])]
            self.prior = [f"incident {r.run_id} ({r.parameters.get('severity')}, {str(r.started)[:16]}): "
                          f"{r.parameters.get('summary')} — {r.outcome}, record {r.record}" for r in mine.head(3).itertuples()]
        return frame

    # -- 3. golden signals ---------------------------------------------------------------------

    def golden_signals(self) -> Titled:
        """Series over the incident window and the hour before; the current values against the SLOs."""
        import pandas as pd

        slo = self.profile.slo
        if not self.metrics.is_online():
            self._missing(f"golden signals: Prometheus at {self.metrics.url} unreachable")
            return titled("Golden signals", pd.DataFrame([{"service": s, "note": "Prometheus unreachable: no signal data"}
                                                          for s in self.services]).set_index("service"))
        start = self.triggered - timedelta(minutes=min(self.params.lookback_minutes, 60))
        rows = []
        for service in self.services:
            frames = signal_frames(self.metrics, service, start)
            self.signals[service] = frames
            for item in frames.missing:
                self._missing(item)
            success = frames.overall("success_rate")
            breach, dated_by = self._breach_of(service)
            if breach.at is not None and (self.breach_at is None or breach.at < self.breach_at):
                self.breach_at = breach.at
            rows.append({"service": service,
                         "lowest success %": None if success is None or success.dropna().empty else round(100 * success.min(), 2),
                         "breach began (UTC)": iso(breach.at) if breach.at else "no breach seen",
                         "failing now": ", ".join(f"{pod} ({why})" for pod, why in self.failing_pods[service].items()) or "none",
                         "dated by": dated_by,
                         "versions": ", ".join(c for c in frames.frames.get("requests_per_s", pd.DataFrame()).columns if c != "all")})
        if self.breach_at is not None:
            self.timeline.add(self.breach_at, "signals degraded", "evidence", f"success rate below {100 * slo.success_rate_min:g} %")
            detect = (self.triggered - self.breach_at).total_seconds()
            # A page set before the breach (a drill's fault time) has no detection delay to report.
            self.ctx.figure("time_to_detect_s", round(detect, 1) if detect >= 0 else None)
        return titled("Golden signals: the breach this incident is about, and the pods failing now",
                      pd.DataFrame(rows).set_index("service"))

    def _breach_of(self, service: str) -> tuple[Breach, str]:
        """This incident's breach of ``service``, dated on the finest series (per pod, about a second
        a step, the shortest rate window), and the pods failing now. Returns the breach and, in
        words, what dated it.

        Failing now: the pods of each live ReplicaSet whose own requests miss the SLOs by the canary
        judge's sequential test. A page can come seconds after a push, before the new pods served
        enough to tell: the judgement waits until every live ReplicaSet is decided (at production
        rates, about a second), at most EVIDENCE_WAIT_S, showing its progress."""
        slo = self.profile.slo
        live = self.snapshot_.live_pods(service) if self.snapshot_ else {}
        try:
            window = usable_window(self.metrics, service)
        except RunbookError:
            window = "1m"  # Prometheus unreachable: the judgements below find nothing, and say so
        judged = self._judge_until_decided(service, live, window if window_seconds(window) >= 60 else "1m")
        self.failing_pods[service] = {pod: f"ReplicaSet {j.replica_set}: {j.why}" for j in judged.values()
                                      if j.state == "bad" for pod in j.pods}
        fine = onset_frames(self.metrics, service, self.triggered)  # read after the wait: the new pods' data is in
        for item in fine.missing:
            self._missing(item)
        breach = incident_breach(fine.frames.get("success_rate"), fine.frames.get("p99_ms"),
                                 success_rate_min=slo.success_rate_min, p99_max_ms=slo.p99_latency_max_ms,
                                 reference=self.triggered, gap_s=window_seconds(fine.window or window),
                                 failing=self.failing_pods[service], alive=live if live else None)
        if breach.at is None:
            return breach, "no breach in progress at the trigger" if fine.frames else "no signal data"
        what = "the service's series" if breach.dated_by == "all" else f"pod {breach.dated_by}'s own series"
        return breach, f"{what} ({fine.window} rate window, {fine.step_s:g} s steps)"

    def _judge_until_decided(self, service: str, live: dict[str, str], window: str) -> dict[str, Any]:
        """Each live ReplicaSet judged on its own requests, again every second until all are
        decided or EVIDENCE_WAIT_S has passed (a bar shows how many are decided)."""
        from ...display import progress_bar

        slo = self.profile.slo
        deadline = time.monotonic() + EVIDENCE_WAIT_S
        groups = len(set(live.values()))
        with progress_bar(total=groups, desc=f"{service}: ReplicaSets judged on their own requests",
                          unit="rs", disable=not groups) as bar:
            while True:
                judged = judge_replica_sets(self.metrics, service, window, slo.success_rate_min,
                                            slo.p99_latency_max_ms, live)
                bar.n = sum(j.decided for j in judged.values())
                bar.refresh()
                if not judged or all(j.decided for j in judged.values()) or time.monotonic() > deadline:
                    return judged
                time.sleep(1)

    def _failing_images(self, service: str) -> set[str]:
        """The image versions the failing pods of ``service`` run."""
        images = self.snapshot_.pod_images if self.snapshot_ else {}
        return {tag for pod in self.failing_pods.get(service, {}) if (tag := image_tag(images.get(pod)))}

    def _failing_replica_sets(self) -> set[str] | None:
        """The ReplicaSets of the failing pods (None without a snapshot to tell)."""
        if self.snapshot_ is None:
            return None
        owners = self.snapshot_.pod_owners
        return {owners[pod] for pods in self.failing_pods.values() for pod in pods if pod in owners}

    def _missing(self, what: str) -> None:
        self.timeline.note_missing(what)

    def plot_signals(self) -> "Figure":
        """Success rate, p99 and request rate per version, with the changes and the trigger marked."""
        import matplotlib.pyplot as plt

        slo = self.profile.slo
        panels = (("success_rate", "success rate %", 100.0, 100 * slo.success_rate_min),
                  ("p99_ms", "p99 ms", 1.0, slo.p99_latency_max_ms), ("requests_per_s", "requests/s", 1.0, None))
        fig, axes = plt.subplots(len(self.services), 3, figsize=(15, 3.2 * len(self.services)), squeeze=False)
        for row, service in zip(axes, self.services):
            frames = self.signals.get(service)
            for ax, (signal, title, scale, bound) in zip(row, panels):
                frame = frames.frames.get(signal) if frames else None
                if frame is None or frame.empty:
                    ax.text(0.5, 0.5, "no data" + (" (Prometheus unreachable)" if not self.signals else ""),
                            ha="center", va="center", transform=ax.transAxes)
                else:
                    for column in frame:
                        ax.plot(frame.index, frame[column] * scale, label=column, linewidth=2 if column == "all" else 1)
                    ax.legend(fontsize=7)
                if bound is not None:
                    ax.axhline(bound, color="red", linestyle="--", linewidth=1)
                for change in (self.snapshot_.changes if self.snapshot_ else []):
                    if change.service == service:
                        ax.axvline(change.at, color="purple", linestyle=":", linewidth=1)
                ax.axvline(self.triggered, color="black", linestyle="-.", linewidth=1)
                ax.set_title(f"{service}: {title}", fontsize=9)
                ax.tick_params(axis="x", labelrotation=30, labelsize=7)
        fig.suptitle("dotted purple: deploys · dash-dot black: triggered · dashed red: SLO", fontsize=8)
        fig.tight_layout()
        plt.close(fig)
        return fig

    # -- 4. correlation ------------------------------------------------------------------------

    def correlate(self) -> Parts:
        """Changes ranked against the moment the signals degraded, and the suggested mitigation."""
        snap = self.snapshot_ or self.snapshot()
        # The failing pods: the unhealthy ones and those whose own requests miss the SLOs, whatever
        # their version label says. A revision is blamed by its ReplicaSet's pods, a record by the
        # image it deployed.
        failing = set(snap.failing_versions) | {tag for service in self.services for tag in self._failing_images(service)}
        replica_sets = self._failing_replica_sets()
        if replica_sets is not None:
            replica_sets |= {snap.pod_owners[p] for p in snap.unhealthy_pods.index if p in snap.pod_owners}
        self.ranked = rank_changes(snap.changes, self.breach_at, services=self.services, failing_versions=failing,
                                   failing_replica_sets=replica_sets, reference=self.triggered)
        self.suggestion = suggest(self.ranked, self.breach_at, unhealthy_services=snap.unhealthy_services,
                                  prior_incidents=self.prior)
        return Parts(Said(self.suggested()), titled("Changes of the window, most likely cause first", ranked_table(self.ranked)))

    def suggested(self) -> str:
        s = self.suggestion or suggest([], self.breach_at)
        lines = [f"suggested mitigation: {s.action}" + (f" — {s.reason}" if s.reason else "")]
        if self.breach_at is None:
            why = ("the signals never left their SLO in the window" if any(f.frames for f in self.signals.values())
                   else "no signal data dated the degradation")
            lines.append(f"{why}: changes are ranked against the trigger time")
        lines += [f"earlier incident on record: {c}" for c in s.cites]
        return "\n".join(lines)

    # -- 5. mitigate ---------------------------------------------------------------------------

    def _deployment_of(self, service: str) -> str:
        return self.cluster.live_deployment(service)

    def mitigate(self) -> str:
        """Execute the chosen mitigation when allowed, else say what it would be."""
        action = self.params.mitigation
        s = self.suggestion
        service = self.params.service if self.params.service != ALL_SERVICES else (s.service if s else None)
        if action == "rollback" and s is not None and s.action == "rollback" and s.service != service and self.params.service == ALL_SERVICES:
            service = s.service
        to_revision = self.params.to_revision or (s.to_revision if s and s.action == "rollback" and s.service == service else None)
        deployment = self._deployment_of(service) if service else None
        current = self.cluster.deployment_state(deployment).desired if deployment else 1
        plan = plan_mitigation(action, service, deployment, to_revision=to_revision, replicas=self.params.scale_replicas or None,
                               current_replicas=current, reason=s.reason if s else "")
        # Before anyone approves it: a known-bad target is replaced by the newest known-good revision.
        plan, moved = safe_rollback_target(self.cluster, self.profile, plan, self._identity())
        if moved:
            print(f"⚠ {moved}")
            self.ctx.note("mitigation target", moved)
            self.timeline.add(datetime.now(timezone.utc), "mitigation retargeted", detail=moved)
        approved = False
        if plan.action != "none" and self.params.execute_mitigation:
            # Where the profile requires it, someone else consents first (headless: exit 3, resumable);
            # the approval holds for this plan on this Deployment only (a resume re-plans and compares).
            approved = self.ctx.gate("mitigation", plan.describe(), state=lambda: self._mitigation_facts(plan)) is not None
            self.timeline.add(datetime.now(timezone.utc), "mitigation started", detail=plan.describe())
            self._notify("mitigating", plan.describe())
        self.mitigation = execute_mitigation(self.cluster, self.profile, plan, run_id=self.ctx.run_id,
                                             execute=self.params.execute_mitigation, approved=approved,
                                             identity=self._identity())
        if self.mitigation.executed and self.mitigation.finished:
            ttm = round((self.mitigation.finished - self.triggered).total_seconds(), 1)
            self.ctx.figure("time_to_mitigate_s", ttm)
            self._judge_undone(service)
            self.timeline.add(self.mitigation.finished, "mitigation finished", detail=self.mitigation.detail)
            return f"{self.mitigation.detail}\ntime to mitigate: {ttm:.1f} s after the trigger"
        self.ctx.figure("time_to_mitigate_s", None)
        return self.mitigation.detail + (f"\n(the correlation suggests: {s.action} — {s.reason})" if s and s.action != "none" else "")

    def _judge_undone(self, service: str | None) -> None:
        """After a rollback: the figures say where it went, and the version it undid is known bad
        only on this incident's evidence (its own series or pods failed the SLOs), never for
        having been rolled back."""
        m = self.mitigation
        if m is None or m.to_revision is None or not service:
            return
        self.ctx.figure("mitigated_to_revision", m.to_revision)
        if m.from_version and m.from_version != m.to_version:
            if m.from_version in self._failing_images(service):
                self.ctx.verdict(service, m.from_version, "bad",
                                 f"incident {self.ctx.run_id}: its pods failed the SLOs ({self.params.summary})")
            else:
                self.ctx.note("not blamed", f"{m.from_version} rolled back by the mitigation, not blamed: "
                                            "its own signals did not show it failing")

    def _identity(self) -> str | None:
        """The cluster identity the guard checked: verdicts count only from this cluster's history."""
        return (self.ctx.cluster or {}).get("identity")

    def _mitigation_facts(self, plan: Any) -> dict[str, Any]:
        """What an approved mitigation rests on: the plan in words and its Deployment as it runs."""
        from ...platform.rollout import deployment_facts

        facts = deployment_facts(self.cluster, plan.deployment) if plan.deployment else {"object": "mitigation"}
        return {**facts, "plan": plan.describe()}

    # -- 6. recovery ---------------------------------------------------------------------------

    def verify_recovery(self, timeout_s: float | None = None) -> Parts:
        """Re-measure until every service is within its SLOs (after an executed mitigation), or once."""
        import pandas as pd
        from ...display import progress_bar

        slo = self.profile.slo
        waiting = bool(self.mitigation and self.mitigation.executed)
        deadline = time.monotonic() + (timeout_s if timeout_s is not None else self.profile.timeouts.health_s)
        signals: dict[str, Any] = {}
        try:
            window = usable_window(self.metrics, self.services[0])
        except RunbookError:
            window = "1m"  # Prometheus unreachable: the loop below says so
        self.recovery_window = window
        with progress_bar(total=len(self.services), desc="services within SLO", unit="service", disable=not waiting) as bar:
            while True:
                measured_at = datetime.now(timezone.utc)
                signals = current_signals(self.metrics, self.services, window)
                healthy = [s for s, g in signals.items() if g is not None and g.within(slo.success_rate_min, slo.p99_latency_max_ms)]
                bar.n = len(healthy)
                bar.refresh()
                if len(healthy) == len(self.services):
                    self.recovered_at = measured_at
                    break
                if not waiting or time.monotonic() > deadline or all(g is None for g in signals.values()):
                    break
                time.sleep(1)
        if self.recovered_at is not None:
            ttr = round((self.recovered_at - self.triggered).total_seconds(), 1)
            self.ctx.figure("time_to_recover_s", ttr)
            self.timeline.add(self.recovered_at, "recovered", detail=f"every signal within SLO over {window}")
        else:
            self.ctx.figure("time_to_recover_s", None)
            if all(g is None for g in signals.values()):
                self._missing("recovery: Prometheus unreachable, the signals could not be re-measured")
        self.measured = any(g is not None for g in signals.values())
        self.still_unhealthy = [f"{p.name} ({p.waiting_reason or 'not ready'})" for s in self.services
                                for p in self.cluster.pod_states(f"app={s}") if not p.deleting and not p.ready]
        self._count_failed_requests()
        resolved = self.recovered_at is not None and not self.still_unhealthy
        self._notify("resolved" if resolved else ("mitigated, still degraded" if waiting else "open"), self.recovery_verdict())
        rows = [{"service": s, "requests/s": None if g is None else g.requests_per_s,
                 "success rate %": None if g is None or g.success_rate is None else round(100 * g.success_rate, 2),
                 f"SLO ≥ {100 * slo.success_rate_min:g} %": None if g is None or g.success_rate is None else g.success_rate >= slo.success_rate_min,
                 "p99 ms": None if g is None or g.p99_ms is None else round(g.p99_ms, 1),
                 f"SLO ≤ {slo.p99_latency_max_ms:g} ms": None if g is None or g.p99_ms is None else g.p99_ms <= slo.p99_latency_max_ms}
                for s, g in signals.items()]
        return Parts(Said(self.recovery_verdict()), titled(f"Signals now, over {window}", pd.DataFrame(rows).set_index("service")))

    def recovery_verdict(self) -> str:
        f = self.ctx.figures
        pods = (f"; but {len(self.still_unhealthy)} pod(s) still not ready: {', '.join(self.still_unhealthy[:4])}"
                if getattr(self, "still_unhealthy", None) else "")
        if self.recovered_at is not None:
            return (f"recovered: every signal within SLO at {iso(self.recovered_at)}, {f['time_to_recover_s']:.1f} s after the trigger; "
                    f"{f.get('failed_requests')} failed requests since the trigger{pods}")
        if not getattr(self, "measured", True):
            return f"recovery UNKNOWN: Prometheus could not be asked, the signals were not re-measured{pods}"
        return "NOT recovered: the signals are not (yet) within SLO" + (
            "" if self.mitigation and self.mitigation.executed else " and no mitigation was executed") + pods

    def _count_failed_requests(self) -> None:
        """Failed requests since the trigger: the load generator's count where there is one, else Prometheus."""
        from ...platform.load_report import failed_requests

        total = failed = None
        try:
            for service in self.services:
                seen = failed_requests(self.profile.load_report_url, service, self.triggered)
                if seen is None:
                    break
                total, failed = (total or 0) + seen[0], (failed or 0) + seen[1]
        except BackendUnavailable as e:
            self._missing(f"failed requests from the load generator ({e})")
        if failed is None and self.metrics.is_online():
            seconds = max(1, int((datetime.now(timezone.utc) - self.triggered).total_seconds()))
            jobs = "|".join(self.services)
            try:
                failed = round(self.metrics.query(f'sum(increase(http_requests_total{{job=~"{jobs}",code=~"5.."}}[{seconds}s])) or vector(0)'))
                total = round(self.metrics.query(f'sum(increase(http_requests_total{{job=~"{jobs}"}}[{seconds}s]))'))
            except RunbookError as e:
                self._missing(f"failed requests from Prometheus ({e})")
        self.ctx.figure("failed_requests", failed)
        self.ctx.figure("requests_during_incident", total)
        worst = [w for w in (self._worst_success(svc) for svc in self.signals) if w is not None]
        self.ctx.figure("worst_success_rate", round(float(min(worst)), 4) if worst else None)

    def _worst_success(self, service: str) -> float | None:
        """The lowest success rate of this incident's window (not of older breaches in the hour before).

        Read again over the incident alone, at its own resolution: the golden signals' series span
        the hour before at a step of up to 15 s, which a short, sharp incident can fall between
        (12 failed requests were once reported with a lowest success rate of 100 %). The series
        already read stand in when Prometheus cannot be asked again."""
        since = min(self.triggered, self.breach_at or self.triggered)
        window = self.signals[service].window if service in self.signals else None
        # signal_frames never raises: what it could not read is left out (and said in .missing).
        series = signal_frames(self.metrics, service, since, window=window).overall("success_rate")
        if series is None and service in self.signals:
            series = self.signals[service].overall("success_rate")
        if series is None:
            return None
        worst = series[series.index >= since].min()
        return None if worst != worst else float(worst)  # NaN: no point in the window

    # -- 7. timeline and post-mortem ---------------------------------------------------------

    def notifications(self) -> Titled:
        import pandas as pd

        from ...platform.notify import delivery_row

        return titled("Notices: what was sent, to where (the webhook's host only), delivered or not",
                      pd.DataFrame([delivery_row(d) for d in self.notifier.sent],
                                   columns=["status", "to", "delivered", "at", "error", "message"]))

    def _notify(self, status: str, detail: str = "") -> None:
        from ...platform.notify import Notice

        delivery = self.notifier.send(Notice(self.params.severity, self.params.summary, status, self.params.service,
                                             self.ctx.env, self._record_link(), detail))
        self.timeline.add(delivery.at, f"notice: {status}", detail=f"to {delivery.target}" + ("" if delivery.delivered else f" — NOT delivered ({delivery.error})"))

    def _record_link(self) -> str:
        from ...records.archive import archive_url

        relative = self.ctx.record_name or f"run {self.ctx.run_id}"
        try:
            archive = archive_url(self.ctx.env)
        except RunbookError:
            archive = None
        return f"{archive.rstrip('/')}/{relative}" if archive and self.ctx.record_name else relative

    def timeline_table(self) -> "pd.DataFrame":
        return self.timeline.table(self.triggered)

    def postmortem(self) -> PostMortem:
        s, m, snap = self.suggestion, self.mitigation, self.snapshot_
        top = self.ranked[0] if self.ranked else None
        # Plain text: the post-mortem escapes it whole (a change's description comes from the cluster).
        trigger = (f"Most likely: {top.change.description} ({top.change.source}), score {top.score:.2f}: "
                   f"{top.evidence.split('; ', 1)[-1]}.") if top else ""
        detection = (f"Signals left their SLO at {iso(self.breach_at)}; the incident was triggered at {iso(self.triggered)} "
                     f"and acknowledged at {iso(self.acknowledged)}." if self.breach_at else
                     f"Triggered at {iso(self.triggered)} ({self.params.summary}); no signal data dated the degradation.")
        sentences = [m.detail if m and m.executed else f"No mitigation executed by the runbook ({m.detail if m else 'not reached'})"]
        if s and s.action != "none":
            sentences.append(f"The correlation suggested: {s.action} — {s.reason}")
        sentences.append(self.recovery_verdict()[0].upper() + self.recovery_verdict()[1:])
        resolution = ". ".join(x.rstrip(".") for x in sentences) + "."
        notes = list(snap.findings) if snap else []
        supporting = [f"run record: {self._record_link()}", f"run id: {self.ctx.run_id}",
                      f"changes considered: {len(snap.changes) if snap else 0}; unhealthy pods at the snapshot: "
                      f"{len(snap.unhealthy_pods) if snap else 'unknown'}"]
        supporting += [f"earlier incident: {c}" for c in (s.cites if s else [])]
        affected = sorted({*(snap.unhealthy_services if snap else []),
                           *(svc for svc in self.signals
                             if (self._worst_success(svc) or 1.0) < self.profile.slo.success_rate_min)})
        return PostMortem(
            incident_id=self.ctx.run_id, title=self.params.summary, severity=self.params.severity, env=self.ctx.env,
            services=affected, commander=self.params.incident_commander, scribe=self.ctx.operator or "",
            communications="", triggered_at=self.triggered, timeline=self.timeline, figures=dict(self.ctx.figures),
            trigger=trigger, detection=detection, resolution=resolution, impact_notes=notes, supporting=supporting,
        )

    def write_postmortem(self) -> Parts:
        """The draft as Markdown and HTML next to the record, linked from the summary."""
        md_path, html_path = postmortem_paths(self.ctx)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        draft = self.postmortem()
        text = render_markdown(draft)
        md_path.write_text(text)
        html_path.write_text(render_html(text, f"Post-mortem draft: {draft.title}"))
        from ...records.ledger import records_root

        root = records_root(self.ctx.env)
        relative = md_path.relative_to(root).as_posix() if md_path.is_relative_to(root) else str(md_path)
        self.ctx.link("postmortem", relative)
        self.ctx.link("postmortem-html", relative.removesuffix(".md") + ".html")
        missing = self.timeline.missing
        return Parts(Said(f"post-mortem draft: {md_path} (and {html_path.name}); sealed and published with the record"),
                     Said("\n".join(["evidence that could not be read:"] + [f"  - {m}" for m in missing])
                          if missing else "every source of evidence answered"),
                     titled("Timeline (UTC)", self.timeline_table()))

    def postmortem_markdown(self) -> MarkdownText:
        """The draft as written, rendered."""
        return MarkdownText(render_markdown(self.postmortem()))
