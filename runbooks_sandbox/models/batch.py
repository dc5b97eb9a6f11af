"""batch/v1 Jobs and CronJobs: resource types, defaulting and validation (as the API server does).

A Job gets the labels its pods carry (``batch.kubernetes.io/controller-uid``, ``job-name``...)
and a selector on its own uid unless ``manualSelector`` is set; backoffLimit 6, completions
and parallelism 1. A CronJob's schedule must parse (croniter, five fields or a macro such as
``@daily``); concurrencyPolicy Allow, history limits 3 successful / 1 failed.
"""
from __future__ import annotations

from typing import Any

from .api import ResourceType
from .defaults import Allocator, pod_spec
from .errors import Invalid

__all__ = ["JOBS", "CRONJOBS", "job", "validate_job", "cronjob", "validate_cronjob", "JOB_LABELS"]

Obj = dict[str, Any]
JOBS = ResourceType("batch", "v1", "jobs", "Job")
CRONJOBS = ResourceType("batch", "v1", "cronjobs", "CronJob")
JOB_LABELS = ("batch.kubernetes.io/controller-uid", "batch.kubernetes.io/job-name", "controller-uid", "job-name")
_POLICIES = ("Allow", "Forbid", "Replace")


def _job_spec(spec: Obj) -> None:
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    spec.setdefault("podReplacementPolicy", "TerminatingOrFailed")
    template = spec.setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    template.setdefault("spec", {}).setdefault("restartPolicy", "Never")  # before pod_spec's "Always"
    pod_spec(template["spec"])


def job(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    _job_spec(spec)
    template = spec["template"]
    if old is None:
        meta = obj["metadata"]
        if not spec.get("manualSelector"):
            labels = dict.fromkeys(JOB_LABELS[0::2], meta["uid"]) | dict.fromkeys(JOB_LABELS[1::2], meta["name"])
            template["metadata"].setdefault("labels", {}).update(labels)
            spec["selector"] = {"matchLabels": {"batch.kubernetes.io/controller-uid": meta["uid"]}}
            meta.setdefault("labels", {}).update({k: v for k, v in labels.items() if k.startswith("batch.")})
        obj["status"] = {}
    else:
        # The selector and the pod template of a Job are immutable once created.
        spec["selector"] = old["spec"].get("selector")


def validate_job(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    name, spec = obj["metadata"].get("name"), obj.get("spec", {})
    policy = spec["template"]["spec"].get("restartPolicy")
    if policy not in ("Never", "OnFailure"):
        raise Invalid.field("Job", name, "spec.template.spec.restartPolicy",
                            f'Unsupported value: "{policy}": supported values: "OnFailure", "Never"')
    if not spec["template"]["spec"].get("containers"):
        raise Invalid.field("Job", name, "spec.template.spec.containers", "Required value")
    for field in ("backoffLimit", "completions", "parallelism", "activeDeadlineSeconds"):
        value = spec.get(field)
        if value is not None and (not isinstance(value, int) or value < (1 if field == "activeDeadlineSeconds" else 0)):
            raise Invalid.field("Job", name, f"spec.{field}", f"Invalid value: {value}: must be a non-negative integer")


def cronjob(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("concurrencyPolicy", "Allow")
    spec.setdefault("suspend", False)
    spec.setdefault("successfulJobsHistoryLimit", 3)
    spec.setdefault("failedJobsHistoryLimit", 1)
    job_template = spec.setdefault("jobTemplate", {})
    job_template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    _job_spec(job_template.setdefault("spec", {}))
    if old is None:
        obj["status"] = {}


def validate_cronjob(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    from croniter import croniter

    name, spec = obj["metadata"].get("name"), obj.get("spec", {})
    if len(name or "") > 52:
        raise Invalid.field("CronJob", name, "metadata.name", "Invalid value: must be no more than 52 characters")
    schedule = spec.get("schedule")
    if not schedule or not isinstance(schedule, str) or not croniter.is_valid(schedule):
        raise Invalid.field("CronJob", name, "spec.schedule", f'Invalid value: "{schedule}": not a cron schedule')
    if spec.get("concurrencyPolicy") not in _POLICIES:
        raise Invalid.field("CronJob", name, "spec.concurrencyPolicy",
                            f'Unsupported value: "{spec.get("concurrencyPolicy")}": supported values: '
                            + ", ".join(f'"{p}"' for p in _POLICIES))
    zone = spec.get("timeZone")
    if zone:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise Invalid.field("CronJob", name, "spec.timeZone", f'Invalid value: "{zone}": unknown time zone') from None
    validate_job({"metadata": {"name": name}, "spec": spec["jobTemplate"]["spec"]}, None, alloc)
