"""Where the sandbox used to be kinder than a cluster: unserved resources, nodes, ServiceAccounts,
HorizontalPodAutoscalers and Ingresses, through the official client and kubectl."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from typing import Any, Callable

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

pytestmark = pytest.mark.sandbox


def wait_until(check: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


# --- unserved resources --------------------------------------------------------------------

@pytest.mark.parametrize("plural", ["replicationcontrollers", "persistentvolumeclaims", "resourcequotas",
                                    "limitranges"])
def test_unserved_resources_answer_a_404_status(api_client, namespace: str, plural: str) -> None:
    url = f"{api_client.configuration.host}/api/v1/namespaces/{namespace}/{plural}"
    for method, body in (("GET", None), ("POST", b'{"metadata": {"name": "x"}}')):
        request = urllib.request.Request(url, data=body, method=method, headers={"Content-Type": "application/json"})
        with pytest.raises(urllib.error.HTTPError) as failed:
            urllib.request.urlopen(request, timeout=5)
        status = json.loads(failed.value.read())
        assert failed.value.headers["Content-Type"] == "application/json"
        assert (failed.value.code, status["kind"], status["reason"]) == (404, "Status", "NotFound"), (method, status)


def test_the_client_and_kubectl_read_an_unserved_resource_as_not_found(api_client, kubectl, namespace: str) -> None:
    with pytest.raises(ApiException) as failed:
        client.CoreV1Api(api_client).list_namespaced_replication_controller(namespace)
    assert failed.value.status == 404
    result = kubectl("get", "--raw", f"/api/v1/namespaces/{namespace}/persistentvolumeclaims", check=False)
    assert result.returncode != 0 and "NotFound" in result.stderr


# --- nodes -----------------------------------------------------------------------------------

def test_list_node_reads_full_status(api_client) -> None:
    (node,) = client.CoreV1Api(api_client).list_node().items
    info = node.status.node_info
    for field in ("boot_id", "kernel_version", "kube_proxy_version", "machine_id", "os_image", "system_uuid",
                  "container_runtime_version", "kubelet_version"):
        assert getattr(info, field), field
    conditions = {c.type: c.status for c in node.status.conditions}
    assert conditions == {"MemoryPressure": "False", "DiskPressure": "False", "PIDPressure": "False", "Ready": "True"}
    assert int(node.status.capacity["cpu"]) >= 1 and node.status.capacity["memory"].endswith("Ki")
    assert node.status.allocatable["pods"] == "110"
    assert {a.type for a in node.status.addresses} == {"InternalIP", "Hostname"}


def test_kubectl_get_nodes_wide_and_describe_node(kubectl) -> None:
    wide = kubectl("get", "nodes", "-o", "wide", namespaced=False).stdout.splitlines()
    assert wide[0].split() == ["NAME", "STATUS", "ROLES", "AGE", "VERSION", "INTERNAL-IP", "EXTERNAL-IP",
                               "OS-IMAGE", "KERNEL-VERSION", "CONTAINER-RUNTIME"]
    assert wide[1].split()[:2] == ["sandbox-node", "Ready"]
    described = kubectl("describe", "node", "sandbox-node", namespaced=False).stdout
    for line in ("Capacity:", "Allocatable:", "System Info:", "Boot ID:", "Kernel Version:", "Kube-Proxy Version:",
                 "InternalIP:  127.0.0.1", "KubeletReady"):
        assert line in described, line


# --- ServiceAccounts -------------------------------------------------------------------------

def test_every_namespace_gets_a_default_service_account(api_client, kubectl, namespace: str) -> None:
    core = client.CoreV1Api(api_client)
    account = wait_until(lambda: core.list_namespaced_service_account(namespace).items, what="default SA")
    assert [a.metadata.name for a in account] == ["default"]
    kubectl("delete", "serviceaccount", "default")  # as on a cluster, it comes back
    wait_until(lambda: core.list_namespaced_service_account(namespace).items, what="default SA recreated")
    assert "default" in kubectl("get", "sa").stdout
    names = {a.metadata.namespace for a in core.list_service_account_for_all_namespaces().items}
    assert {"default", "kube-system", namespace} <= names


# --- HorizontalPodAutoscalers and Ingresses --------------------------------------------------

def web_deployment(replicas: int) -> dict:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                     "template": {"metadata": {"labels": {"app": "web"}},
                                  "spec": {"containers": [{"name": "web", "image": "registry.veza.app/veza-frontend:1"}]}}}}


HPA = {"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler", "metadata": {"name": "web-hpa"},
       "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "minReplicas": 2, "maxReplicas": 4,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {
                    "type": "Utilization", "averageUtilization": 70}}}]}}


def test_manual_scaling_is_held_within_the_hpa_range(api_client, kubectl, namespace: str) -> None:
    apps, autoscaling = client.AppsV1Api(api_client), client.AutoscalingV2Api(api_client)
    apps.create_namespaced_deployment(namespace, web_deployment(3))
    autoscaling.create_namespaced_horizontal_pod_autoscaler(namespace, HPA)

    def replicas() -> int:
        return apps.read_namespaced_deployment("web", namespace).spec.replicas

    kubectl("scale", "deployment/web", "--replicas=9")  # the /scale subresource
    wait_until(lambda: replicas() == 4, what="clamped to maxReplicas")
    hpa = wait_until(lambda: (lambda h: h.status.last_scale_time and h)(
        autoscaling.read_namespaced_horizontal_pod_autoscaler("web-hpa", namespace)), what="HPA status")
    conditions = {c.type: (c.status, c.reason) for c in hpa.status.conditions}
    assert hpa.status.desired_replicas == 4 and conditions["ScalingActive"] == ("False", "FailedGetResourceMetric")

    apps.patch_namespaced_deployment("web", namespace, {"spec": {"replicas": 1}})  # a patch of replicas
    wait_until(lambda: replicas() == 2, what="raised to minReplicas")
    apps.patch_namespaced_deployment_scale("web", namespace, {"spec": {"replicas": 3}})
    time.sleep(0.3)
    assert replicas() == 3, "within range the HPA leaves a manual size alone (no metrics API)"
    described = kubectl("describe", "hpa", "web-hpa").stdout
    assert "New size: 4; reason: Current number of replicas above Spec.MaxReplicas" in described, described
    assert "New size: 2; reason: Current number of replicas below Spec.MinReplicas" in described, described

    table = kubectl("get", "hpa").stdout.splitlines()
    assert table[0].split() == ["NAME", "REFERENCE", "TARGETS", "MINPODS", "MAXPODS", "REPLICAS", "AGE"]
    row = table[1].split()
    assert row[:2] == ["web-hpa", "Deployment/web"] and row[-4:-2] == ["2", "4"], table


def test_invalid_hpa_is_refused(api_client, namespace: str) -> None:
    body = json.loads(json.dumps(HPA))
    body["spec"]["minReplicas"] = 5
    with pytest.raises(ApiException) as refused:
        client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(namespace, body)
    assert refused.value.status == 422


INGRESS = """\
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: veza-ingress
  annotations:
    nginx.ingress.kubernetes.io/rate-limit: "100"
spec:
  ingressClassName: nginx
  tls:
  - hosts: [api.veza.app, veza.app]
    secretName: veza-tls
  rules:
  - host: api.veza.app
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: veza-backend-api, port: {number: 80}}}
  - host: veza.app
    http:
      paths:
      - path: /
        pathType: Prefix
        backend: {service: {name: veza-frontend, port: {number: 80}}}
"""


def test_ingress_is_stored_listed_and_shown(api_client, kubectl, namespace: str) -> None:
    kubectl("apply", "-f", "-", input=INGRESS)
    (ingress,) = client.NetworkingV1Api(api_client).list_namespaced_ingress(namespace).items
    assert [r.host for r in ingress.spec.rules] == ["api.veza.app", "veza.app"]
    table = kubectl("get", "ingress").stdout.splitlines()
    assert table[0].split() == ["NAME", "CLASS", "HOSTS", "ADDRESS", "PORTS", "AGE"]
    assert table[1].split()[:4] == ["veza-ingress", "nginx", "api.veza.app,veza.app", "80,"]
    assert "veza-backend-api:80" in kubectl("describe", "ingress", "veza-ingress").stdout


def test_kubectl_create_deployment_sends_protobuf_the_sandbox_decodes(kubectl, api_client, namespace: str) -> None:
    kubectl("create", "deployment", "web", "--image=registry.veza.app/veza-frontend:v1.5.0", "--replicas=2",
            "--port=80")
    d = client.AppsV1Api(api_client).read_namespaced_deployment("web", namespace)
    (container,) = d.spec.template.spec.containers
    assert (d.spec.replicas, d.spec.selector.match_labels, container.image, container.ports[0].container_port) == \
        (2, {"app": "web"}, "registry.veza.app/veza-frontend:v1.5.0", 80)
    kubectl("create", "deployment", "idle", "--image=registry.veza.app/veza-frontend:v1.5.0", "--replicas=0")
    assert client.AppsV1Api(api_client).read_namespaced_deployment("idle", namespace).spec.replicas == 0
