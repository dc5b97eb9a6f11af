"""Who each node is to the API server, and what the API server sees when it calls the node.

A node agent acts as each of its nodes separately, as kubelets do: a client cert of the cluster
CA with ``CN=system:node:<node>, O=system:nodes``, so the API server's Node authorizer and the
NodeRestriction admission plugin confine it to its own Node, Lease and pods (and to the Secrets
and ConfigMaps those pods name), never the admin's rights. Each node also gets a serving cert of
the same CA naming its InternalIP, since the API server (``--kubelet-certificate-authority`` is
the cluster CA, ``--kubelet-preferred-address-types=InternalIP,Hostname``) verifies that address
when it proxies ``kubectl logs`` to the node. Both are issued from the control plane's PKI under
the state directory at agent start: the agent runs as root beside the control plane, and the
certs go with the PKI when the control plane stops.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..controlplane import ControlPlane
from ..controlplane.pki import CertPair
from ..kube.client import Credentials
from ..network import ClusterNetwork

__all__ = ["NodeIdentity", "node_identity", "control_plane_version"]


@dataclass(frozen=True)
class NodeIdentity:
    """One node: its name, its address in the node range, its credentials both ways."""

    name: str
    address: str  # InternalIP: where its kubelet endpoint listens and what pods report as hostIP
    credentials: Credentials  # towards the API server, as system:node:<name>
    serving: CertPair  # its kubelet endpoint's cert (SAN: address and name)
    ca_file: Path  # the cluster CA: the API server's cert and the API server's client cert chain to it


def node_identity(control_plane: ControlPlane, network: ClusterNetwork, name: str) -> NodeIdentity:
    """Allocate ``name``'s address (the same one again after a restart) and issue its certs."""
    address = network.allocate_node_ip(name)
    pki = control_plane.pki
    client = pki.issue_client_cert(f"node-{name}", f"system:node:{name}", ("system:nodes",))
    serving = pki.issue_kubelet_serving_cert(name, [address])
    credentials = Credentials(server=control_plane.api_url, ca_file=str(pki.ca.cert),
                              cert_file=str(client.cert), key_file=str(client.key))
    return NodeIdentity(name, address, credentials, serving, pki.ca.cert)


def control_plane_version(control_plane: ControlPlane) -> str:
    """The Kubernetes release the control plane runs: what each node reports as its kubelet's."""
    versions = control_plane.status().get("versions") or {}
    return str(versions.get("kubernetes") or "v0.0.0-unknown")
