"""The Deployment controller: ReplicaSets per template, rollouts, revisions, status.

A port of pkg/controller/deployment's decisions (deployment_controller.go syncDeployment,
sync.go, rolling.go, recreate.go, progress.go) onto the sandbox store; the arithmetic lives in
rollout.py, the revision bookkeeping in revisions.py and the status in progress.py. Writes to
ReplicaSets are JSON merge patches of exactly the fields the controller owns (replicas and its
annotations), so the ReplicaSet controller's status writes never make them conflict.
Not modelled: adoption of orphan ReplicaSets, the deprecated spec.rollbackTo, ReplicaFailure.
"""
from __future__ import annotations

from typing import Hashable

from ..api import Store, StoreEvent
from ..errors import AlreadyExists, ApiError, NotFound
from ..resources import DEPLOYMENTS, PODS, REPLICASETS
from . import progress, revisions
from .events import EventRecorder
from .meta import (Obj, annotations, clone_obj, controller_of, controller_ref, creation_key,
                   is_controlled_by, is_terminating, name_of, pod_phase, uid_of, utcnow)
from .queue import WorkQueue
from .rollout import (active, desired_replicas, find_active_or_latest, is_rolling_update, is_saturated,
                      max_old_scale_down, max_surge, new_rs_new_replicas, plan_old_scale_down,
                      plan_proportional_scale, plan_unhealthy_cleanup, rs_replicas, rs_status,
                      scaling_event, spec_field, strategy_type, total_spec_replicas)

MERGE = "application/merge-patch+json"


class DeploymentController:
    name = "deployment-controller"

    def __init__(self, store: Store, queue: WorkQueue) -> None:
        self.store = store
        self.queue = queue
        self.events = EventRecorder(store, self.name)

    # --- what to sync ---------------------------------------------------------------------

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        rt, obj = event.resource, event.object
        namespace = obj["metadata"].get("namespace")
        if rt == DEPLOYMENTS:
            return [("deployment", namespace, name_of(obj))]
        ref = controller_of(obj)
        if rt == REPLICASETS and ref and ref.get("kind") == "Deployment":
            return [("deployment", namespace, ref["name"])]
        if rt == PODS and event.type == "DELETED" and ref and ref.get("kind") == "ReplicaSet":
            # Recreate waits for old pods to be gone, which no ReplicaSet status change shows.
            return [("replicaset", namespace, ref["name"])]
        return []

    def all_keys(self) -> list[Hashable]:
        items, _ = self.store.list(DEPLOYMENTS)
        return [("deployment", d["metadata"].get("namespace"), name_of(d)) for d in items]

    def sync(self, key: Hashable) -> None:
        kind, namespace, name = key  # type: ignore[misc]
        if kind == "replicaset":
            try:
                ref = controller_of(self.store.get(REPLICASETS, namespace, name))
            except NotFound:
                return
            if not ref or ref.get("kind") != "Deployment":
                return
            name = ref["name"]
        try:
            deployment = self.store.get(DEPLOYMENTS, namespace, name)
        except NotFound:
            return
        self.sync_deployment(deployment)

    # --- syncDeployment -------------------------------------------------------------------

    def sync_deployment(self, d: Obj) -> None:
        namespace = d["metadata"].get("namespace")
        owned = [rs for rs in self.store.list(REPLICASETS, namespace)[0] if is_controlled_by(rs, uid_of(d))]
        if is_terminating(d):
            new_rs, old_rss = self._new_and_old(d, owned)
            self._sync_status(d, [*old_rss, new_rs], new_rs)
            return
        self._check_paused_conditions(d)
        new_rs, old_rss = self._new_and_old(d, owned)
        if spec_field(d, "paused") or scaling_event(d, [*old_rss, new_rs]):
            self._scale(d, new_rs, old_rss)
            if spec_field(d, "paused"):
                self._cleanup(d, old_rss)
            self._sync_status(d, [*old_rss, new_rs], new_rs)
        elif strategy_type(d) == "Recreate":
            self._rollout_recreate(d, new_rs, old_rss)
        else:
            if new_rs is None:
                new_rs = self._create_new_rs(d, old_rss)
            self._rollout_rolling(d, new_rs, old_rss)

    def _check_paused_conditions(self, d: Obj) -> None:
        """Mark pausing/resuming in Progressing (Unknown), so a resume restarts the deadline."""
        if not progress.has_progress_deadline(d):
            return
        status = d.setdefault("status", {})
        condition = progress.get_condition(status, progress.PROGRESSING)
        if condition and condition.get("reason") == progress.TIMED_OUT:
            return
        paused_marked = condition is not None and condition.get("reason") == progress.PAUSED
        now = utcnow()
        if spec_field(d, "paused") and not paused_marked:
            progress.set_condition(status, progress.new_condition(
                progress.PROGRESSING, "Unknown", progress.PAUSED, "Deployment is paused", now))
        elif not spec_field(d, "paused") and paused_marked:
            progress.set_condition(status, progress.new_condition(
                progress.PROGRESSING, "Unknown", progress.RESUMED, "Deployment is resumed", now))
        else:
            return
        self._write_status(d)

    # --- the new ReplicaSet and revisions ---------------------------------------------------

    def _new_and_old(self, d: Obj, owned: list[Obj]) -> tuple[Obj | None, list[Obj]]:
        """The ReplicaSet matching the template (revision synced) and all the others."""
        template = d["spec"].get("template") or {}
        new_rs = next((rs for rs in sorted(owned, key=creation_key)
                       if revisions.equal_ignore_hash(rs["spec"].get("template") or {}, template)), None)
        old_rss = [rs for rs in owned if rs is not new_rs]
        if new_rs is not None:
            new_rs = self._sync_new_rs_revision(d, new_rs, old_rss)
        return new_rs, old_rss

    def _replicas_annotation_values(self, d: Obj) -> tuple[int, int]:
        desired = desired_replicas(d)
        return desired, desired + max_surge(d)

    def _sync_new_rs_revision(self, d: Obj, rs: Obj, old_rss: list[Obj]) -> Obj:
        """Give an existing new ReplicaSet max(old)+1 (a rollback reusing it), copy the
        deployment's annotations onto it, then mirror its revision on the deployment."""
        updated = clone_obj(rs)
        new_revision = revisions.max_revision(old_rss) + 1
        changed = revisions.set_new_rs_annotations(d, updated, new_revision, True,
                                                   *self._replicas_annotation_values(d))
        min_ready = spec_field(d, "minReadySeconds") or 0
        if changed or (updated["spec"].get("minReadySeconds") or 0) != min_ready:
            patch = {"metadata": {"annotations": annotations(updated),
                                  "resourceVersion": rs["metadata"]["resourceVersion"]},
                     "spec": {"minReadySeconds": min_ready or None}}
            # Upstream returns here and mirrors the revision on the next sync (which the
            # ReplicaSet's update triggers).
            return self.store.patch(REPLICASETS, rs["metadata"].get("namespace"), name_of(rs), patch, MERGE)
        if revisions.set_deployment_revision(d, annotations(updated).get(revisions.REVISION, "")):
            self._write_revision(d)
        status = d.setdefault("status", {})
        if progress.has_progress_deadline(d) and progress.get_condition(status, progress.PROGRESSING) is None:
            progress.set_condition(status, progress.new_condition(
                progress.PROGRESSING, "True", progress.FOUND_NEW_RS,
                f'Found new replica set "{name_of(updated)}"', utcnow()))
            self._write_status(d)
        return updated

    def _create_new_rs(self, d: Obj, old_rss: list[Obj]) -> Obj:
        namespace = d["metadata"].get("namespace")
        collision_count = (d.get("status") or {}).get("collisionCount")
        template = clone_obj(d["spec"].get("template") or {})
        pod_hash = revisions.pod_template_hash(template, collision_count)
        template.setdefault("metadata", {}).setdefault("labels", {})[revisions.HASH_LABEL] = pod_hash
        selector = clone_obj(d["spec"].get("selector") or {})
        selector.setdefault("matchLabels", {})[revisions.HASH_LABEL] = pod_hash
        spec: Obj = {"replicas": 0, "selector": selector, "template": template}
        if spec_field(d, "minReadySeconds"):
            spec["minReadySeconds"] = spec_field(d, "minReadySeconds")
        rs: Obj = {
            "apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{name_of(d)}-{pod_hash}", "namespace": namespace,
                         "labels": dict(template["metadata"]["labels"]),
                         "ownerReferences": [controller_ref(d)]},
            "spec": spec,
        }
        replicas = new_rs_new_replicas(d, [*old_rss, rs], rs)
        rs["spec"]["replicas"] = replicas
        new_revision = revisions.max_revision(old_rss) + 1
        revisions.set_new_rs_annotations(d, rs, new_revision, False, *self._replicas_annotation_values(d))
        already_existed = False
        try:
            created = self.store.create(REPLICASETS, namespace, rs)
        except AlreadyExists:
            created = self._existing_or_collision(d, rs)
            already_existed = True
        except ApiError as error:
            self._report_create_failure(d, rs, error)
            raise
        if not already_existed and replicas > 0:
            self.events.event(d, "Normal", "ScalingReplicaSet",
                              f"Scaled up replica set {name_of(created)} from 0 to {replicas}")
        if revisions.set_deployment_revision(d, str(new_revision)):
            self._write_revision(d)
        if not already_existed and progress.has_progress_deadline(d):
            progress.set_condition(d.setdefault("status", {}), progress.new_condition(
                progress.PROGRESSING, "True", progress.NEW_RS_CREATED,
                f'Created new replica set "{name_of(created)}"', utcnow()))
            self._write_status(d)
        return created

    def _existing_or_collision(self, d: Obj, rs: Obj) -> Obj:
        """A ReplicaSet of that name exists: ours (a stale read) or a hash collision, which
        bumps status.collisionCount so the next sync hashes differently."""
        existing = self.store.get(REPLICASETS, rs["metadata"]["namespace"], name_of(rs))
        if is_controlled_by(existing, uid_of(d)) and revisions.equal_ignore_hash(
                existing["spec"].get("template") or {}, d["spec"].get("template") or {}):
            return existing
        status = d.setdefault("status", {})
        status["collisionCount"] = int(status.get("collisionCount") or 0) + 1
        self._write_status(d)
        raise AlreadyExists.of("replicasets", name_of(rs), "apps")

    def _report_create_failure(self, d: Obj, rs: Obj, error: ApiError) -> None:
        message = f'Failed to create new replica set "{name_of(rs)}": {error.message}'
        if progress.has_progress_deadline(d):
            progress.set_condition(d.setdefault("status", {}), progress.new_condition(
                progress.PROGRESSING, "False", progress.FAILED_RS_CREATE, message, utcnow()))
            self._write_status(d)
        self.events.event(d, "Warning", progress.FAILED_RS_CREATE, message)

    # --- strategies --------------------------------------------------------------------------

    def _rollout_rolling(self, d: Obj, new_rs: Obj, old_rss: list[Obj]) -> None:
        """One step of a rolling update: surge the new ReplicaSet if allowed, else retire old
        pods as far as maxUnavailable allows; clean up history once complete."""
        new_rs, scaled_up = self._reconcile_new_rs(d, [*old_rss, new_rs], new_rs)
        if not scaled_up:
            old_rss, scaled_down = self._reconcile_old_rss(d, old_rss, new_rs)
            if not scaled_down and progress.deployment_complete(d, d.get("status") or {}):
                self._cleanup(d, old_rss)
        self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)

    def _reconcile_new_rs(self, d: Obj, all_rss: list[Obj], new_rs: Obj) -> tuple[Obj, bool]:
        desired = desired_replicas(d)
        if rs_replicas(new_rs) == desired:
            return new_rs, False
        target = desired if rs_replicas(new_rs) > desired else new_rs_new_replicas(d, all_rss, new_rs)
        return self._scale_and_record(d, new_rs, target)

    def _reconcile_old_rss(self, d: Obj, old_rss: list[Obj], new_rs: Obj) -> tuple[list[Obj], bool]:
        old_active = active(old_rss)
        if total_spec_replicas(old_active) == 0:
            return old_rss, False
        budget = max_old_scale_down(d, [*old_rss, new_rs], new_rs)
        if budget <= 0:
            return old_rss, False
        by_name = {name_of(rs): rs for rs in old_rss}
        scaled = self._apply_plan(d, by_name, plan_unhealthy_cleanup(old_active, budget))
        old_active = active(list(by_name.values()))
        plan = plan_old_scale_down(d, [*old_active, new_rs], old_active)
        scaled = self._apply_plan(d, by_name, plan) or scaled
        return list(by_name.values()), scaled

    def _apply_plan(self, d: Obj, by_name: dict[str, Obj], plan: dict[str, int]) -> bool:
        scaled = False
        for name, size in plan.items():
            by_name[name], did_scale = self._scale_and_record(d, by_name[name], size)
            scaled = scaled or did_scale
        return scaled

    def _rollout_recreate(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """Scale every old ReplicaSet to zero, wait until their pods are gone, then create
        and scale up the new one."""
        by_name = {name_of(rs): rs for rs in old_rss}
        scaled_down = self._apply_plan(d, by_name, {name_of(rs): 0 for rs in active(old_rss)})
        old_rss = list(by_name.values())
        if scaled_down or self._old_pods_running(d, new_rs, old_rss):
            self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)
            return
        if new_rs is None:
            new_rs = self._create_new_rs(d, old_rss)
        new_rs, _ = self._scale_and_record(d, new_rs, desired_replicas(d))
        if progress.deployment_complete(d, d.get("status") or {}):
            self._cleanup(d, old_rss)
        self._sync_rollout_status(d, [*old_rss, new_rs], new_rs)

    def _old_pods_running(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> bool:
        if sum(rs_status(rs, "replicas") for rs in old_rss) > 0:
            return True
        old_uids = {uid_of(rs) for rs in old_rss}
        pods, _ = self.store.list(PODS, d["metadata"].get("namespace"))
        return any(
            (controller_of(p) or {}).get("uid") in old_uids and pod_phase(p) not in ("Failed", "Succeeded")
            for p in pods)

    # --- scaling -----------------------------------------------------------------------------

    def _scale(self, d: Obj, new_rs: Obj | None, old_rss: list[Obj]) -> None:
        """sync.go scale: resize a paused or resized deployment without rolling it."""
        only = find_active_or_latest(new_rs, old_rss)
        if only is not None:
            if rs_replicas(only) != desired_replicas(d):
                self._scale_and_record(d, only, desired_replicas(d))
            return
        if is_saturated(d, new_rs):
            for rs in active(old_rss):
                self._scale_and_record(d, rs, 0)
            return
        if is_rolling_update(d):
            sizes = plan_proportional_scale(d, new_rs, old_rss)
            by_name = {name_of(rs): rs for rs in active([*old_rss, new_rs])}
            for name, size in sizes.items():
                self._scale_replica_set(d, by_name[name], size)

    def _scale_and_record(self, d: Obj, rs: Obj, size: int) -> tuple[Obj, bool]:
        if rs_replicas(rs) == size:
            return rs, False
        return self._scale_replica_set(d, rs, size)

    def _scale_replica_set(self, d: Obj, rs: Obj, size: int) -> tuple[Obj, bool]:
        """Set spec.replicas and the desired/max-replicas annotations; record the event."""
        before = rs_replicas(rs)
        desired, most = self._replicas_annotation_values(d)
        if before == size and not revisions.replicas_annotations_need_update(rs, desired, most):
            return rs, False
        patch = {"metadata": {"annotations": {revisions.DESIRED_REPLICAS: str(desired),
                                              revisions.MAX_REPLICAS: str(most)}},
                 "spec": {"replicas": size}}
        updated = self.store.patch(REPLICASETS, rs["metadata"].get("namespace"), name_of(rs), patch, MERGE)
        if before != size:
            direction = "up" if size > before else "down"
            self.events.event(d, "Normal", "ScalingReplicaSet",
                              f"Scaled {direction} replica set {name_of(rs)} from {before} to {size}")
        return updated, before != size

    def _cleanup(self, d: Obj, old_rss: list[Obj]) -> None:
        """Delete the oldest zero-sized ReplicaSets beyond revisionHistoryLimit."""
        limit = spec_field(d, "revisionHistoryLimit")
        if limit is None:
            return
        cleanable = sorted((rs for rs in old_rss if not is_terminating(rs)), key=revisions.revision_sort_key)
        for rs in cleanable[:max(0, len(cleanable) - int(limit))]:
            observed = int((rs.get("status") or {}).get("observedGeneration") or 0)
            if (rs_status(rs, "replicas") or rs_replicas(rs)
                    or rs["metadata"].get("generation", 0) > observed):
                continue
            try:
                self.store.delete(REPLICASETS, rs["metadata"].get("namespace"), name_of(rs))
            except NotFound:
                pass

    # --- status ------------------------------------------------------------------------------

    def _sync_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        """syncDeploymentStatus: counts and Available only (scaling, paused, deleting)."""
        status = progress.calculate_status(all_rss, new_rs, d, utcnow())
        if status != (d.get("status") or {}):
            d["status"] = status
            self._write_status(d)

    def _sync_rollout_status(self, d: Obj, all_rss: list[Obj | None], new_rs: Obj | None) -> None:
        """syncRolloutStatus: also Progressing; re-checks a stuck rollout at its deadline."""
        now = utcnow()
        status = progress.rollout_status(all_rss, new_rs, d, now)
        if status == (d.get("status") or {}):
            delay = progress.stuck_recheck_delay(d, status, now)
            if delay is not None:
                self.queue.add_after(("deployment", d["metadata"].get("namespace"), name_of(d)), delay)
            return
        d["status"] = status
        self._write_status(d)

    def _write_status(self, d: Obj) -> None:
        self.store.update_status(DEPLOYMENTS, d["metadata"].get("namespace"), name_of(d), d["status"])

    def _write_revision(self, d: Obj) -> None:
        revision = annotations(d)[revisions.REVISION]
        self.store.patch(DEPLOYMENTS, d["metadata"].get("namespace"), name_of(d),
                         {"metadata": {"annotations": {revisions.REVISION: revision}}}, MERGE)
