"""A node's presence in the cluster: its Node object and the Lease that says it is alive.

:class:`NodeRegistration` creates the Node (capacity, allocatable, nodeInfo, addresses, the
kubelet endpoint, conditions Ready=True) and then keeps two clocks, as the kubelet does:

- the Lease ``kube-node-lease/<node>`` is renewed every quarter of its 40 s duration. This is the
  heartbeat the node lifecycle controller reads: without a renewal for its grace period
  (``--node-monitor-grace-period``, 50 s by default since v1.32; our controller manager does not
  change it) it marks the Node NotReady/Unknown, taints it ``node.kubernetes.io/unreachable`` and
  evicts its pods;
- the Node's status (conditions with their heartbeat time) is sent again every
  ``status_report_s`` though nothing changed (the kubelet's nodeStatusReportFrequency).

A node that cannot reach the API server keeps trying at the same pace; the errors are logged.
"""
from __future__ import annotations

import logging
import os
import platform
import threading
import uuid
from typing import Any

from ..kube import LEASES, NODE_LEASE_NAMESPACE, NODES, ClusterStore, now_rfc3339, now_rfc3339_micro
from ..kube.errors import AlreadyExists, ApiError, NotFound, Unreachable
from .identity import NodeIdentity
from .settings import AgentSettings

__all__ = ["NodeRegistration", "node_object", "node_status"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
CONTAINER_RUNTIME = "sandbox-processes://1.0"  # what `kubectl get nodes -o wide` shows as CONTAINER-RUNTIME


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as f:
            return f.read().strip()
    except OSError:
        return str(uuid.uuid4())


def node_status(identity: NodeIdentity, settings: AgentSettings, kubelet_version: str,
                since: str, heartbeat: str) -> Obj:
    """The Node's status as a healthy kubelet reports it."""
    resources = {"cpu": settings.cpu, "memory": settings.memory, "pods": settings.pods,
                 "ephemeral-storage": "20Gi"}

    def condition(kind: str, status: str, reason: str, message: str) -> Obj:
        return {"type": kind, "status": status, "reason": reason, "message": message,
                "lastHeartbeatTime": heartbeat, "lastTransitionTime": since}

    return {
        "capacity": resources, "allocatable": dict(resources),
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": identity.address},
                      {"type": "Hostname", "address": identity.name}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": settings.kubelet_port}},
        "nodeInfo": {
            # One machine id per node, stable across agent restarts (named after the node).
            "machineID": uuid.uuid5(uuid.NAMESPACE_DNS, identity.name).hex,
            "systemUUID": str(uuid.uuid5(uuid.NAMESPACE_URL, identity.name)),
            "bootID": _boot_id(), "kernelVersion": platform.release(), "osImage": _os_image(),
            "containerRuntimeVersion": CONTAINER_RUNTIME, "kubeletVersion": kubelet_version,
            "kubeProxyVersion": "", "operatingSystem": "linux", "architecture": _architecture(),
        },
    }


def node_object(identity: NodeIdentity) -> Obj:
    """The Node as the kubelet creates it (the status follows through the status subresource)."""
    return {"metadata": {"name": identity.name, "labels": {
        "kubernetes.io/hostname": identity.name, "kubernetes.io/os": "linux", "kubernetes.io/arch": _architecture(),
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": _architecture(),
        "node.kubernetes.io/instance-type": "sandbox-process"}},
        "spec": {}}


def _architecture() -> str:
    machine = platform.machine().lower()
    return {"x86_64": "amd64", "aarch64": "arm64"}.get(machine, machine)


def _os_image() -> str:
    try:
        for line in open("/etc/os-release"):
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return f"{platform.system()} {os.uname().release}"


class NodeRegistration:
    """Registers one node and keeps its Lease and status fresh on a thread (module doc)."""

    def __init__(self, store: ClusterStore, identity: NodeIdentity, settings: AgentSettings,
                 kubelet_version: str) -> None:
        self.store, self.identity, self.settings = store, identity, settings
        self.kubelet_version = kubelet_version
        self._since = now_rfc3339()
        self._uid: str | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"heartbeat-{identity.name}", daemon=True)

    @property
    def name(self) -> str:
        return self.identity.name

    def register(self) -> Obj:
        """Create the Node (or take over the one a previous run left) and send its status."""
        try:
            node = self.store.create(NODES, None, node_object(self.identity))
        except AlreadyExists:
            node = self.store.get(NODES, None, self.name)
        self._uid = node["metadata"]["uid"]
        self.report_status()
        self.renew_lease()
        return node

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def report_status(self) -> None:
        status = node_status(self.identity, self.settings, self.kubelet_version, self._since, now_rfc3339())
        self.store.update_status(NODES, None, self.name, status, patch_type="strategic-merge")

    def renew_lease(self) -> None:
        """Create or renew ``kube-node-lease/<node>``, owned by the Node (deleted with it)."""
        spec = {"holderIdentity": self.name, "leaseDurationSeconds": self.settings.lease_duration_s,
                "renewTime": now_rfc3339_micro()}
        try:
            self.store.patch(LEASES, NODE_LEASE_NAMESPACE, self.name, {"spec": spec}, "merge")
        except NotFound:
            owner = [{"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self._uid}] if self._uid else []
            self.store.create(LEASES, NODE_LEASE_NAMESPACE, {
                "metadata": {"name": self.name, "namespace": NODE_LEASE_NAMESPACE, "ownerReferences": owner},
                "spec": spec})

    def _run(self) -> None:
        next_status = self.settings.status_report_s
        waited = 0.0
        while not self._stop.wait(self.settings.renew_interval_s):
            waited += self.settings.renew_interval_s
            try:
                self.renew_lease()
                if waited >= next_status:
                    self.report_status()
                    waited = 0.0
            except (ApiError, Unreachable) as e:  # the API server restarting: try again next round
                log.warning("node %s: heartbeat failed: %s", self.name, e)
