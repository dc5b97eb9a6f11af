"""Container lifecycle hooks the node agent runs: preStop, before a container is signalled.

The kubelet runs a container's ``lifecycle.preStop`` handler when the container is to stop
(pod deletion), within the pod's grace period, and sends SIGTERM only when the hook returns.
Supported: ``sleep`` (the usual way to let Endpoints drop a pod before it stops accepting
connections) and ``httpGet`` (a request to the container's own address). ``exec`` needs a
container filesystem the sandbox does not have: it is reported as a failed hook and skipped,
as a kubelet reports a hook that fails.
"""
from __future__ import annotations

import time
from typing import Any, Callable

from ..runtime.containers import ContainerRunner
from ..runtime.probes import Probe

__all__ = ["run_pre_stop"]

Recorder = Callable[..., None]  # PodWorker._event(reason, message, container, warning=...)


def run_pre_stop(c: ContainerRunner, ip: str, deadline: float, time_scale: float, event: Recorder) -> None:
    """Run ``c``'s preStop hook, giving up at ``deadline`` (monotonic): the grace period bounds it."""
    hook: dict[str, Any] = (c.spec.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in hook:
        seconds = float((hook["sleep"] or {}).get("seconds", 0)) * time_scale
        time.sleep(max(0.0, min(seconds, deadline - time.monotonic())))
    elif "httpGet" in hook:
        remaining = max(0.1, deadline - time.monotonic())
        probe = Probe.from_spec({"httpGet": hook["httpGet"], "timeoutSeconds": remaining}, c.spec, 1.0, 0.1)
        assert probe is not None
        result = probe.run(hook["httpGet"].get("host") or ip)
        if not result.ok:
            event("FailedPreStopHook", f"PreStopHook failed: {result.message}", c, warning=True)
    elif hook:
        kinds = ", ".join(sorted(hook))
        event("FailedPreStopHook", f"PreStopHook failed: {kinds} hooks are not supported by the sandbox's nodes",
              c, warning=True)
