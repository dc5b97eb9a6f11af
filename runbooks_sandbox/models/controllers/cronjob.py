"""The CronJob controller: a Job per schedule time, concurrency policy, history limits.

As pkg/controller/cronjob (v2): the most recent schedule time after ``lastScheduleTime`` (or
the CronJob's creation) that has passed starts a Job named ``<cronjob>-<minutes since epoch>``
from ``jobTemplate`` (unless ``startingDeadlineSeconds`` says it is too late, or the CronJob is
suspended); ``Forbid`` skips a run while one is active, ``Replace`` deletes the active ones
first. Finished Jobs beyond ``successfulJobsHistoryLimit`` / ``failedJobsHistoryLimit`` are
deleted oldest first (their pods with them). ``status.active`` lists the running Jobs,
including one started by hand (``kubectl create job NAME --from=cronjob/CJ`` makes it owned
by the CronJob); ``lastScheduleTime`` and ``lastSuccessfulTime`` follow. The next sync is
queued for the next schedule time.
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Hashable

from ..api import Store, StoreEvent
from ..batch import CRONJOBS, JOBS
from ..errors import AlreadyExists, NotFound
from .events import EventRecorder
from .job import job_finished
from .meta import Obj, clone_obj, controller_of, controller_ref, is_controlled_by, is_terminating, name_of, \
    parse_time, rfc3339, uid_of, utcnow
from .queue import WorkQueue

__all__ = ["CronJobController", "most_recent_schedule", "next_schedule"]

SCHEDULED_AT = "batch.kubernetes.io/cronjob-scheduled-timestamp"


def _zone(cronjob: Obj) -> timezone | object:
    name = cronjob["spec"].get("timeZone")
    if not name:
        return timezone.utc
    from zoneinfo import ZoneInfo

    return ZoneInfo(name)


def most_recent_schedule(schedule: str, since: datetime, now: datetime, zone: object = timezone.utc) -> datetime | None:
    """The latest schedule time in (since, now], or None when none has come yet."""
    from croniter import croniter

    latest = croniter(schedule, now.astimezone(zone), ret_type=datetime).get_prev(datetime)  # type: ignore[arg-type]
    if croniter.match(schedule, now.astimezone(zone)) and now.astimezone(zone).second == 0:  # type: ignore[arg-type]
        latest = now.astimezone(zone)  # type: ignore[arg-type]
    return latest.astimezone(timezone.utc) if latest > since else None


def next_schedule(schedule: str, after: datetime, zone: object = timezone.utc) -> datetime:
    from croniter import croniter

    following = croniter(schedule, after.astimezone(zone), ret_type=datetime).get_next(datetime)  # type: ignore[arg-type]
    return following.astimezone(timezone.utc)


def job_from_cronjob(cronjob: Obj, scheduled: datetime) -> Obj:
    template = cronjob["spec"]["jobTemplate"]
    meta = template.get("metadata") or {}
    annotations = dict(meta.get("annotations") or {}) | {SCHEDULED_AT: scheduled.strftime("%Y-%m-%dT%H:%M:%SZ")}
    return {
        "apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": f"{name_of(cronjob)}-{int(scheduled.timestamp()) // 60}",
                     "namespace": cronjob["metadata"].get("namespace"), "labels": dict(meta.get("labels") or {}),
                     "annotations": annotations, "ownerReferences": [controller_ref(cronjob)]},
        "spec": clone_obj(template.get("spec") or {}),
    }


class CronJobController:
    name = "cronjob-controller"

    def __init__(self, store: Store, queue: WorkQueue) -> None:
        self.store = store
        self.queue = queue
        self.events = EventRecorder(store, self.name)

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        rt, obj = event.resource, event.object
        if rt == CRONJOBS:
            return [(obj["metadata"].get("namespace"), name_of(obj))]
        if rt == JOBS:
            ref = controller_of(obj)
            if ref and ref.get("kind") == "CronJob":
                return [(obj["metadata"].get("namespace"), ref["name"])]
        return []

    def all_keys(self) -> list[Hashable]:
        return [(c["metadata"].get("namespace"), name_of(c)) for c in self.store.list(CRONJOBS)[0]]

    def sync(self, key: Hashable) -> None:
        namespace, name = key  # type: ignore[misc]
        try:
            cronjob = self.store.get(CRONJOBS, namespace, name)
        except NotFound:
            return
        if is_terminating(cronjob):
            return
        now = utcnow()
        spec, status = cronjob["spec"], dict(cronjob.get("status") or {})
        zone = _zone(cronjob)
        jobs = [j for j in self.store.list(JOBS, namespace)[0] if is_controlled_by(j, uid_of(cronjob))]
        if not spec.get("suspend"):
            since = parse_time(status.get("lastScheduleTime")) or parse_time(cronjob["metadata"]["creationTimestamp"])
            assert since is not None
            due = most_recent_schedule(spec["schedule"], since, now, zone)
            if due is not None:
                jobs = self._run(cronjob, jobs, due, now, status)
        self._collect_history(cronjob, jobs, status)
        self._write(cronjob, status)
        if not spec.get("suspend"):
            upcoming = next_schedule(spec["schedule"], now, zone)
            self.queue.add_after(key, max(0.05, (upcoming - utcnow()).total_seconds() + 0.05))

    def _run(self, cronjob: Obj, jobs: list[Obj], due: datetime, now: datetime, status: Obj) -> list[Obj]:
        """Start the Job for schedule time ``due`` unless too late or forbidden; returns the jobs."""
        spec = cronjob["spec"]
        deadline = spec.get("startingDeadlineSeconds")
        if deadline is not None and (now - due).total_seconds() > deadline:
            self.events.event(cronjob, "Warning", "MissSchedule",
                              f"Missed scheduled time to start a job: {rfc3339(due)}")
            status["lastScheduleTime"] = rfc3339(due)
            return jobs
        running = [j for j in jobs if not job_finished(j) and not is_terminating(j)]
        policy = spec.get("concurrencyPolicy", "Allow")
        if running and policy == "Forbid":
            self.events.event(cronjob, "Normal", "JobAlreadyActive",
                              "Not starting job because prior execution is running and concurrency policy is Forbid")
            return jobs  # lastScheduleTime stays: the run starts once the active one is done, if still due
        if running and policy == "Replace":
            for job in running:
                self._delete(job, "SuccessfulDelete", f"Deleted job {name_of(job)}", cronjob)
            jobs = [j for j in jobs if j not in running]
        try:
            created = self.store.create(JOBS, cronjob["metadata"].get("namespace"), job_from_cronjob(cronjob, due))
            self.events.event(cronjob, "Normal", "SuccessfulCreate", f"Created job {name_of(created)}")
            jobs = jobs + [created]
        except AlreadyExists:
            pass  # this schedule time already has its Job
        status["lastScheduleTime"] = rfc3339(due)
        return jobs

    def _collect_history(self, cronjob: Obj, jobs: list[Obj], status: Obj) -> None:
        spec = cronjob["spec"]
        finished = sorted((j for j in jobs if job_finished(j)),
                          key=lambda j: (j.get("status") or {}).get("startTime") or j["metadata"]["creationTimestamp"])
        for kind, limit in (("Complete", spec.get("successfulJobsHistoryLimit", 3)),
                            ("Failed", spec.get("failedJobsHistoryLimit", 1))):
            of_kind = [j for j in finished if job_finished(j) == kind]
            for job in of_kind[:max(0, len(of_kind) - int(limit if limit is not None else 0))]:
                self._delete(job, "SuccessfulDelete", f"Deleted job {name_of(job)}", cronjob)
                jobs.remove(job)
        succeeded = [(j.get("status") or {}).get("completionTime") for j in finished if job_finished(j) == "Complete"]
        if any(succeeded):
            status["lastSuccessfulTime"] = max(s for s in succeeded if s)
        active = [j for j in jobs if not job_finished(j) and not is_terminating(j)]
        status["active"] = [{"kind": "Job", "namespace": j["metadata"].get("namespace"), "name": name_of(j),
                             "uid": uid_of(j), "apiVersion": "batch/v1",
                             "resourceVersion": j["metadata"].get("resourceVersion")} for j in active]
        if not status["active"]:
            del status["active"]

    def _delete(self, job: Obj, reason: str, message: str, cronjob: Obj) -> None:
        try:
            self.store.delete(JOBS, job["metadata"].get("namespace"), name_of(job))
            self.events.event(cronjob, "Normal", reason, message)
        except NotFound:
            pass

    def _write(self, cronjob: Obj, status: Obj) -> None:
        if status != (cronjob.get("status") or {}):
            self.store.update_status(CRONJOBS, cronjob["metadata"].get("namespace"), name_of(cronjob), status)

