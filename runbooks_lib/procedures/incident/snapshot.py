"""The state of the cluster when the incident is declared, as titled tables.

Read-only. Deployments and their rollout state; pods not ready, restarting or crash-looping
with the reason; recent events, warnings first; the last lines of each unhealthy pod's log and,
for a restarted container, of its previous instance (through the redaction filter); and the
changes of the lookback window — deploys from the ReplicaSet history, deploys and rollbacks
from the records catalog, ConfigMaps and Secrets created — as ``Change`` objects the
correlation ranks. Whatever cannot be read is named in ``missing``, never silently skipped.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Sequence

from ...display import Parts, Said, titled
from ...config.clock import parse_time
from ...platform.cluster import condition, deployment_state, pod_state
from ...errors import RunbookError
from ...records.redaction import redact
from ...platform.rollout import CHANGE_CAUSE, REVISION
from .correlation import Change
from .timeline import iso

if TYPE_CHECKING:
    import pandas as pd

    from ...platform.cluster import Cluster

__all__ = ["Snapshot", "PodLog", "take_snapshot", "image_tag"]

LOG_LINES = 12
MAX_LOGGED_PODS = 6  # a crash-looping deployment of 30 pods says the same thing 30 times


def image_tag(image: str | None) -> str | None:
    return image.rsplit(":", 1)[-1] if image and ":" in image.rsplit("/", 1)[-1] else None


@dataclass(frozen=True)
class PodLog:
    pod: str
    container: str
    instance: str  # "current" | "previous"
    lines: str
    note: str = ""


@dataclass
class Snapshot:
    taken_at: datetime
    deployments: "pd.DataFrame"
    unhealthy_pods: "pd.DataFrame"
    events: "pd.DataFrame"
    logs: list[PodLog]
    changes: list[Change]
    missing: list[str] = field(default_factory=list)
    findings: list[str] = field(default_factory=list)
    failing_versions: set[str] = field(default_factory=set)
    unhealthy_services: list[str] = field(default_factory=list)
    first_warning: dict[str, Any] | None = None
    pod_images: dict[str, str] = field(default_factory=dict)  # pod name -> its (first) container's image
    pod_owners: dict[str, str] = field(default_factory=dict)  # pod name -> the ReplicaSet (controller) that owns it
    pod_apps: dict[str, str] = field(default_factory=dict)  # pod name -> its app label (the service)

    def live_pods(self, service: str) -> dict[str, str]:
        """The pods of ``service`` at the snapshot, each with its ReplicaSet."""
        return {pod: owner for pod, owner in self.pod_owners.items() if self.pod_apps.get(pod) == service}

    def shown(self) -> Parts:
        """The snapshot as the record shows it: findings and missing evidence in words, then the
        deployments, the unhealthy pods, the recent events, their logs and the window's changes."""
        findings = ("\n".join(["findings:"] + [f"  - {f}" for f in self.findings]) if self.findings
                    else "no inconsistency in the deployments")
        missing = ("\n".join(["evidence missing:"] + [f"  - {m}" for m in self.missing]) if self.missing
                   else "every source of evidence answered")
        return Parts(Said(findings), Said(missing), titled("Deployments", self.deployments),
                     titled("Pods not ready, restarting or crash-looping", self.unhealthy_pods),
                     titled("Recent events, warnings first", self.events.head(20)), Said(self.logs_text()),
                     titled("Changes in the lookback window (newest first)", self.changes_table()))

    def _repr_html_(self) -> str:
        return self.shown()._repr_html_()

    def __repr__(self) -> str:
        return repr(self.shown())

    def changes_table(self) -> "pd.DataFrame":
        import pandas as pd

        return pd.DataFrame([{
            "when (UTC)": iso(c.at), "kind": c.kind, "service": c.service, "change": c.description,
            "revision": c.revision, "version": c.version, "reached 100 % (UTC)": iso(c.completed_at) if c.completed_at else "",
            "source": c.source,
        } for c in sorted(self.changes, key=lambda c: c.at, reverse=True)],
            columns=["when (UTC)", "kind", "service", "change", "revision", "version", "reached 100 % (UTC)", "source"])

    def logs_text(self) -> str:
        if not self.logs:
            return "no unhealthy pod: no logs to show"
        parts = []
        for log in self.logs:
            head = f"── {log.pod} / {log.container} ({log.instance} instance){' — ' + log.note if log.note else ''}"
            parts.append(head + "\n" + (log.lines.rstrip() or "(empty)"))
        return "\n\n".join(parts)


def _app(obj: dict[str, Any]) -> str | None:
    labels = ((obj.get("spec") or {}).get("template") or {}).get("metadata", {}).get("labels") or {}
    return labels.get("app") or (obj.get("metadata") or {}).get("labels", {}).get("app")


def _rollout_state(dep: dict[str, Any]) -> str:
    state = deployment_state(dep)
    if state.paused:
        return "paused"
    if state.deadline_exceeded:
        return "progress deadline exceeded"
    if state.rolled_out:
        return "rolled out"
    old = max(state.replicas - state.updated, 0)
    left = f", {old} old replica(s) still serving" if old else ""
    if state.updated < state.desired:
        return f"rolling: {state.updated}/{state.desired} updated{left}"
    return f"rolling: {state.available}/{state.desired} available{left}"


def _deployments(deps: list[dict[str, Any]]) -> tuple["pd.DataFrame", list[str]]:
    import pandas as pd

    rows, findings = [], []
    for dep in deps:
        state = deployment_state(dep)
        labels = dep["spec"]["template"]["metadata"].get("labels") or {}
        tag = image_tag(state.image)
        rows.append({"deployment": state.name, "service": _app(dep), "image version": tag,
                     "version label": labels.get("version"), "revision": state.revision,
                     "desired": state.desired, "ready": state.ready, "updated": state.updated,
                     "available": state.available, "rollout": _rollout_state(dep)})
        if labels.get("version") and tag and labels["version"] != tag:
            findings.append(f"{state.name} runs image {tag} but its pods are labelled version={labels['version']} "
                            "(changed with a bare `kubectl set image`?): per-version metrics show the label")
    columns = ["deployment", "service", "image version", "version label", "revision", "desired", "ready", "updated",
               "available", "rollout"]
    return pd.DataFrame(rows, columns=columns).set_index("deployment"), findings


def _last_exit(pod: dict[str, Any]) -> str:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        term = (c.get("lastState") or {}).get("terminated") or (c.get("state") or {}).get("terminated")
        if term:
            return f"{term.get('reason') or 'exited'} (code {term.get('exitCode')}) at {term.get('finishedAt') or '?'}"
    return ""


def _probe_failures(events: list[dict[str, Any]]) -> dict[str, str]:
    failures: dict[str, str] = {}
    for e in events:
        if e.get("reason") == "Unhealthy":
            failures[(e.get("involvedObject") or {}).get("name", "")] = (e.get("message") or "")[:100]
    return failures


def _unhealthy(pods: list[dict[str, Any]], services: Sequence[str], events: list[dict[str, Any]]) -> tuple["pd.DataFrame", list[dict[str, Any]]]:
    import pandas as pd

    probes = _probe_failures(events)
    rows, chosen = [], []
    for pod in pods:
        service = (pod["metadata"].get("labels") or {}).get("app")
        if service not in services:
            continue
        state = pod_state(pod)
        if state.deleting or (state.ready and not state.restarts and not state.waiting_reason):
            continue
        reason = state.waiting_reason or ("probe failing: " + probes[state.name] if state.name in probes else
                                          "not ready" if not state.ready else "restarted")
        rows.append({"pod": state.name, "service": service, "image version": image_tag(state.image),
                     "phase": state.phase, "ready": state.ready, "restarts": state.restarts, "reason": reason,
                     "last exit": _last_exit(pod)})
        chosen.append(pod)
    columns = ["pod", "service", "image version", "phase", "ready", "restarts", "reason", "last exit"]
    return pd.DataFrame(rows, columns=columns).set_index("pod"), chosen


def _events_table(events: list[dict[str, Any]]) -> "pd.DataFrame":
    import pandas as pd

    rows = [{"last seen": e.get("lastTimestamp") or e.get("eventTime"), "type": e.get("type"), "reason": e.get("reason"),
             "object": f"{(e.get('involvedObject') or {}).get('kind')}/{(e.get('involvedObject') or {}).get('name')}",
             "count": e.get("count") or 1, "message": redact((e.get("message") or "")[:160])} for e in events]
    frame = pd.DataFrame(rows, columns=["last seen", "type", "reason", "object", "count", "message"])
    if frame.empty:
        return frame
    frame["_warning"] = frame["type"] != "Warning"
    return frame.sort_values(["_warning", "last seen"], ascending=[True, False]).drop(columns="_warning").reset_index(drop=True)


def _logs(cluster: "Cluster", pods: list[dict[str, Any]], missing: list[str]) -> list[PodLog]:
    logs: list[PodLog] = []
    for pod in pods[:MAX_LOGGED_PODS]:
        name = pod["metadata"]["name"]
        for status in (pod.get("status") or {}).get("containerStatuses") or [{"name": None, "restartCount": 0}]:
            container = status.get("name")
            for previous in ((False, True) if int(status.get("restartCount") or 0) > 0 else (False,)):
                instance = "previous" if previous else "current"
                try:
                    text = cluster.pod_log(name, container, tail=LOG_LINES, previous=previous)
                    logs.append(PodLog(name, container or "", instance, redact(text)))
                except RunbookError as e:
                    note = f"not available: {e}"
                    logs.append(PodLog(name, container or "", instance, "", note))
                    if previous:
                        what = f"previous-instance logs of {name} ({e})"
                        missing.append(what)
    if len(pods) > MAX_LOGGED_PODS:
        missing.append(f"logs of {len(pods) - MAX_LOGGED_PODS} more unhealthy pod(s) (only {MAX_LOGGED_PODS} read)")
    return logs


def _activated(rs: dict[str, Any], pods: list[dict[str, Any]]) -> datetime | None:
    """When a ReplicaSet's revision went live: its creation, or for a reused one (a rollback, a
    redeploy of an old template) the creation of its oldest current pod."""
    created = parse_time(rs["metadata"].get("creationTimestamp"))
    if not (rs["metadata"].get("annotations") or {}).get("deployment.kubernetes.io/revision-history"):
        return created
    uid = rs["metadata"].get("uid")
    mine = [parse_time(p["metadata"].get("creationTimestamp")) for p in pods
            if any(o.get("uid") == uid for o in p["metadata"].get("ownerReferences") or [])]
    mine = [m for m in mine if m is not None]
    return min(mine) if mine else created


def replica_set_changes(deps: list[dict[str, Any]], replica_sets: list[dict[str, Any]], since: datetime,
                        pods: list[dict[str, Any]] = ()) -> list[Change]:  # type: ignore[assignment]
    """A deploy per ReplicaSet that went live since ``since``, with the revision it replaced."""
    changes = []
    for dep in deps:
        uid, service = dep["metadata"]["uid"], _app(dep) or dep["metadata"]["name"]
        mine = [rs for rs in replica_sets
                if any(o.get("uid") == uid for o in rs["metadata"].get("ownerReferences") or [])]
        revisions = sorted(((int((rs["metadata"].get("annotations") or {}).get(REVISION, 0)), rs) for rs in mine),
                           key=lambda pair: pair[0])
        progressing = condition(dep, "Progressing") or {}
        current = int((dep["metadata"].get("annotations") or {}).get(REVISION, 0))
        for index, (number, rs) in enumerate(revisions):
            created = _activated(rs, list(pods))
            if created is None or created < since:
                continue
            image = ((rs["spec"]["template"].get("spec") or {}).get("containers") or [{}])[0].get("image")
            before = revisions[index - 1] if index else None
            before_image = ((before[1]["spec"]["template"].get("spec") or {}).get("containers") or [{}])[0].get("image") if before else None
            completed = (parse_time(progressing.get("lastUpdateTime") or progressing.get("lastTransitionTime"))
                         if number == current and progressing.get("reason") == "NewReplicaSetAvailable" else None)
            cause = (rs["metadata"].get("annotations") or {}).get(CHANGE_CAUSE)
            changes.append(Change(
                at=created, kind="deploy", service=service,
                description=f"{dep['metadata']['name']} revision {number}: image {image_tag(image)}"
                            + (f" ({cause})" if cause else " (no change-cause)"),
                revision=number, version=image_tag(image),
                previous_revision=before[0] if before else None, previous_version=image_tag(before_image),
                completed_at=completed, source=f"ReplicaSet {rs['metadata']['name']}", replica_set=rs["metadata"]["name"],
            ))
    return changes


def catalog_changes(records: Any, since: datetime, services: Sequence[str]) -> list[Change]:
    """Deploys and rollbacks the records catalog knows (runs of the deploy and rollback runbooks)."""
    changes = []
    if records is None or getattr(records, "empty", True):
        return changes
    for _, row in records.iterrows():
        started = parse_time(str(row.get("started"))) if row.get("started") is not None else None
        if row.get("runbook") not in ("deploy", "rollback") or row.get("service") not in services or started is None or started < since:
            continue
        params = row.get("parameters") or {}
        kind = str(row["runbook"])
        figures = row.get("figures") or {}
        what = (f"run {row.get('run_id')} ({row.get('outcome')}): "
                + (f"version {params.get('version')}" if kind == "deploy" else f"to revision {figures.get('to_revision') or 'previous'}"))
        changes.append(Change(at=started, kind=kind, service=str(row["service"]), description=what,
                              version=params.get("version") if kind == "deploy" else None, source=f"record {row.get('record')}"))
        if kind == "deploy" and figures.get("secret_keys_changed"):
            changes.append(Change(at=started, kind="secret", service=str(row["service"]),
                                  description=f"{figures['secret_keys_changed']} secret key(s) changed by run {row.get('run_id')}",
                                  source=f"record {row.get('record')}"))
    return changes


def config_changes(objects: list[dict[str, Any]], since: datetime, services: Sequence[str]) -> list[Change]:
    """ConfigMaps and Secrets created in the window (Kubernetes keeps no time of a later edit)."""
    changes = []
    for obj in objects:
        meta = obj["metadata"]
        created = parse_time(meta.get("creationTimestamp"))
        if created is None or created < since or meta.get("name", "").startswith("kube-"):
            continue
        service = (meta.get("labels") or {}).get("app") or "all"
        if service != "all" and service not in services:
            continue
        kind = "secret" if obj["kind"] == "Secret" else "config"
        changes.append(Change(at=created, kind=kind, service=service, description=f"{obj['kind']} {meta.get('name')} created",
                              source=f"{obj['kind']} metadata"))
    return changes


def take_snapshot(cluster: "Cluster", services: Sequence[str], since: datetime, *, records: Any = None,
                  event_minutes: float = 30) -> Snapshot:
    """Everything above, in one read of the cluster."""
    missing: list[str] = []
    now = datetime.now(timezone.utc)
    all_deps = cluster.deployments()
    deps = [d for d in all_deps if _app(d) in services]
    deployments, findings = _deployments(deps)
    events = cluster.events(since=timedelta(minutes=event_minutes))
    events = [e for e in events if any((e.get("involvedObject") or {}).get("name", "").startswith(s) for s in services)]
    pods = cluster.pods()
    unhealthy, bad_pods = _unhealthy(pods, services, events)
    logs = _logs(cluster, bad_pods, missing)
    changes = replica_set_changes(deps, cluster.replica_sets(), since, pods)
    changes += catalog_changes(records, since, services)
    try:
        changes += config_changes(cluster.config_objects(), since, services)
    except RunbookError as e:
        missing.append(f"ConfigMap and Secret metadata ({e})")
    if records is None:
        missing.append("the records catalog (no deploy or rollback runs could be read)")
    failing = {v for v in unhealthy["image version"].dropna()} if not unhealthy.empty else set()
    unhealthy_services = sorted(set(unhealthy["service"])) if not unhealthy.empty else []
    warnings = [e for e in events if e.get("type") == "Warning"]
    first_warning = min(warnings, key=lambda e: str(e.get("firstTimestamp") or e.get("lastTimestamp") or "")) if warnings else None
    images = {p["metadata"]["name"]: ((p.get("spec") or {}).get("containers") or [{}])[0].get("image") or ""
              for p in pods}
    owners = {p["metadata"]["name"]: owner["name"] for p in pods
              for owner in p["metadata"].get("ownerReferences") or [] if owner.get("controller")}
    apps = {p["metadata"]["name"]: (p["metadata"].get("labels") or {}).get("app") or "" for p in pods}
    return Snapshot(now, deployments, unhealthy, _events_table(events), logs, changes, missing, findings,
                    failing, unhealthy_services, first_warning, images, owners, apps)
