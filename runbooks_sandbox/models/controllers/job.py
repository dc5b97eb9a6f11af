"""The Job controller: pods run to completion, retried up to backoffLimit, within a deadline.

As pkg/controller/job (NonIndexed completion mode): the Job keeps ``min(parallelism,
completions - succeeded)`` pods active; a pod that fails counts towards ``backoffLimit`` (with
``restartPolicy: OnFailure`` its container restarts count instead, the pod staying the same);
past the limit, or past ``activeDeadlineSeconds`` since ``status.startTime``, the Job fails
(reasons BackoffLimitExceeded / DeadlineExceeded) and its running pods are deleted. Once
``succeeded`` reaches ``completions`` the Job is Complete. Conditions are written as 1.32 does:
``SuccessCriteriaMet`` then ``Complete``, ``FailureTarget`` then ``Failed``. Pod replacement
waits a back-off (10 s doubling, scaled by ``time_scale`` as the kubelet's is).
"""
from __future__ import annotations

from datetime import datetime
from typing import Hashable

from ..api import Store, StoreEvent
from ..batch import JOBS
from ..errors import NotFound
from ..resources import PODS
from .events import EventRecorder
from .meta import (Obj, clone_obj, controller_of, controller_ref, is_controlled_by, is_pod_ready, is_terminating,
                   name_of, parse_time, pod_phase, rfc3339, uid_of, utcnow)
from .queue import WorkQueue

__all__ = ["JobController", "job_finished", "pod_from_job"]

_BACKOFF_S = 10.0


def job_condition(job: Obj, kind: str) -> Obj | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == kind and condition.get("status") == "True":
            return condition
    return None


def job_finished(job: Obj) -> str | None:
    """"Complete" or "Failed" once the Job has finished, else None."""
    for kind in ("Complete", "Failed"):
        if job_condition(job, kind):
            return kind
    return None


def pod_from_job(job: Obj) -> Obj:
    template = job["spec"].get("template") or {}
    meta = template.get("metadata") or {}
    pod_meta: Obj = {"generateName": f"{name_of(job)}-", "namespace": job["metadata"].get("namespace"),
                     "labels": dict(meta.get("labels") or {}), "ownerReferences": [controller_ref(job)]}
    if meta.get("annotations"):
        pod_meta["annotations"] = dict(meta["annotations"])
    return {"apiVersion": "v1", "kind": "Pod", "metadata": pod_meta, "spec": clone_obj(template.get("spec") or {})}


def _restarts(pod: Obj) -> int:
    return sum(int(s.get("restartCount") or 0) for s in (pod.get("status") or {}).get("containerStatuses") or [])


def _finished_at(pod: Obj) -> datetime | None:
    stamps = [parse_time(((s.get("state") or {}).get("terminated") or {}).get("finishedAt"))
              for s in (pod.get("status") or {}).get("containerStatuses") or []]
    stamps = [s for s in stamps if s is not None]
    return max(stamps) if stamps else None


def _condition(kind: str, reason: str, message: str, now: datetime) -> Obj:
    stamp = rfc3339(now)
    return {"type": kind, "status": "True", "reason": reason, "message": message,
            "lastProbeTime": stamp, "lastTransitionTime": stamp}


class JobController:
    name = "job-controller"

    def __init__(self, store: Store, queue: WorkQueue, time_scale: float = 0.1) -> None:
        self.store = store
        self.queue = queue
        self.time_scale = time_scale  # the pod replacement back-off, on the runtime's clock
        self.events = EventRecorder(store, self.name)

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        rt, obj = event.resource, event.object
        if rt == JOBS:
            return [(obj["metadata"].get("namespace"), name_of(obj))]
        if rt == PODS:
            ref = controller_of(obj)
            if ref and ref.get("kind") == "Job":
                return [(obj["metadata"].get("namespace"), ref["name"])]
        return []

    def all_keys(self) -> list[Hashable]:
        return [(j["metadata"].get("namespace"), name_of(j)) for j in self.store.list(JOBS)[0]]

    def sync(self, key: Hashable) -> None:
        namespace, name = key  # type: ignore[misc]
        try:
            job = self.store.get(JOBS, namespace, name)
        except NotFound:
            return
        if is_terminating(job) or job_finished(job):
            return
        now = utcnow()
        pods = [p for p in self.store.list(PODS, namespace)[0] if is_controlled_by(p, uid_of(job))]
        active = [p for p in pods if not is_terminating(p) and pod_phase(p) not in ("Succeeded", "Failed")]
        succeeded = sum(1 for p in pods if pod_phase(p) == "Succeeded")
        failed = sum(1 for p in pods if pod_phase(p) == "Failed")
        spec, status = job["spec"], dict(job.get("status") or {})
        if spec.get("suspend"):
            self._write(job, status, active, succeeded, failed)
            return
        started = parse_time(status.get("startTime")) or now
        status.setdefault("startTime", rfc3339(started))
        retries = failed + (sum(_restarts(p) for p in active) if spec["template"]["spec"].get("restartPolicy") == "OnFailure" else 0)
        deadline = spec.get("activeDeadlineSeconds")
        outcome: tuple[str, str, str] | None = None
        if succeeded >= int(spec.get("completions") or 1):
            outcome = ("Complete", "CompletionsReached", "Reached expected number of succeeded pods")
        elif retries > int(spec.get("backoffLimit", 6)):
            outcome = ("Failed", "BackoffLimitExceeded", "Job has reached the specified backoff limit")
        elif deadline is not None and (now - started).total_seconds() >= deadline:
            outcome = ("Failed", "DeadlineExceeded", "Job was active longer than specified deadline")
        if outcome is not None:
            self._finish(job, status, active, succeeded, failed, outcome, now)
            return
        active = self._start_pods(job, active, succeeded, failed, pods, now)
        self._write(job, status, active, succeeded, failed)
        if deadline is not None:
            self.queue.add_after(key, max(0.05, deadline - (now - started).total_seconds() + 0.05))

    def _start_pods(self, job: Obj, active: list[Obj], succeeded: int, failed: int, pods: list[Obj],
                    now: datetime) -> list[Obj]:
        spec = job["spec"]
        wanted = min(int(spec.get("parallelism") or 1), int(spec.get("completions") or 1) - succeeded)
        missing = wanted - len(active)
        if missing <= 0:
            return active
        if failed:  # a replacement waits the back-off since the last failure
            last = max((t for p in pods if pod_phase(p) == "Failed" and (t := _finished_at(p))), default=None)
            wait = min(_BACKOFF_S * 2 ** (failed - 1), 360.0) * self.time_scale
            if last is not None and (now - last).total_seconds() < wait:
                self.queue.add_after((job["metadata"].get("namespace"), name_of(job)),
                                     wait - (now - last).total_seconds() + 0.05)
                return active
        for _ in range(missing):
            created = self.store.create(PODS, job["metadata"].get("namespace"), pod_from_job(job))
            self.events.event(job, "Normal", "SuccessfulCreate", f"Created pod: {name_of(created)}")
            active = active + [created]
        return active

    def _finish(self, job: Obj, status: Obj, active: list[Obj], succeeded: int, failed: int,
                outcome: tuple[str, str, str], now: datetime) -> None:
        kind, reason, message = outcome
        for pod in active:  # a finished Job leaves nothing running
            try:
                self.store.delete(PODS, pod["metadata"].get("namespace"), name_of(pod))
            except NotFound:
                pass
        interim = "SuccessCriteriaMet" if kind == "Complete" else "FailureTarget"
        status["conditions"] = [c for c in status.get("conditions") or [] if c.get("type") not in (interim, kind)]
        status["conditions"] += [_condition(interim, reason, message, now), _condition(kind, reason, message, now)]
        if kind == "Complete":
            status["completionTime"] = rfc3339(now)
            self.events.event(job, "Normal", "Completed", "Job completed")
        else:
            self.events.event(job, "Warning", reason, message)
        self._write(job, status, [], succeeded, failed)

    def _write(self, job: Obj, status: Obj, active: list[Obj], succeeded: int, failed: int) -> None:
        status = {k: v for k, v in status.items() if k not in ("active", "succeeded", "failed", "ready")}
        status.update({"active": len(active), "succeeded": succeeded, "failed": failed,
                       "ready": sum(1 for p in active if is_pod_ready(p)), "terminating": 0})
        status = {k: v for k, v in status.items() if v or k in ("ready", "terminating")}
        if status != (job.get("status") or {}):
            self.store.update_status(JOBS, job["metadata"].get("namespace"), name_of(job), status)
