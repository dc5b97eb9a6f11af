"""The sandbox's one Node, as a kubelet registers it: this machine's real identity and size.

Both pod runtimes (the instant one and the process one) register the node through
:func:`register_node`; the constants live here, apart from either runtime, so that neither the
runtime nor its pod workers import each other for them. Values come from the host as a kubelet
reads them (boot id, machine id, kernel, OS image, CPUs, memory), so ``kubectl describe node``
and ``CoreV1Api().list_node()`` show what they would on a one-node cluster on this machine.
"""
from __future__ import annotations

import os
import platform
import shutil
import uuid
from pathlib import Path
from typing import Any

from .api import Store
from .errors import ApiError
from .resources import NODES

__all__ = ["FINALIZER", "NODE_NAME", "KUBELET_VERSION", "node_manifest", "node_status", "register_node"]

Obj = dict[str, Any]
NODE_NAME = "sandbox-node"
FINALIZER = "sandbox.veza.app/kubelet"  # holds a deleted pod until its processes have stopped
KUBELET_VERSION = "v1.32.0-sandbox"
HOST_IP = "127.0.0.1"
MAX_PODS = 110  # the kubelet's default --max-pods
_ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64", "armv7l": "arm", "ppc64le": "ppc64le", "s390x": "s390x"}


def _read(path: str, default: str = "") -> str:
    try:
        return Path(path).read_text().strip()
    except OSError:
        return default


def _os_image() -> str:
    for line in _read("/etc/os-release").splitlines():
        if line.startswith("PRETTY_NAME="):
            return line.split("=", 1)[1].strip().strip('"')
    return f"{platform.system()} {platform.release()}"


def _memory_kib() -> int:
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1])
    return 0


def _identity() -> Obj:
    machine_id = _read("/etc/machine-id") or uuid.uuid5(uuid.NAMESPACE_DNS, platform.node()).hex
    # The kubelet reads the DMI product UUID (root only); derived from the machine id otherwise.
    system_uuid = _read("/sys/class/dmi/id/product_uuid") or str(uuid.uuid5(uuid.NAMESPACE_OID, machine_id))
    return {"machineID": machine_id, "systemUUID": system_uuid.lower(),
            "bootID": _read("/proc/sys/kernel/random/boot_id") or str(uuid.uuid4())}


def node_manifest() -> Obj:
    arch = _ARCHITECTURES.get(platform.machine(), platform.machine())
    return {"metadata": {"name": NODE_NAME, "labels": {
        "kubernetes.io/hostname": NODE_NAME, "kubernetes.io/os": "linux", "kubernetes.io/arch": arch,
        "beta.kubernetes.io/os": "linux", "beta.kubernetes.io/arch": arch,
        "node-role.kubernetes.io/control-plane": "",
    }, "annotations": {"node.alpha.kubernetes.io/ttl": "0",
                       "volumes.kubernetes.io/controller-managed-attach-detach": "true"}},
        "spec": {"podCIDR": "127.0.0.0/8", "podCIDRs": ["127.0.0.0/8"]}}


def node_status(container_runtime: str, now: str) -> Obj:
    """NodeStatus as the kubelet posts it: conditions, capacity, addresses, nodeInfo."""
    cpus = os.cpu_count() or 1
    memory = _memory_kib()
    disk = shutil.disk_usage("/")
    capacity = {"cpu": str(cpus), "memory": f"{memory}Ki", "pods": str(MAX_PODS),
                "ephemeral-storage": f"{disk.total // 1024}Ki", "hugepages-2Mi": "0", "hugepages-1Gi": "0"}
    # What the kubelet reserves by default: the eviction threshold of 100Mi memory, 10 % disk.
    allocatable = dict(capacity, memory=f"{max(0, memory - 100 * 1024)}Ki",
                       **{"ephemeral-storage": str(int(disk.total * 0.9))})

    def condition(kind: str, ok_status: str, reason: str, message: str) -> Obj:
        return {"type": kind, "status": ok_status, "reason": reason, "message": message,
                "lastHeartbeatTime": now, "lastTransitionTime": now}

    return {
        "capacity": capacity,
        "allocatable": allocatable,
        "conditions": [
            condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available"),
            condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            condition("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [{"type": "InternalIP", "address": HOST_IP}, {"type": "Hostname", "address": NODE_NAME}],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
        "nodeInfo": {
            **_identity(),
            "kernelVersion": platform.release(),
            "osImage": _os_image(),
            "containerRuntimeVersion": container_runtime,
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": _ARCHITECTURES.get(platform.machine(), platform.machine()),
        },
        "images": [],
    }


def register_node(store: Store, container_runtime: str, now: str) -> None:
    """Create the node if missing (a restarted runtime finds it) and post its status."""
    try:
        store.create(NODES, None, node_manifest())
    except ApiError:
        pass  # registered by an earlier runtime
    store.update_status(NODES, None, NODE_NAME, node_status(container_runtime, now))
