"""The sandbox's nodes: a node agent doing the kubelet's job against the real API server.

- :mod:`.settings`: :class:`AgentSettings` (node names, capacity, the kubelet's clocks).
- :mod:`.identity`: each node's client cert (``system:node:<node>``) and kubelet serving cert.
- :mod:`.registration`: the Node object, its status and its Lease in ``kube-node-lease``.
- :mod:`.pods` and :mod:`.podworker` (through :mod:`.host`): the pods bound to a node, each a local process on its own
  address of the cluster network's pod range; probes, restarts with back-off, graceful deletion
  (:mod:`.lifecycle`: preStop hooks). Containers, probes and logs are :mod:`runbooks_sandbox.runtime`'s.
- :mod:`.server`: the kubelet endpoint (HTTPS, client certs, SubjectAccessReview) serving
  ``/containerLogs`` to the API server, so ``kubectl logs`` works as on a real cluster.
- :mod:`.agent`: :class:`NodeAgent`, every node of the sandbox in one process;
  :mod:`.process`: :class:`NodeAgentProcess`, that process started inside the network namespace.
"""
from __future__ import annotations

from .process import NodeAgentProcess
from .settings import KUBELET_PORT, AgentSettings, node_names

__all__ = ["NodeAgent", "NodeAgentProcess", "AgentSettings", "KUBELET_PORT", "node_names"]


def __getattr__(name: str) -> object:
    # The agent (and with it urllib3, the catalog, the runtime) is imported only where it runs:
    # a caller that only starts or stops the process does not pay for it.
    if name == "NodeAgent":
        from .agent import NodeAgent

        return NodeAgent
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
