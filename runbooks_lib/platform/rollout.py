"""Rolling out and rolling back one Deployment, with kubectl's semantics.

``wait_for_rollout`` is ``kubectl rollout status`` with a progress bar; ``history`` and
``undo`` follow kubectl's rollback.go and history.go: revisions are read from the
Deployment's ReplicaSets, and an undo copies the chosen ReplicaSet's pod template (without
its pod-template-hash label) back onto the Deployment. Every change honours dry run.
"""
from __future__ import annotations

import copy
import difflib
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

from .cluster import DeploymentState
from ..errors import BackendUnavailable, CheckFailed, MaybeApplied, NotFound, ParameterError, RunbookError, RunbookTimeout
from .images import version_of_image

if TYPE_CHECKING:
    import pandas as pd

    from .cluster import Cluster

__all__ = ["Revision", "set_image", "wait_for_rollout", "history", "history_rows", "history_table", "undo", "CHANGE_CAUSE",
           "version_of_image"]

CHANGE_CAUSE = "kubernetes.io/change-cause"
REVISION = "deployment.kubernetes.io/revision"


@dataclass(frozen=True)
class Revision:
    """One revision of a Deployment, as its ReplicaSet holds it.

    ``version`` is read from the image, which is what runs; ``label_version`` is the template's
    ``version`` label, which ``kubectl set image`` leaves stale. They are shown side by side and
    a disagreement is a warning, never believed.
    """

    number: int
    replica_set: str
    image: str | None
    version: str | None
    change_cause: str | None
    created: str | None
    replicas: int
    template: dict[str, Any]
    label_version: str | None = None
    pod_template_hash: str | None = None
    annotations: dict[str, str] = field(default_factory=dict)

    @property
    def label_warning(self) -> str | None:
        if self.label_version is None or self.label_version == self.version:
            return None
        return (f"label version={self.label_version} disagrees with the image ({self.version}): "
                f"the image is what runs")


def set_image(cluster: "Cluster", deployment: str, container: str, image: str, *,
              version: str | None = None, change_cause: str | None = None) -> dict[str, Any]:
    """``kubectl set image`` plus the version label and a change-cause, in one strategic-merge patch."""
    template: dict[str, Any] = {"spec": {"containers": [{"name": container, "image": image}]}}
    if version:
        template["metadata"] = {"labels": {"version": version}}
    patch: dict[str, Any] = {"spec": {"template": template}}
    if change_cause:
        patch["metadata"] = {"annotations": {CHANGE_CAUSE: change_cause}}
    return confirmed_write(cluster, deployment, lambda: cluster.patch_deployment(deployment, patch, what=f"set image to {image}"),
                           lambda dep: _runs(dep, container, image, version))


def _runs(dep: dict[str, Any], container: str | None, image: str | None, version: str | None) -> bool:
    """Whether the Deployment's template has ``image`` in ``container`` (any, if None) and the version label."""
    template = (dep.get("spec") or {}).get("template") or {}
    containers = (template.get("spec") or {}).get("containers") or []
    images = [c.get("image") for c in containers if container is None or c.get("name") == container]
    label = ((template.get("metadata") or {}).get("labels") or {}).get("version")
    return image in images and (version is None or label == version)


def confirmed_write(cluster: "Cluster", deployment: str, write: Callable[[], dict[str, Any]],
                    landed: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """Make a change to a Deployment; when its answer may have come after it landed (MaybeApplied:
    a 500, a lost reply), read the Deployment back and go on from what is there, saying so.

    Applied: the object read back is returned, and the runbook carries on (waits, checks, rolls
    back if need be) as for any change. Not applied: BackendUnavailable says nothing changed.
    Unreadable: MaybeApplied says it is unknown, and how to look. Never sent a second time blindly.
    """
    try:
        return write()
    except MaybeApplied as lost:
        if cluster.dry_run:
            raise
        try:
            now = cluster.deployment(deployment)
        except RunbookError as unreadable:
            raise MaybeApplied(f"{lost}; reading deployment/{deployment} back failed too ({unreadable}): whether the "
                               f"change was applied is unknown. Look with `kubectl rollout history "
                               f"deployment/{deployment}` before running again") from lost
        if landed(now):
            print(f"⚠ {lost}\n  read back: deployment/{deployment} has the change (generation "
                  f"{(now.get('metadata') or {}).get('generation')}), so it was applied; carrying on from there")
            return now
        raise BackendUnavailable(f"{lost}; read back: deployment/{deployment} does not have the change, so nothing "
                                 "was applied; run again (or `runbook resume`) once the API server answers") from lost


def _describe(state: DeploymentState) -> str:
    if state.observed_generation < state.generation:
        return "waiting for the spec update to be observed"
    if state.updated < state.desired:
        return f"{state.updated} of {state.desired} new replicas updated"
    if state.replicas > state.updated:
        return f"{state.replicas - state.updated} old replicas pending termination"
    if state.available < state.updated:
        return f"{state.available} of {state.updated} updated replicas available"
    return "rolled out"


def wait_for_rollout(cluster: "Cluster", deployment: str, timeout_s: float, *, poll_s: float = 0.25,
                     on_progress: Callable[[DeploymentState], None] | None = None) -> DeploymentState:
    """Wait until the rollout is complete (kubectl's rule), showing progress.

    Raises CheckFailed when the Deployment reports ProgressDeadlineExceeded (kubectl exits non-zero
    there too) and RunbookTimeout past ``timeout_s``.
    """
    from ..display import progress_bar

    deadline = time.monotonic() + timeout_s
    state = cluster.deployment_state(deployment)
    with progress_bar(total=max(state.desired, 1), desc=f"rollout {deployment}", unit="replica", leave=True) as bar:
        while True:
            state = cluster.deployment_state(deployment)
            bar.total = max(state.desired, 1)
            bar.n = min(state.available if state.updated >= state.desired else state.updated, bar.total)
            bar.set_postfix_str(_describe(state))
            bar.refresh()
            if on_progress:
                on_progress(state)
            if state.rolled_out:
                return state
            if state.deadline_exceeded:
                raise CheckFailed(
                    f"deployment {deployment} exceeded its progress deadline: {state.ready}/{state.desired} ready, "
                    f"{state.updated} updated"
                )
            if time.monotonic() > deadline:
                raise RunbookTimeout(
                    f"deployment {deployment} not rolled out after {timeout_s:.0f} s: {_describe(state)}"
                )
            time.sleep(poll_s)


def _owned_replica_sets(cluster: "Cluster", dep: dict[str, Any]) -> list[dict[str, Any]]:
    uid = dep["metadata"]["uid"]
    selector = ",".join(f"{k}={v}" for k, v in ((dep["spec"].get("selector") or {}).get("matchLabels") or {}).items())
    return [
        rs for rs in cluster.replica_sets(label_selector=selector or None)
        if any(o.get("uid") == uid and o.get("controller") for o in rs["metadata"].get("ownerReferences") or [])
    ]


def history(cluster: "Cluster", deployment: str) -> list[Revision]:
    """The Deployment's revisions, oldest first, from its ReplicaSets (as kubectl reads them)."""
    dep = cluster.deployment(deployment)
    revisions = []
    for rs in _owned_replica_sets(cluster, dep):
        meta = rs["metadata"]
        number = int((meta.get("annotations") or {}).get(REVISION, 0))
        template = rs["spec"]["template"]
        containers = template["spec"].get("containers") or [{}]
        labels = template.get("metadata", {}).get("labels") or {}
        image = containers[0].get("image")
        revisions.append(Revision(
            number=number, replica_set=meta["name"], image=image, version=version_of_image(image),
            change_cause=(meta.get("annotations") or {}).get(CHANGE_CAUSE),
            created=meta.get("creationTimestamp"), replicas=int(rs["spec"].get("replicas") or 0),
            template=template, label_version=labels.get("version"),
            pod_template_hash=(meta.get("labels") or {}).get("pod-template-hash") or labels.get("pod-template-hash"),
            annotations=dict(meta.get("annotations") or {}),
        ))
    return sorted(revisions, key=lambda r: r.number)


def history_rows(revisions: list[Revision], current: int | None = None,
                 verdicts: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """The history as plain rows; ``verdicts`` (version → what the records say) adds a column."""
    warned = any(x.label_warning for x in revisions)
    rows = []
    for r in revisions:
        row: dict[str, Any] = {"revision": r.number, "current": r.number == current, "version (image)": r.version,
                               "image": r.image}
        if verdicts is not None:
            row["known"] = verdicts.get(r.version or "", "")
        row.update({"change-cause": r.change_cause, "replicas": r.replicas, "replica set": r.replica_set,
                    "created": r.created})
        if warned:
            row["warning"] = r.label_warning or ""
        rows.append(row)
    return rows


def history_table(revisions: list[Revision], current: int | None = None,
                  verdicts: dict[str, str] | None = None) -> "pd.DataFrame":
    """The history as a DataFrame indexed by revision (see ``history_rows``)."""
    import pandas as pd

    rows = history_rows(revisions, current, verdicts)
    return pd.DataFrame(rows).set_index("revision") if rows else pd.DataFrame()


def _without_hash(template: dict[str, Any]) -> dict[str, Any]:
    clean = copy.deepcopy(template)
    (clean.get("metadata", {}).get("labels") or {}).pop("pod-template-hash", None)
    return clean


def choose_revision(revisions: list[Revision], current: int, to_revision: int | None) -> Revision:
    """kubectl's choice: an explicit revision, or the highest one below the current."""
    if to_revision:
        found = next((r for r in revisions if r.number == to_revision), None)
        if found is None:
            raise NotFound(
                f"unable to find revision {to_revision}; revisions available: "
                + (", ".join(str(r.number) for r in revisions) or "none")
            )
        return found
    previous = [r for r in revisions if r.number < current]
    if not previous:
        raise NotFound("no rollout history found: there is no previous revision to roll back to")
    return previous[-1]


def deployment_facts(cluster: "Cluster", deployment: str) -> dict[str, Any]:
    """What an approval and a resume rest on: the Deployment's spec as it runs (generation, image,
    replicas, revision); its resourceVersion is shown but status writes alone change it."""
    dep = cluster.deployment(deployment)
    meta, spec = dep.get("metadata") or {}, dep.get("spec") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    return {"object": f"deployment/{meta.get('name')}", "generation": meta.get("generation"),
            "image": containers[0].get("image"), "replicas": spec.get("replicas"),
            "revision": (meta.get("annotations") or {}).get(REVISION), "resourceVersion": meta.get("resourceVersion")}


def undo(cluster: "Cluster", deployment: str, to_revision: int | None = None) -> tuple[Revision, dict[str, Any]]:
    """``kubectl rollout undo``: copy the chosen revision's template back onto the Deployment."""
    dep = cluster.deployment(deployment)
    if dep["spec"].get("paused"):
        raise ParameterError(f"deployment {deployment} is paused; resume it before rolling back")
    current = int((dep["metadata"].get("annotations") or {}).get(REVISION, 0))
    target = choose_revision(history(cluster, deployment), current, to_revision)
    template = _without_hash(target.template)
    annotations = dict(dep["metadata"].get("annotations") or {})
    if target.change_cause:
        annotations[CHANGE_CAUSE] = target.change_cause
    patch = [
        {"op": "replace", "path": "/spec/template", "value": template},
        {"op": "replace", "path": "/metadata/annotations", "value": annotations},
    ]
    containers = (template.get("spec") or {}).get("containers") or [{}]
    version = ((template.get("metadata") or {}).get("labels") or {}).get("version")
    return target, confirmed_write(
        cluster, deployment, lambda: cluster.patch_deployment(deployment, patch, what=f"roll back to revision {target.number}"),
        lambda dep: _runs(dep, containers[0].get("name"), containers[0].get("image"), version))


def diff_objects(before: dict[str, Any], after: dict[str, Any]) -> str:
    """A unified diff of two objects' specs and labels/annotations, as YAML."""
    import yaml

    def view(obj: dict[str, Any]) -> list[str]:
        meta = obj.get("metadata") or {}
        shown = {"metadata": {k: meta.get(k) for k in ("labels", "annotations") if meta.get(k)}, "spec": obj.get("spec")}
        shown["metadata"].get("annotations", {}).pop("kubectl.kubernetes.io/last-applied-configuration", None)
        return yaml.safe_dump(shown, sort_keys=True).splitlines(keepends=True)

    return "".join(difflib.unified_diff(view(before), view(after), "live", "after change", n=2)) or "(no change)"
