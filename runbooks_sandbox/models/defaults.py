"""Defaulting and validation hooks run by the store, per resource type.

They mirror the API server's defaulting closely enough that objects read back look like a
cluster's (kubectl describe, rollout history and the controllers rely on these fields), without
trying to be complete.
"""
from __future__ import annotations

import base64
import ipaddress
import random
import threading
from typing import Any

from ..loopback import can_bind
from .errors import Invalid
from .selectors import from_label_selector_object, labels_match

Obj = dict[str, Any]


class Allocator:
    """Cluster-wide unique values: Service cluster IPs on loopback (served by part 2's proxy).

    Several sandboxes may run on one machine (a drill beside a test run), and loopback is
    shared by all of them: each sandbox takes its own random /16 of 127.64.0.0/10 for Services,
    and an address whose ports another process already listens on is skipped.
    """

    def __init__(self, service_network: str | None = None) -> None:
        if service_network is None:
            service_network = f"127.{random.randrange(64, 128)}.0.0/16"
        self.network = service_network
        self._hosts = ipaddress.ip_network(service_network).hosts()
        self._lock = threading.Lock()
        next(self._hosts)  # .1 is left out, as clusters keep it for the kubernetes Service

    def cluster_ip(self, ports: list[int] | None = None) -> str:
        with self._lock:
            for host in self._hosts:
                ip = str(host)
                if all(can_bind(ip, port) for port in ports or []):
                    return ip
        raise Invalid(f"no free cluster IP left in {self.network}")


def namespace(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    name = obj["metadata"]["name"]
    obj["metadata"].setdefault("labels", {})["kubernetes.io/metadata.name"] = name
    obj.setdefault("spec", {}).setdefault("finalizers", ["kubernetes"])
    obj.setdefault("status", {}).setdefault("phase", "Active")


def _container(container: Obj) -> None:
    image = container.get("image", "")
    tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
    latest = not tagged or image.endswith(":latest")
    container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
    container.setdefault("terminationMessagePath", "/dev/termination-log")
    container.setdefault("terminationMessagePolicy", "File")
    container.setdefault("resources", {})
    for port in container.get("ports") or []:
        port.setdefault("protocol", "TCP")


def pod_spec(spec: Obj) -> None:
    """Default a PodSpec in place (pods and pod templates alike)."""
    for container in (spec.get("containers") or []) + (spec.get("initContainers") or []):
        _container(container)
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("securityContext", {})
    spec.setdefault("schedulerName", "default-scheduler")


def pod(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    pod_spec(obj.setdefault("spec", {}))
    if old is None:
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}


def _template(obj: Obj) -> None:
    template = obj.setdefault("spec", {}).setdefault("template", {})
    template.setdefault("metadata", {}).setdefault("creationTimestamp", None)
    pod_spec(template.setdefault("spec", {}))


def deployment(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        rolling = strategy.setdefault("rollingUpdate", {})
        rolling.setdefault("maxUnavailable", "25%")
        rolling.setdefault("maxSurge", "25%")
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    _template(obj)
    if old is None:
        obj["status"] = {}


def replicaset(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    obj.setdefault("spec", {}).setdefault("replicas", 1)
    _template(obj)
    if old is None:
        obj["status"] = {"replicas": 0}


def service(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    old_spec = (old or {}).get("spec", {})
    if not spec.get("clusterIP"):
        ports = [int(p["port"]) for p in spec.get("ports") or [] if str(p.get("port", "")).isdigit()]
        spec["clusterIP"] = old_spec.get("clusterIP") or alloc.cluster_ip(ports)
    spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    if old is None:
        obj["status"] = {"loadBalancer": {}}


def secret(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    """stringData is write-only: merged into base64 data, as the API server does."""
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()
    obj.setdefault("type", "Opaque")


def validate_selector(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    """apps/v1 workloads need a selector that matches their template's labels."""
    kind, name = obj.get("kind", ""), obj["metadata"].get("name")
    selector = obj.get("spec", {}).get("selector")
    if not selector or not (selector.get("matchLabels") or selector.get("matchExpressions")):
        raise Invalid.field(kind, name, "spec.selector", "Required value")
    labels = obj["spec"].get("template", {}).get("metadata", {}).get("labels") or {}
    if not labels_match(from_label_selector_object(selector), labels):
        raise Invalid.field(kind, name, "spec.template.metadata.labels",
                            f"Invalid value: {labels}: `selector` does not match template `labels`")
    replicas = obj["spec"].get("replicas")
    if not isinstance(replicas, int) or replicas < 0:
        raise Invalid.field(kind, name, "spec.replicas",
                            f"Invalid value: {replicas}: must be greater than or equal to 0")


def horizontal_pod_autoscaler(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("minReplicas", 1)
    if not spec.get("metrics"):  # autoscaling/v2's default: 80 % average CPU
        spec["metrics"] = [{"type": "Resource", "resource": {
            "name": "cpu", "target": {"type": "Utilization", "averageUtilization": 80}}}]
    if old is None:
        obj["status"] = {"currentReplicas": 0, "desiredReplicas": 0}


def validate_horizontal_pod_autoscaler(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    kind, name, spec = obj.get("kind", ""), obj["metadata"].get("name"), obj.get("spec", {})
    target = spec.get("scaleTargetRef") or {}
    if not target.get("kind") or not target.get("name"):
        raise Invalid.field(kind, name, "spec.scaleTargetRef", "Required value: kind and name are required")
    low, high = spec.get("minReplicas"), spec.get("maxReplicas")
    if not isinstance(high, int) or high < 1:
        raise Invalid.field(kind, name, "spec.maxReplicas", f"Invalid value: {high}: must be greater than 0")
    if not isinstance(low, int) or low < 1:
        raise Invalid.field(kind, name, "spec.minReplicas", f"Invalid value: {low}: must be greater than or equal to 1")
    if low > high:
        raise Invalid.field(kind, name, "spec.maxReplicas",
                            f"Invalid value: {high}: must be greater than or equal to `minReplicas`")


def ingress(obj: Obj, old: Obj | None, alloc: Allocator) -> None:
    for rule in obj.setdefault("spec", {}).get("rules") or []:
        for path in (rule.get("http") or {}).get("paths") or []:
            path.setdefault("pathType", "ImplementationSpecific")
    if old is None:
        obj["status"] = {"loadBalancer": {}}
