"""Scheduled runbooks: a Kubernetes CronJob that runs a runbook headless inside the cluster.

The guide's recurring procedures ("restores tested monthly", a nightly health check) are run by
Kubernetes, not by a home-made scheduler: ``runbook schedule NOTEBOOK --env ENV --cron C`` writes
a CronJob whose pods run the project's runner image (``<registry>/veza-runbooks:v<version>``:
this project, its notebooks and ``runbook`` on the PATH) with ``runbook run NOTEBOOK --env ENV
-p ...``, so each run is papermill plus the seal and lands, like any run, in the profile's
records (``RUNBOOKS_RECORDS_URL``, else ``records.url``). Everything is checked before anything
is written: the notebook exists and declares every ``-p``, the values convert to the declared
types, the cron expression parses, the profile loads.

Choices a reviewer may ask about: ``concurrencyPolicy: Forbid`` (two runs of one runbook would
contend for its lock), ``backoffLimit: 0`` (a failed runbook is not retried blindly: its record
says why and a person decides), ``startingDeadlineSeconds`` (a run missed by more than an hour
is skipped, not run late), UTC unless told otherwise. The runner's credentials (VAULT_TOKEN, a
kubeconfig...) come from the optional Secret ``veza-runbooks-<env>`` in the namespace.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from ..errors import ParameterError
from ..config.paths import project_home

__all__ = ["RUNNER_IMAGE", "runbook_cronjob", "apply_cronjob", "cronjob_name"]

RUNNER_IMAGE = "veza-runbooks"
_NAME_LIMIT = 52  # a CronJob name leaves 11 characters for its Jobs' suffix


def cronjob_name(notebook: Path, env: str) -> str:
    """``runbook-<notebook>-<env>`` as a DNS label of at most 52 characters."""
    raw = f"runbook-{notebook.stem}-{env}".lower()
    name = re.sub(r"[^a-z0-9-]+", "-", raw).strip("-")
    return name[:_NAME_LIMIT].rstrip("-")


def _runner_image(home: Path) -> str:
    from ..config.version import __version__
    from ..config.profiles import load_catalog

    return f"{load_catalog(home).image_repository}/{RUNNER_IMAGE}:v{__version__}"


def _notebook_path(notebook: Path, home: Path) -> str:
    """The notebook as the runner image sees it: relative to the project (its working directory)."""
    resolved = notebook if notebook.is_absolute() else (Path.cwd() / notebook)
    try:
        return resolved.resolve().relative_to(home.resolve()).as_posix()
    except ValueError:
        raise ParameterError(f"{notebook} is not part of the project ({home}): the runner image holds only "
                             "the project's notebooks") from None


def _check_cron(cron: str, time_zone: str) -> None:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    from croniter import croniter

    if not croniter.is_valid(cron) or len(cron.split()) not in (1, 5):
        raise ParameterError(f"--cron {cron!r} is not a cron schedule (five fields, e.g. '0 3 1 * *', or @daily)")
    try:
        ZoneInfo(time_zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ParameterError(f"--time-zone {time_zone!r} is not a time zone (e.g. Etc/UTC, Europe/Paris)") from None


def _container_env(env: str, home: Path, profile_text: str, records_url: str) -> list[dict[str, Any]]:
    values = [{"name": "RUNBOOKS_RECORDS_URL", "value": records_url}]
    if "${sandbox:" in profile_text:
        # The sandbox profile reads the live sandbox's values (addresses, its dev token) from this file.
        path = os.environ.get("RUNBOOKS_SANDBOX_ENV") or str(home / ".sandbox" / "env")
        values.append({"name": "RUNBOOKS_SANDBOX_ENV", "value": str(Path(path).resolve())})
        # The sandbox's pods run on this machine: a job keys the ledger with the operator's key file
        # (as production's jobs share Vault's transit key), or `records verify` here could not
        # check the lines it writes ("made with key file:…, which this machine does not have").
        key = os.environ.get("RUNBOOKS_LEDGER_KEY")
        if key:
            values.append({"name": "RUNBOOKS_LEDGER_KEY", "value": str(Path(key).expanduser().resolve())})
    return values


def runbook_cronjob(notebook: str | Path, env: str, cron: str, parameters: list[tuple[str, str]] | None = None, *,
                    time_zone: str = "Etc/UTC", deadline_s: int = 3600, name: str | None = None,
                    home: Path | None = None) -> dict[str, Any]:
    """The CronJob (a dict, as ``kubectl apply`` takes it) that runs ``notebook`` against ``env`` on ``cron``.

    Raises ParameterError (nothing written) for a missing notebook, an undeclared or ill-typed
    parameter, a bad cron expression or time zone, a bad profile.
    """
    from ..config.profiles import load_profile
    from .runner import notebook_parameters, resolve_parameters

    home = home or project_home()
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ParameterError(f"no such notebook: {notebook}")
    relative = _notebook_path(notebook, home)
    given = list(parameters or [])
    resolve_parameters(notebook_parameters(notebook), given + [("env", env)], {})
    _check_cron(cron, time_zone)
    if deadline_s <= 0:
        raise ParameterError(f"--deadline must be a positive number of seconds, got {deadline_s}")
    profile = load_profile(env, home)
    profile_text = (home / "parameters" / f"{env}.yaml").read_text()
    records_url = os.environ.get("RUNBOOKS_RECORDS_URL") or profile.records.url
    name = name or cronjob_name(notebook, env)
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) or len(name) > _NAME_LIMIT:
        raise ParameterError(f"--name {name!r} must be a DNS label of at most {_NAME_LIMIT} characters")
    command = ["runbook", "run", relative, "--env", env]
    for key, value in given:
        command += ["-p", key, value]
    labels = {"app.kubernetes.io/name": RUNNER_IMAGE, "app.kubernetes.io/component": "scheduled-runbook",
              "veza.app/runbook": notebook.stem, "veza.app/env": env}
    container = {
        "name": "runbook", "image": _runner_image(home), "imagePullPolicy": "IfNotPresent", "command": command,
        "env": _container_env(env, home, profile_text, records_url),
        "envFrom": [{"secretRef": {"name": f"veza-runbooks-{env}", "optional": True}}],
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    return {
        "apiVersion": "batch/v1", "kind": "CronJob",
        "metadata": {"name": name, "namespace": profile.cluster.namespace, "labels": labels,
                     "annotations": {"veza.app/notebook": relative,
                                     "veza.app/parameters": json.dumps(dict(given), sort_keys=True)}},
        "spec": {
            "schedule": cron, "timeZone": time_zone, "concurrencyPolicy": "Forbid",
            "startingDeadlineSeconds": 3600, "successfulJobsHistoryLimit": 3, "failedJobsHistoryLimit": 3,
            "jobTemplate": {
                "metadata": {"labels": dict(labels)},
                "spec": {"backoffLimit": 0, "activeDeadlineSeconds": deadline_s,
                         "template": {"metadata": {"labels": dict(labels)},
                                      "spec": {"restartPolicy": "Never", "containers": [container]}}},
            },
        },
    }


def apply_cronjob(cronjob: dict[str, Any], env: str, *, dry_run: bool = False, home: Path | None = None) -> str:
    """Create or replace the CronJob in the profile's cluster (after its identity check); ``created`` or ``configured``.

    ``dry_run`` sends ``dryRun=All``: the API server validates it and stores nothing.
    """
    from ..errors import NotFound
    from .cluster_identity import check_cluster_identity
    from ..platform.kube import api_client, call, resource_path, translate
    from ..config.profiles import load_profile

    profile = load_profile(env, home)
    check_cluster_identity(profile)
    namespace, name = cronjob["metadata"]["namespace"], cronjob["metadata"]["name"]
    query = {"dryRun": "All"} if dry_run else None
    api = api_client(profile.cluster)
    collection = resource_path("/apis/batch/v1", "namespaces", namespace, "cronjobs")
    try:
        try:
            with translate(f"read cronjob {name}"):
                current = call(api, "GET", resource_path(collection, name))
        except NotFound:
            current = None
        with translate(f"apply cronjob {name}"):
            if current is None:
                call(api, "POST", collection, body=cronjob, query=query)
                return "created"
            body = {**cronjob, "metadata": {**cronjob["metadata"],
                                            "resourceVersion": current["metadata"]["resourceVersion"]}}
            call(api, "PUT", resource_path(collection, name), body=body, query=query)
            return "configured"
    finally:
        api.close()
