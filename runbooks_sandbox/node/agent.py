"""The node agent: N nodes of the sandbox cluster in one process, each doing a kubelet's job.

For each node :class:`NodeAgent` issues its identity (:mod:`.identity`), registers the Node and
keeps its Lease renewed (:mod:`.registration`), runs the pods bound to it (:mod:`.pods`) and
serves their logs to the API server (:mod:`.server`). The process must run inside the cluster's
network namespace (``python -m runbooks_sandbox.node``, started by :mod:`.process`): the API
server, the node addresses and the pod addresses all live there, and so do the container
processes it starts, which inherit it.

Why one process for all nodes, not one per node: each node is a few threads and an HTTPS
listener; a process per node would add ~40 MB of Python each on a 2-core machine for nothing
the sandbox uses. The nodes stay separate where it matters: their own client certs (the Node
authorizer confines each to its own pods), their own addresses and their own kubelet endpoints.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ..controlplane import ControlPlane
from ..kube import ClusterStore
from ..network import ClusterNetwork
from ..workload import load_image_catalog
from .identity import NodeIdentity, control_plane_version, node_identity
from .pods import NodePods
from .registration import NodeRegistration
from .server import KubeletServer
from .settings import AgentSettings

__all__ = ["NodeAgent", "Node"]

log = logging.getLogger(__name__)


class Node:
    """One node's parts, started and stopped together."""

    def __init__(self, identity: NodeIdentity, network: ClusterNetwork, settings: AgentSettings,
                 kubelet_version: str, state_dir: Path, catalog: Any) -> None:
        self.identity = identity
        self.store = ClusterStore(identity.credentials, user_agent=f"sandbox-node-agent/{identity.name}")
        self.registration = NodeRegistration(self.store, identity, settings, kubelet_version)
        self.pods = NodePods(self.store, identity, network, catalog, settings, state_dir)
        self.server = KubeletServer(identity, self.pods, self.store, settings.kubelet_port)

    def start(self) -> None:
        self.server.start()  # listening before the Node says where: the API server may call at once
        self.registration.register()
        self.registration.start()
        self.pods.start()

    def stop(self) -> None:
        """Pods first (their processes), then the heartbeat and the endpoint; the Node object stays,
        as a stopped kubelet's does (the node lifecycle controller marks it NotReady)."""
        self.pods.stop()
        self.registration.stop()
        self.server.stop()
        self.store.close()


class NodeAgent:
    """The nodes of the sandbox in ``state_dir`` (module doc). Run inside the cluster's namespace."""

    def __init__(self, state_dir: str | Path, settings: AgentSettings | None = None,
                 network: ClusterNetwork | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.settings = settings or AgentSettings()
        self.network = network or ClusterNetwork(self.state_dir)
        self.pods_dir = self.state_dir / "node" / "pods"
        self.nodes: list[Node] = []

    def start(self) -> "NodeAgent":
        """Register every node and start running its pods; on failure stop what started and raise."""
        control_plane = ControlPlane(self.state_dir, netns=self.network.name)
        version = control_plane_version(control_plane)
        catalog = load_image_catalog(self.settings.catalog)
        try:
            for name in self.settings.nodes:
                identity = node_identity(control_plane, self.network, name)
                node = Node(identity, self.network, self.settings, version, self.pods_dir, catalog)
                self.nodes.append(node)
                node.start()
                log.info("node %s registered at %s (kubelet %s)", name, identity.address, version)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop every node's pods (SIGTERM, then SIGKILL: no process is left) and threads."""
        for node in reversed(self.nodes):
            try:
                node.stop()
            except Exception:  # stop the others all the same
                log.exception("node %s: error while stopping", node.identity.name)
        self.nodes = []

    def pids(self) -> dict[str, int]:
        """``node/namespace/pod/container`` -> PID of every running container process."""
        return {f"{n.identity.name}/{key}": pid for n in self.nodes for key, pid in n.pods.pids().items()}
