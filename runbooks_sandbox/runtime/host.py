"""What a pod worker needs from the runtime that hosts it, and the runtime's settings.

:class:`~runbooks_sandbox.runtime.podworker.PodWorker` depends on the small :class:`PodHost`
Protocol rather than on :class:`~runbooks_sandbox.runtime.pods.ProcessRuntime`, which creates the
workers: the runtime knows its workers, a worker knows only this seam.
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from ..models.api import Store
from ..workload import ImageCatalog
from .events import EventRecorder
from .ipam import AddressPool
from .logs import DEFAULT_MAX_LINES

__all__ = ["PodHost", "RuntimeSettings"]


@dataclass(frozen=True)
class RuntimeSettings:
    """How the runtime runs pods; the defaults suit drills and tests."""

    time_scale: float = 0.1  # multiplies probe delays/periods/timeouts, grace periods and back-offs
    # Loopback range pod IPs come from: a random /16 per sandbox, so that two sandboxes on one
    # machine (a drill beside a test run) do not hand out each other's just-freed addresses.
    pod_network: str = field(default_factory=lambda: f"127.{random.randrange(10, 64)}.0.0/16")
    catalog: str | None = None  # sandbox profile with the image catalog (default parameters/sandbox.yaml)
    access_log: bool = False  # workload logs every request (costly under load) or only start-up/faults/5xx
    log_lines: int = DEFAULT_MAX_LINES  # lines kept per container instance
    state_dir: str | None = None  # pod folders (fault files); a temporary folder when None
    min_probe_timeout_s: float = 1.0  # scaled probe timeouts never go below this
    config_retry_s: float = 1.0  # how often a pod blocked on a missing Secret/ConfigMap retries
    backoff_initial_s: float = 10.0  # kubelet's crash/pull back-off start (scaled)
    backoff_max_s: float = 300.0  # and its ceiling (scaled)
    stop_grace_s: float = 2.0  # SIGTERM-to-SIGKILL time when the runtime itself stops


class PodHost(Protocol):
    """The runtime as its pod workers see it."""

    settings: RuntimeSettings
    store: Store | None
    catalog: ImageCatalog | None
    events: EventRecorder | None
    addresses: AddressPool
    pulled_images: set[str]  # images "pulled" on this node (for the Pulled event's wording)
    state_dir: Path

    def track(self, process: Any) -> None:
        """Remember a started container process (so that stop() can kill what is left)."""

    def untrack(self, process: Any) -> None: ...

    def forget(self, worker: Any) -> None:
        """The worker has ended: drop it."""

    def remove_finalizer(self, namespace: str, name: str) -> None:
        """Drop the kubelet's finalizer from a pod (completing its deletion)."""
