"""The real Kubernetes control plane for the sandbox (etcd, kube-apiserver, controller manager, scheduler).

The binaries are the ones ``make controlplane`` builds at the versions of
controlplane/versions.env (:mod:`.versions`); :class:`ControlPlane` starts and stops them under
a state directory (:mod:`.cluster`; their flags: :mod:`.flags`; one process and the network
namespace: :mod:`.process`; start-time probes: :mod:`.probes`), with a PKI made by
``cryptography`` (:mod:`.pki`) and the sandbox's people, tokens, RBAC and kubeconfig
(:mod:`.people`). The drills' faults stand in front of the apiserver in a proxy of our own
(:mod:`.faultproxy`, imported on its own).
"""
from __future__ import annotations

from .cluster import COMPONENTS, ControlPlane, bootstrap_manifests
from .people import (
    ADMIN_CONTEXT,
    APPROVERS_GROUP,
    DEFAULT_NAMESPACES,
    ONCALL_GROUP,
    PEOPLE,
    VIEWERS_GROUP,
    Person,
    rbac_manifests,
    write_kubeconfig,
)
from .pki import CertPair, Pki
from .versions import Binaries, ControlPlaneNotBuilt, Versions, bin_dir, binaries, read_versions

__all__ = [
    "ControlPlane",
    "COMPONENTS",
    "bootstrap_manifests",
    "ControlPlaneNotBuilt",
    "Versions",
    "Binaries",
    "read_versions",
    "bin_dir",
    "binaries",
    "Pki",
    "CertPair",
    "Person",
    "PEOPLE",
    "ONCALL_GROUP",
    "APPROVERS_GROUP",
    "VIEWERS_GROUP",
    "DEFAULT_NAMESPACES",
    "ADMIN_CONTEXT",
    "rbac_manifests",
    "write_kubeconfig",
]
