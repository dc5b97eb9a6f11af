"""How the node agent runs its nodes and pods; the defaults suit drills and tests."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..runtime.logs import DEFAULT_MAX_LINES

__all__ = ["AgentSettings", "KUBELET_PORT", "node_names"]

KUBELET_PORT = 10250  # the kubelet's own port: each node listens on its own address, so all share it


def node_names(count: int, prefix: str = "sandbox-node") -> list[str]:
    """``sandbox-node-1`` ... ``sandbox-node-<count>``."""
    if count < 1:
        raise ValueError(f"a node agent needs at least one node, not {count}")
    return [f"{prefix}-{i}" for i in range(1, count + 1)]


@dataclass(frozen=True)
class AgentSettings:
    """One node agent: its nodes, what they offer the scheduler, and the kubelet's clocks."""

    nodes: tuple[str, ...] = field(default_factory=lambda: tuple(node_names(2)))  # Node names it registers
    # Multiplies what the kubelet times from pod specs (probe delays, periods and timeouts,
    # grace periods, preStop sleeps) and its back-offs: 0.1 turns the guide's 10 s readiness
    # delay into 1 s, so drills run the guide's manifests unchanged and still finish quickly.
    # The control plane's clocks (progressDeadlineSeconds, node grace periods) are not scaled.
    time_scale: float = 0.1
    cpu: str = "4"  # capacity and allocatable per node (the scheduler fits requests against it)
    memory: str = "8Gi"
    pods: str = "110"  # the kubelet's default maxPods
    kubelet_port: int = KUBELET_PORT  # status.daemonEndpoints.kubeletEndpoint.Port: where the apiserver dials
    lease_duration_s: int = 40  # the kubelet's default; it renews every quarter of it
    status_report_s: float = 60.0  # how often a node's conditions are re-sent though nothing changed
    catalog: str | None = None  # sandbox profile with the image catalog (default parameters/sandbox.yaml)
    access_log: bool = False  # workload logs every request (costly under load) or only start-up/faults/5xx
    log_lines: int = DEFAULT_MAX_LINES  # lines kept per container instance
    min_probe_timeout_s: float = 1.0  # scaled probe timeouts never go below this (a busy 2-core machine)
    config_retry_s: float = 1.0  # how often a pod blocked on a missing Secret/ConfigMap retries
    backoff_initial_s: float = 10.0  # the kubelet's crash/pull back-off start (scaled)
    backoff_max_s: float = 300.0  # and its ceiling (scaled)
    stop_grace_s: float = 2.0  # SIGTERM-to-SIGKILL time for pods when the agent itself stops

    @property
    def renew_interval_s(self) -> float:
        """The kubelet renews its Lease every quarter of its duration (10 s of 40 s)."""
        return self.lease_duration_s / 4
