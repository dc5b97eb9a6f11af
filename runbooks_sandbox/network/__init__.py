"""The sandbox's cluster network: non-loopback pod addresses inside a namespace of its own, and forwarders.

Why: the real kube-apiserver refuses loopback addresses in Endpoints and EndpointSlices, so pods
need real-looking addresses; on these machines private ranges (10/8, 172.16/12, 192.168/16) may
exist only inside network namespaces the project creates, never in the host's own namespace. So
the cluster lives in one namespace (:class:`ClusterNetwork`), and everything a person's tools
reach stays on the host's 127.0.0.1, through a :class:`Forwarder` where the server is inside.

Decisions (each module says more):

**One namespace, every address a /32 on its ``lo``** (:mod:`.namespace`), not a namespace per pod
with veth pairs and a bridge. Binding is all a pod needs; many pods share a port, each on its
own address; there is no link, route or bridge per pod to make and to clean up after a crash;
``delete`` is one ``ip netns del``. What is given up (pod isolation, a pod's own source address
on outgoing connections, NetworkPolicy) the sandbox does not use. Ranges: pods 10.244.0.0/16,
Services 10.96.0.0/16 (the apiserver allocates ClusterIPs; the Service proxy puts each on ``lo``
with :meth:`ClusterNetwork.add_address`), nodes 172.18.0.0/24 with 172.18.0.1 standing for the
host (as kind's docker gateway does) and 172.18.0.2... for nodes.

**The forwarder is a process of its own** (:mod:`.forward`), driven by a rules file in the state
directory, stopped by PID like every server; :class:`Forwarder` is the same code embeddable.
It is the only process in both namespaces; a person's connections to the API server must
neither wait on the supervisor's GIL nor die with it. Its measured cost (about 0.1 ms and 90 µs
of CPU per kept-alive request, about 1 ms per new connection) is in :mod:`.forward`'s doc;
``python -m runbooks_sandbox.network.bench`` measures it again.

**Where servers live, and how both sides meet.**

- On the host, as today: PostgreSQL (primary and standby), Redis, OpenBao. The runbooks keep
  reading them at 127.0.0.1.
- Inside (started with :meth:`ClusterNetwork.exec_argv`): the control plane (the apiserver must
  reach pod and node addresses for port-forward, the service proxy and logs), the node agent and
  its pods, the Service proxy, the load generator (it targets ClusterIPs) and Prometheus (it
  scrapes pod addresses). The host reaches each through an *inward* rule:
  host ``127.0.0.1:Q`` -> inside address.
- Pods reach host servers through *outward mirror* rules: the namespace's own ``127.0.0.1:P`` ->
  the host's ``127.0.0.1:P``, the same port. So one URL, ``postgresql://...@127.0.0.1:P/db``,
  works from both sides: the Secret synced from Vault holds it, a pod connects to its namespace's
  127.0.0.1:P (the forwarder; in real clusters a database-proxy sidecar listens on the pod's
  127.0.0.1 the same way), and the DR drill connects from the host with the very same URL, to the
  server itself. Any other choice fails one side: a 172.18.0.1 or ClusterIP URL is unreachable
  from the host (no private routes there), and a DNS name resolving differently per side needs
  /etc/hosts edits on the host. The costs: mirror ports on the namespace's 127.0.0.1 are
  reserved (in-cluster servers must not listen there on those ports; choose every port with
  :func:`~runbooks_sandbox.servers.ports.free_port` on the host, as today, and they do not
  meet), and every host server port a pod may use gets its rule, the PostgreSQL standby's
  included, so a failover's promoted server is reachable at once.
- Where a cluster object must name a host server (Endpoints of a selector-less Service), it names
  ``host_address:P``, an outward rule listening on 172.18.0.1:P (loopback is refused there).

**Processes at delete.** :meth:`ClusterNetwork.delete` stops the forwarder it started (PID file:
PID and command line), then refuses while processes are inside (:class:`NamespaceBusy`: the node
agent stops pods, gracefully) unless ``kill=True``: then each process whose network namespace is
this one, checked right before each signal, gets SIGTERM, then SIGKILL. Nothing enters that
namespace but what the sandbox starts there, so membership is the proof that it is ours. A
process outside holding a socket or thread inside (an embedded Forwarder not stopped) is never
killed: delete refuses, since the namespace would outlive ``ip netns del`` unseen.
"""
from __future__ import annotations

from typing import Any

from .errors import AddressesExhausted, ForwardError, NamespaceBusy, NamespacesNotPermitted, NetworkError
from .namespace import ClusterNetwork, namespace_name

__all__ = [
    "ClusterNetwork",
    "namespace_name",
    "Forwarder",
    "ForwarderProcess",
    "Rule",
    "NetworkError",
    "NamespacesNotPermitted",
    "NamespaceBusy",
    "AddressesExhausted",
    "ForwardError",
]

_FORWARD = ("Forwarder", "ForwarderProcess", "Rule")


def __getattr__(name: str) -> Any:
    # The forwarder module is imported on first use only: `python -m runbooks_sandbox.network.forward`
    # would otherwise find it imported twice (once by this package, once as __main__).
    if name in _FORWARD:
        from . import forward

        return getattr(forward, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
