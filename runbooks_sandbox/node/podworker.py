"""One pod on one node, against the real API server: start, probe, restart with back-off, terminate.

The kubelet's part, as the real control plane expects it; the container, probe and log pieces
are :mod:`runbooks_sandbox.runtime`'s (``containers``, ``probes``, ``logs``):

- the scheduler binds pods (``spec.nodeName``); the worker only runs pods already bound to its node;
- the pod's address comes from the cluster network's pod range and is put on the namespace's
  ``lo`` (:meth:`~runbooks_sandbox.network.ClusterNetwork.allocate_pod_ip`); the container process
  (started inside that namespace, where the agent runs) listens on it;
- status goes out as a merge patch of the ``status`` subresource, and ``hostIP`` is the node's;
- deletion is the API server's graceful deletion: the pod gets a ``deletionTimestamp`` and
  ``deletionGracePeriodSeconds``; the worker reports it not ready, runs each container's preStop
  hook, sends SIGTERM, waits out the grace period, sends SIGKILL, and then deletes the pod with
  ``gracePeriodSeconds=0`` (what the kubelet does), which removes it. No finalizer is involved.
"""
from __future__ import annotations

import hashlib
import logging
import signal
import shutil
import threading
import time
from pathlib import Path
from typing import Any

from ..kube import PODS, now_rfc3339
from ..kube.errors import ApiError, BadRequest, NotFound, Unreachable
from ..network.errors import NetworkError
from ..runtime.containers import ContainerConfigError, ContainerRunner, WorkloadCommand, base_environment, resolve_env
from ..loopback import can_bind
from ..runtime.logs import ContainerLog
from ..runtime.probes import Probe
from ..runtime.runner_image import RUNNER_IMAGE_NAME, CommandNotFound, is_runner_image, pull_runner_image, runner_process
from ..workload import ImagePullError
from .config import cluster_lookup
from .host import NodeHost
from .lifecycle import run_pre_stop

__all__ = ["PodWorker"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
_HEARTBEAT_S = 1.0  # the longest the loop sleeps without a reason: a safety net, not a timer
_PULL_BACKOFF_AFTER_S = 0.5  # ErrImagePull shows this long before ImagePullBackOff
_API_ERRORS = (ApiError, Unreachable)


def _sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


class PodWorker:
    """The kubelet for one pod on one node (module doc); created and driven by :class:`~.pods.NodePods`."""

    def __init__(self, node: NodeHost, pod: Obj) -> None:
        self.node = node
        self.settings = node.settings
        meta = pod["metadata"]
        self.uid, self.namespace, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.pod = pod
        self.created = time.monotonic()
        scale, floor = self.settings.time_scale, self.settings.min_probe_timeout_s
        self.containers = [
            ContainerRunner(c, Probe.from_spec(c.get("readinessProbe"), c, scale, floor),
                            Probe.from_spec(c.get("livenessProbe"), c, scale, floor),
                            Probe.from_spec(c.get("startupProbe"), c, scale, floor),
                            log=ContainerLog(self.settings.log_lines))
            for c in pod.get("spec", {}).get("containers") or []
        ]
        self.command = WorkloadCommand(catalog=self.settings.catalog, access_log=self.settings.access_log)
        self.ip: str | None = None
        self.folder: Path = node.state_dir / self.namespace / f"{self.name}-{self.uid[:8]}"
        self.fault_file = self.folder / "fault.json"
        self.thread = threading.Thread(target=self._run, name=f"pod-{self.namespace}/{self.name}", daemon=True)
        self._wake = threading.Condition()
        self._woken = False
        self._deleting = False
        self._gone = False
        self._stopping = False
        self._terminating = False
        self._start_time: str | None = None
        self._transitions: dict[str, tuple[str, str]] = {}  # condition type -> (status, since)
        self._published: Obj | None = None

    # --- called from other threads ---------------------------------------------------------

    def observe(self, pod: Obj, *, deleting: bool, gone: bool) -> None:
        """The informer's latest object; wakes the loop only for a deletion."""
        with self._wake:
            self.pod = pod
            if deleting or gone:
                self._deleting, self._gone = True, self._gone or gone
                self._woken = True
                self._wake.notify()

    def request_stop(self) -> None:
        """The agent stops: stop the containers (quickly) and leave the pod object as it is."""
        with self._wake:
            self._stopping = True
            self._woken = True
            self._wake.notify()

    def wake(self) -> None:
        with self._wake:
            self._woken = True
            self._wake.notify()

    def container(self, name: str | None) -> ContainerRunner:
        """A container by name; the only one when name is None."""
        if name is None and len(self.containers) == 1:
            return self.containers[0]
        for runner in self.containers:
            if runner.name == name:
                return runner
        raise BadRequest(f"container {name} is not valid for pod {self.name}")

    # --- the loop --------------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._admit():
                self._loop()
        except Exception:  # a bug here must not take the node down; the pod just stops
            log.exception("pod %s/%s: node agent error", self.namespace, self.name)
            self._stop_containers(self.settings.stop_grace_s)
        finally:
            if self.ip is not None and not self._stopping:
                # Kept when the agent stops: the pod still exists and gets it back at the next start.
                self.node.network.release_pod_ip(self.ip)
            shutil.rmtree(self.folder, ignore_errors=True)
            self.node.events.forget(self.uid)
            self.node.forget(self)

    def _loop(self) -> None:
        while True:
            with self._wake:
                if not self._woken:
                    self._wake.wait(max(0.0, self._next_due() - time.monotonic()))
                self._woken = False
                stopping, deleting = self._stopping, self._deleting
            if stopping:
                self._stop_containers(self.settings.stop_grace_s)
                return
            if deleting:
                self._terminate()
                return
            for runner in self.containers:
                self._sync(runner)
            self._publish()

    def _next_due(self) -> float:
        due = time.monotonic() + _HEARTBEAT_S
        for c in self.containers:
            if c.running:
                for probe, at in ((c.startup_probe, c.next_startup), (c.readiness_probe, c.next_readiness),
                                  (c.liveness_probe, c.next_liveness)):
                    if probe is not None:
                        due = min(due, at)
            elif c.terminated is None:
                due = min(due, c.retry_at)
                if c.pull_failed_at is not None and c.waiting and c.waiting[0] == "ErrImagePull":
                    due = min(due, c.pull_failed_at + _PULL_BACKOFF_AFTER_S)
        return due

    # --- admission: the pod's address -------------------------------------------------------

    def _admit(self) -> bool:
        if self.pod["metadata"].get("deletionTimestamp"):
            self._delete_pod()  # deleted before it ever ran: nothing to stop
            return False
        try:
            self.ip = self.node.network.allocate_pod_ip(f"{self.namespace}/{self.name}")
        except NetworkError as e:
            self._event("FailedCreatePodSandBox", f"Failed to create pod sandbox: {e}", warning=True)
            return False
        self.folder.mkdir(parents=True, exist_ok=True)
        self._start_time = now_rfc3339()
        self._publish()
        return True

    # --- one container ---------------------------------------------------------------------

    def _sync(self, c: ContainerRunner) -> None:
        now = time.monotonic()
        if c.process is not None and c.exit_code is not None:
            self._handle_exit(c, now)
        if c.process is None:
            if c.terminated is None and now >= c.retry_at:
                self._try_start(c, now)
            elif (c.waiting and c.waiting[0] == "ErrImagePull" and c.pull_failed_at is not None
                  and now >= c.pull_failed_at + _PULL_BACKOFF_AFTER_S):
                image = c.spec.get("image", "")
                c.waiting = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
                self._event("BackOff", f'Back-off pulling image "{image}"', c)
                self._event("Failed", "Error: ImagePullBackOff", c, warning=True)
            return
        self._probe(c, now)

    def _try_start(self, c: ContainerRunner, now: float) -> None:
        assert self.ip is not None
        catalog = self.node.catalog
        image = c.spec.get("image", "")
        runner = is_runner_image(image, catalog.repository)
        try:
            resolved = None if runner else catalog.resolve(image)
            if runner:
                pull_runner_image(image)  # an unknown tag fails to pull
        except ImagePullError as e:
            self._pull_failed(c, now, image, e)
            return
        self._pulled(c, image, *((resolved.repository, resolved.service) if resolved
                                 else (catalog.repository, RUNNER_IMAGE_NAME)))
        try:
            env = resolve_env(cluster_lookup(self.node.store), self.pod, c.spec)
        except ContainerConfigError as e:
            self._cannot_start(c, now, "CreateContainerConfigError", str(e))
            return
        if not can_bind(self.ip, c.port):
            self._cannot_start(c, now, "CreateContainerError", f"cannot listen on {self.ip}:{c.port}: address already in use")
            return
        identity = {"HOSTNAME": self.name, "POD_NAME": self.name, "POD_NAMESPACE": self.namespace,
                    "POD_IP": self.ip, "NODE_NAME": self.node.name}
        if runner:  # the project's runner image: its command line runs as a local process
            try:
                argv, env, cwd = runner_process(image, c.spec, {**identity, **env})
            except CommandNotFound as e:
                self._cannot_start(c, now, "CreateContainerError", str(e))
                return
            c.launch(argv, {**base_environment(), **env}, cwd, self.wake)
        else:
            assert resolved is not None
            behaviour = resolved.behaviour.model_dump(exclude={"description"}, by_alias=True)
            argv = self.command.argv(image, self.ip, c.port, self.fault_file, self._grace_s(), behaviour)
            c.launch(argv, {**base_environment(), **identity, **env}, self.folder, self.wake)
        assert c.process is not None
        self.node.track(c.process)
        c.pull_backoff_s, c.pull_failed_at = 0.0, None
        self._event("Created", f"Created container: {c.name}", c)
        self._event("Started", f"Started container {c.name}", c)

    def _cannot_start(self, c: ContainerRunner, now: float, reason: str, message: str) -> None:
        c.waiting, c.retry_at = (reason, message), now + self.settings.config_retry_s
        self._event("Failed", f"Error: {message}", c, warning=True)

    def _pull_failed(self, c: ContainerRunner, now: float, image: str, error: ImagePullError) -> None:
        self._event("Pulling", f'Pulling image "{image}"', c)
        self._event("Failed", f'Failed to pull image "{image}": {error}', c, warning=True)
        self._event("Failed", "Error: ErrImagePull", c, warning=True)
        c.pull_backoff_s = self._next_backoff(c.pull_backoff_s)
        c.waiting, c.pull_failed_at, c.retry_at = ("ErrImagePull", str(error)), now, now + c.pull_backoff_s

    def _pulled(self, c: ContainerRunner, image: str, repository: str, service: str) -> None:
        c.image_id = f"{repository}/{service}@sha256:{_sha(image)}"
        always = c.spec.get("imagePullPolicy") == "Always"
        if image in self.node.pulled_images and not always:
            self._event("Pulled", f'Container image "{image}" already present on machine', c)
            return
        self._event("Pulling", f'Pulling image "{image}"', c)
        self._event("Pulled", f'Successfully pulled image "{image}" in 1ms (1ms including waiting)', c)
        self.node.pulled_images.add(image)

    def _next_backoff(self, current: float) -> float:
        scale = self.settings.time_scale
        if not current:
            return self.settings.backoff_initial_s * scale
        return min(current * 2, self.settings.backoff_max_s * scale)

    def _handle_exit(self, c: ContainerRunner, now: float) -> None:
        """A container ended (crash, liveness kill): record it and plan the restart, as the kubelet does.

        The first restart is immediate; later ones wait until the back-off (10 s, 20 s, 40 s ...
        scaled, capped at 5 min) since the previous start has passed: CrashLoopBackOff.
        """
        ran_s = now - c.started_mono
        assert c.process is not None
        self.node.untrack(c.process)
        state = c.record_exit()
        policy = self.pod.get("spec", {}).get("restartPolicy", "Always")
        if policy == "Never" or (policy == "OnFailure" and state["exitCode"] == 0):
            c.terminated, c.waiting = state, None
            return
        if c.crash_backoff_s and ran_s > 2 * self.settings.backoff_max_s * self.settings.time_scale:
            c.crash_backoff_s = 0.0  # it ran long enough: forgive earlier crashes
        delay = max(0.0, c.started_mono + c.crash_backoff_s - now) if c.crash_backoff_s else 0.0
        backoff = c.crash_backoff_s
        c.crash_backoff_s = self._next_backoff(c.crash_backoff_s)
        c.retry_at = now + delay
        if delay > 0:
            c.waiting = ("CrashLoopBackOff", f"back-off {backoff:g}s restarting failed container={c.name} "
                                             f"pod={self.name}_{self.namespace}({self.uid})")
            self._event("BackOff", f"Back-off restarting failed container {c.name} in pod "
                                   f"{self.name}_{self.namespace}({self.uid})", c, warning=True)
        else:
            c.waiting = ("ContainerCreating", "")

    def _probe(self, c: ContainerRunner, now: float) -> None:
        """Startup first (the others wait for it), then liveness, then readiness."""
        assert self.ip is not None
        if c.startup is not None and c.startup_probe is not None and not c.startup.ok:
            if now < c.next_startup:
                return
            result = c.startup_probe.run(self.ip)
            c.next_startup = time.monotonic() + c.startup_probe.period_s
            if not result.ok:
                self._event("Unhealthy", f"Startup probe failed: {result.message}", c, warning=True)
                c.startup.record(result)
                if c.startup.consecutive_failures >= c.startup_probe.failure_threshold:
                    self._kill_unhealthy(c, "startup")
                return
            c.startup.record(result)
            if c.startup.ok:  # the other probes' initial delays count from here
                begun = time.monotonic()
                c.next_liveness = begun + (c.liveness_probe.initial_delay_s if c.liveness_probe else 0)
                c.next_readiness = begun + (c.readiness_probe.initial_delay_s if c.readiness_probe else 0)
            return
        if c.liveness is not None and c.liveness_probe is not None and now >= c.next_liveness:
            result = c.liveness_probe.run(self.ip)
            c.next_liveness = time.monotonic() + c.liveness_probe.period_s
            if not result.ok:
                self._event("Unhealthy", f"Liveness probe failed: {result.message}", c, warning=True)
            if c.liveness.record(result) and not c.liveness.ok:
                self._kill_unhealthy(c, "liveness")
                return
        if c.readiness is not None and c.readiness_probe is not None and now >= c.next_readiness:
            result = c.readiness_probe.run(self.ip)
            c.next_readiness = time.monotonic() + c.readiness_probe.period_s
            if not result.ok and c.exit_code is None:
                self._event("Unhealthy", f"Readiness probe failed: {result.message}", c, warning=True)
            c.readiness.record(result)

    def _kill_unhealthy(self, c: ContainerRunner, probe: str) -> None:
        self._event("Killing", f"Container {c.name} failed {probe} probe, will be restarted", c)
        c.stop(self._grace_s())
        self._handle_exit(c, time.monotonic())

    # --- termination -----------------------------------------------------------------------

    def _grace_s(self) -> float:
        """The grace period the deletion asked for (else the pod's own), scaled."""
        seconds = self.pod["metadata"].get("deletionGracePeriodSeconds")
        if seconds is None:
            seconds = self.pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
        return float(seconds if seconds is not None else 30) * self.settings.time_scale

    def _terminate(self) -> None:
        """Graceful deletion (module doc): not ready, preStop, SIGTERM, grace period, SIGKILL, delete."""
        grace_s = self._grace_s() if not self._gone else self.settings.stop_grace_s
        deadline = time.monotonic() + grace_s
        if not self._gone:
            self._terminating = True
            self._publish()  # Ready=False: the EndpointSlice controller drops the pod before the signal
        running = [c for c in self.containers if c.running]
        for c in running:
            self._event("Killing", f"Stopping container {c.name}", c)
        if not self._gone and self.ip is not None:
            hooks = [threading.Thread(target=run_pre_stop, args=(c, self.ip, deadline, self.settings.time_scale,
                                                                 self._event), daemon=True)
                     for c in running if (c.spec.get("lifecycle") or {}).get("preStop")]
            for hook in hooks:
                hook.start()
            for hook in hooks:
                hook.join(max(0.0, deadline - time.monotonic()))
        self._stop_containers(max(0.0, deadline - time.monotonic()))
        if not self._gone:
            for c in running:
                if c.process is not None:
                    c.terminated, c.waiting = c.record_exit(), None
            self._publish()
            self._delete_pod()

    def _delete_pod(self) -> None:
        """What the kubelet does once the containers are gone: delete with grace 0 (this pod, by uid)."""
        try:
            self.node.store.delete(PODS, self.namespace, self.name, grace_period_seconds=0,
                                   preconditions={"uid": self.uid})
        except NotFound:
            pass
        except _API_ERRORS as e:  # a Conflict: a new pod of this name already; or the API server is away
            log.warning("pod %s/%s: final delete failed: %s", self.namespace, self.name, e)

    def _stop_containers(self, grace_s: float) -> None:
        """SIGTERM every container at once, wait up to grace_s in all, SIGKILL what is left."""
        running = [c for c in self.containers if c.running]
        for c in running:
            c.signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for c in running:
            c.stop(max(0.0, deadline - time.monotonic()))
            assert c.process is not None
            self.node.untrack(c.process)

    # --- status ----------------------------------------------------------------------------

    def _condition(self, kind: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        previous = self._transitions.get(kind)
        if previous is None or previous[0] != status:
            previous = self._transitions[kind] = (status, now_rfc3339())
        condition: Obj = {"type": kind, "status": status, "lastProbeTime": None, "lastTransitionTime": previous[1]}
        if not ok and reason:
            condition.update(reason=reason, message=message)
        return condition

    def _scheduled(self) -> Obj:
        """The scheduler's PodScheduled condition, kept as it wrote it (a merge patch replaces the list)."""
        for condition in (self.pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled":
                return condition
        return self._condition("PodScheduled", True)

    def _phase(self) -> str:
        if self.containers and all(c.terminated is not None for c in self.containers):
            return "Succeeded" if all(c.terminated and c.terminated["exitCode"] == 0 for c in self.containers) else "Failed"
        if self.containers and all(c.ever_started for c in self.containers):
            return "Running"
        return "Pending"

    def status(self) -> Obj:
        """pod.status as a kubelet reports it."""
        statuses = [c.status() for c in self.containers]
        if self._terminating:
            for entry in statuses:
                entry["ready"] = False
        unready = [s["name"] for s in statuses if not s["ready"]]
        message = f"containers with unready status: [{' '.join(unready)}]"
        conditions = [
            self._condition("PodReadyToStartContainers", self.ip is not None),
            self._condition("Initialized", True),
            self._condition("Ready", not unready, "ContainersNotReady", message),
            self._condition("ContainersReady", not unready, "ContainersNotReady", message),
            self._scheduled(),
        ]
        host = self.node.identity.address
        status: Obj = {"phase": self._phase(), "conditions": conditions, "hostIP": host, "hostIPs": [{"ip": host}],
                       "startTime": self._start_time, "containerStatuses": statuses, "qosClass": _qos_class(self.pod)}
        if self.ip:
            status.update(podIP=self.ip, podIPs=[{"ip": self.ip}])
        return status

    def _publish(self) -> None:
        status = self.status()
        if status == self._published:
            return
        try:
            self.node.store.update_status(PODS, self.namespace, self.name, status)
            self._published = status
        except NotFound:
            pass  # deleted: the DELETED event is on its way to observe()
        except _API_ERRORS as e:  # the API server away: the next change (or heartbeat) sends it again
            log.warning("pod %s/%s: status update failed: %s", self.namespace, self.name, e)

    def _event(self, reason: str, message: str, c: ContainerRunner | None = None, *, warning: bool = False) -> None:
        field_path = f"spec.containers{{{c.name}}}" if c is not None else None
        self.node.events.record(self.pod, "Pod", reason, message, warning=warning, field_path=field_path)


def _qos_class(pod: Obj) -> str:
    """What the API server computed at creation (status.qosClass is immutable); BestEffort if absent."""
    return str((pod.get("status") or {}).get("qosClass") or "BestEffort")
