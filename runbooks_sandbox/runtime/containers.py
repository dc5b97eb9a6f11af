"""One container of a pod: its environment, its process, its restarts and the status it reports.

The process is the simulated Veza service (``python -m runbooks_sandbox.workload``) bound to the
pod IP on the container's port. Environment values come from the pod spec the way the kubelet
resolves them (``value``, ``valueFrom`` secretKeyRef/configMapKeyRef/fieldRef, ``envFrom``,
``$(VAR)`` references); a missing Secret, ConfigMap or key raises :class:`ContainerConfigError`,
which the pod runtime reports as ``CreateContainerConfigError``.
"""
from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Protocol

from ..kube import now_rfc3339
from .logs import ContainerLog, follow_process
from .probes import Probe, ProbeState

__all__ = ["ConfigLookup", "ContainerConfigError", "ContainerRunner", "WorkloadCommand", "resolve_env"]

Obj = dict[str, Any]
DEFAULT_PORT = 8080  # the workload's port when a container declares none
_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_.-]*)\)")


class ContainerConfigError(ValueError):
    """The container's configuration cannot be resolved (missing Secret/ConfigMap or key)."""


class ConfigLookup(Protocol):
    """Where a container's Secrets and ConfigMaps come from: the real API server, for the node agent
    (:mod:`runbooks_sandbox.node.config`). Returns a Secret's decoded or a ConfigMap's data, None
    when the object does not exist."""

    def __call__(self, kind: str, namespace: str, name: str) -> dict[str, str] | None: ...


def decoded_data(kind: str, obj: Obj) -> dict[str, str]:
    """A Secret's data base64-decoded, or a ConfigMap's data, as the container sees it."""
    if kind == "Secret":
        return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (obj.get("data") or {}).items()}
    return dict(obj.get("data") or {})


def _key_ref(lookup: ConfigLookup, namespace: str, kind: str, ref: Obj) -> str | None:
    data = lookup(kind, namespace, ref.get("name", ""))
    optional = bool(ref.get("optional"))
    if data is None:
        if optional:
            return None
        raise ContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
    if ref.get("key") not in data:
        if optional:
            return None
        raise ContainerConfigError(f"couldn't find key {ref.get('key')} in {kind} {namespace}/{ref.get('name', '')}")
    return data[ref["key"]]


def _field_ref(pod: Obj, path: str) -> str:
    meta, status = pod["metadata"], pod.get("status") or {}
    simple = {
        "metadata.name": meta.get("name"), "metadata.namespace": meta.get("namespace"),
        "metadata.uid": meta.get("uid"), "spec.nodeName": pod.get("spec", {}).get("nodeName"),
        "spec.serviceAccountName": pod.get("spec", {}).get("serviceAccountName"),
        "status.podIP": status.get("podIP"), "status.hostIP": status.get("hostIP"),
    }
    if path in simple:
        return simple[path] or ""
    found = re.fullmatch(r"metadata\.(labels|annotations)\['([^']+)'\]", path)
    if found:
        return (meta.get(found.group(1)) or {}).get(found.group(2), "")
    return ""


def resolve_env(lookup: ConfigLookup, pod: Obj, container: Obj) -> dict[str, str]:
    """The container's environment from its spec (envFrom first, then env, as the kubelet does)."""
    namespace = pod["metadata"]["namespace"]
    env: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        kind, ref = ("Secret", source["secretRef"]) if "secretRef" in source else ("ConfigMap", source.get("configMapRef") or {})
        data = lookup(kind, namespace, ref.get("name", ""))
        if data is None:
            if ref.get("optional"):
                continue
            raise ContainerConfigError(f'{kind.lower()} "{ref.get("name", "")}" not found')
        env.update({source.get("prefix", "") + k: v for k, v in data.items()})
    for var in container.get("env") or []:
        value: str | None
        source = var.get("valueFrom")
        if source is None:
            value = _REFERENCE.sub(lambda m: env.get(m.group(1), m.group(0)), var.get("value") or "")
        elif "secretKeyRef" in source:
            value = _key_ref(lookup, namespace, "Secret", source["secretKeyRef"])
        elif "configMapKeyRef" in source:
            value = _key_ref(lookup, namespace, "ConfigMap", source["configMapKeyRef"])
        elif "fieldRef" in source:
            value = _field_ref(pod, source["fieldRef"].get("fieldPath", ""))
        else:  # resourceFieldRef: the sandbox sets no resource limits
            value = ""
        if value is not None:
            env[var["name"]] = value
    return env


@dataclass(frozen=True)
class WorkloadCommand:
    """How container processes are started (the runtime's choice, the same for every pod)."""

    python: str = sys.executable
    catalog: str | None = None  # sandbox profile holding the image catalog
    access_log: bool = False  # one log line per request costs the whole sandbox CPU under load

    def argv(self, image: str, ip: str, port: int, fault_file: Path, drain_s: float,
             behaviour: dict[str, Any] | None = None) -> list[str]:
        argv = [self.python, "-m", "runbooks_sandbox.workload", "--image", image, "--host", ip,
                "--port", str(port), "--fault-file", str(fault_file), "--drain-timeout", f"{drain_s:g}"]
        if behaviour is not None:  # resolved already: the process need not load the catalog
            argv += ["--behaviour", json.dumps(behaviour, separators=(",", ":"))]
        if self.catalog:
            argv += ["--catalog", self.catalog]
        if not self.access_log:
            argv.append("--no-access-log")
        return argv


def base_environment() -> dict[str, str]:
    """What every container process inherits from the host: enough to run Python, no more.

    Real containers do not see the node's environment (tokens, KUBECONFIG...), so neither do ours.
    """
    keep = ("PATH", "LANG", "LC_ALL", "PYTHONPATH", "VIRTUAL_ENV", "RUNBOOKS_HOME", "TZ")
    return {k: os.environ[k] for k in keep if k in os.environ}


@dataclass
class ContainerRunner:
    """State of one container as the kubelet tracks it, plus its current process."""

    spec: Obj
    readiness_probe: Probe | None
    liveness_probe: Probe | None
    startup_probe: Probe | None = None  # until it succeeds, the other probes wait and started is False
    log: ContainerLog = field(default_factory=ContainerLog)
    process: subprocess.Popen[bytes] | None = None
    exit_code: int | None = None  # set by the log thread when the process ends
    restart_count: int = 0
    ever_started: bool = False
    container_id: str = ""
    image_id: str = ""
    started_at: str = ""
    started_mono: float = 0.0
    waiting: tuple[str, str] | None = ("ContainerCreating", "")  # (reason, message)
    terminated: Obj | None = None  # the current state when stopped and not restarting
    last_state: Obj = field(default_factory=dict)
    readiness: ProbeState | None = None
    liveness: ProbeState | None = None
    startup: ProbeState | None = None
    next_startup: float = 0.0
    next_readiness: float = 0.0
    next_liveness: float = 0.0
    retry_at: float = 0.0  # monotonic time of the next start attempt
    crash_backoff_s: float = 0.0
    pull_backoff_s: float = 0.0
    pull_failed_at: float | None = None

    @property
    def name(self) -> str:
        return self.spec["name"]

    @property
    def port(self) -> int:
        ports = self.spec.get("ports") or []
        return int(ports[0]["containerPort"]) if ports else DEFAULT_PORT

    @property
    def running(self) -> bool:
        return self.process is not None and self.exit_code is None

    @property
    def started(self) -> bool:
        """Running and past its startup probe (the kubelet's ``started``)."""
        return self.running and (self.startup is None or self.startup.ok)

    @property
    def ready(self) -> bool:
        return self.started and (self.readiness is None or self.readiness.ok)

    def launch(self, argv: list[str], env: dict[str, str], cwd: Path, on_exit: Callable[[], None]) -> None:
        """Start a new instance of the container process."""
        if self.ever_started:
            self.restart_count += 1
            self.log.new_instance()
        process = subprocess.Popen(
            argv, env=env, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a kill reaches anything it spawns
        )
        self.process, self.exit_code = process, None
        self.ever_started = True
        self.container_id = f"sandbox://{secrets.token_hex(32)}"
        self.started_at, self.started_mono = now_rfc3339(), time.monotonic()
        self.waiting, self.terminated = None, None
        self.readiness = ProbeState(self.readiness_probe, initially_ok=False) if self.readiness_probe else None
        self.liveness = ProbeState(self.liveness_probe, initially_ok=True) if self.liveness_probe else None
        self.startup = ProbeState(self.startup_probe, initially_ok=False) if self.startup_probe else None
        now = time.monotonic()
        self.next_startup = now + (self.startup_probe.initial_delay_s if self.startup_probe else 0)
        self.next_readiness = now + (self.readiness_probe.initial_delay_s if self.readiness_probe else 0)
        self.next_liveness = now + (self.liveness_probe.initial_delay_s if self.liveness_probe else 0)

        def exited(code: int) -> None:
            if self.process is process:  # not a later instance started after a liveness kill
                self.exit_code = code
            on_exit()

        follow_process(process, self.log, exited, self.name)

    def signal(self, sig: signal.Signals) -> None:
        if self.process is not None and self.exit_code is None:
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass

    def stop(self, grace_s: float) -> None:
        """SIGTERM, wait up to grace_s, then SIGKILL (blocking until the process is reaped)."""
        if self.process is None:
            return
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self.signal(signal.SIGKILL)
            self.process.wait()
        # The log thread sets exit_code a moment later; set it now so the caller sees it.
        self.exit_code = self.process.returncode

    def record_exit(self) -> Obj:
        """Turn the finished process into a terminated state (also returned) and forget it."""
        assert self.process is not None and self.exit_code is not None
        code = self.exit_code if self.exit_code >= 0 else 128 - self.exit_code  # killed by a signal
        state = {"exitCode": code, "reason": "Completed" if code == 0 else "Error",
                 "startedAt": self.started_at, "finishedAt": now_rfc3339(), "containerID": self.container_id}
        self.last_state = {"terminated": state}
        self.process = None
        return state

    def status(self) -> Obj:
        """This container's entry in pod.status.containerStatuses."""
        if self.running:
            state: Obj = {"running": {"startedAt": self.started_at}}
        elif self.waiting is not None:
            reason, message = self.waiting
            state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}
        else:
            state = {"terminated": self.terminated or {}}
        status: Obj = {
            "name": self.name, "image": self.spec.get("image", ""), "imageID": self.image_id,
            "ready": self.ready, "started": self.started, "restartCount": self.restart_count,
            "state": state, "lastState": self.last_state,
        }
        if self.container_id:
            status["containerID"] = self.container_id
        return status
