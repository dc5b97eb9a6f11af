"""What a pod worker needs from the node that hosts it.

:class:`~.podworker.PodWorker` depends on this Protocol rather than on :class:`~.pods.NodePods`,
which creates the workers: the node knows its workers, a worker knows only this seam (and the
two modules do not import each other).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from ..kube import ClusterStore
from ..network import ClusterNetwork
from ..runtime.events import EventRecorder
from ..workload import ImageCatalog
from .identity import NodeIdentity
from .settings import AgentSettings

__all__ = ["NodeHost"]


class NodeHost(Protocol):
    """One node as its pod workers see it."""

    settings: AgentSettings
    store: ClusterStore  # the API server, as this node
    identity: NodeIdentity
    network: ClusterNetwork  # pod addresses come from its pod range
    catalog: ImageCatalog
    events: EventRecorder
    pulled_images: set[str]  # images "pulled" on this node (for the Pulled event's wording)
    state_dir: Path  # the node's pod folders (fault files)

    @property
    def name(self) -> str: ...

    def track(self, process: Any) -> None:
        """Remember a started container process (so that stop() can kill what is left)."""

    def untrack(self, process: Any) -> None: ...

    def forget(self, worker: Any) -> None:
        """The worker has ended: drop it."""
