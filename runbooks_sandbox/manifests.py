"""The Veza platform as the sandbox deploys it: namespace, Secret, Deployments and Services.

Shaped as the deployment guide writes them (section 4.1): one Deployment and one Service per
service, named after the service; pods labelled ``app`` and ``version``; RollingUpdate with
maxSurge 1 and maxUnavailable 0; liveness on /health and readiness on /ready; application
secrets from the Secret ``veza-secrets``, whose keys (database-url, redis-url, jwt-secret,
stripe-api-key) are synced from OpenBao ``secret/veza/sandbox``; Services on port 80 to the
container port. Probe timings are the guide's as written: the sandbox's pod runtime runs them
on a shorter clock (its ``time_scale``), so a drill reads the same manifests as production.

The manifests are plain dicts, applied through the real Kubernetes client by the sandbox.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from .edge import edge_manifests

__all__ = [
    "NAMESPACE",
    "SECRET_NAME",
    "SECRET_KEYS",
    "INITIAL_VERSION",
    "DEFAULT_REPLICAS",
    "ServiceSpec",
    "load_services",
    "namespace",
    "secret_from_vault",
    "deployment",
    "service",
    "veza_manifests",
    "expected_pods",
    "read_vault_secret",
    "apply_veza",
    "wait_available",
]

NAMESPACE = "veza-sandbox"
SECRET_NAME = "veza-secrets"
VAULT_PATH = "secret/veza/sandbox"
# Kubernetes Secret key -> key in the Vault secret (the guide's 7.2 and 8.1 spellings).
SECRET_KEYS = {
    "database-url": "database_url",
    "redis-url": "redis_url",
    "jwt-secret": "jwt_secret",
    "stripe-api-key": "stripe_api_key",
}
# The version the sandbox starts with: a healthy one with a healthy version on either side, so
# a deploy (v1.6.0) and a rollback (v1.4.0) can both be drilled from the first `up`.
INITIAL_VERSION = "v1.5.0"
# The catalog's shape (parameters/services.yaml `replicas`): the sandbox runs what production
# runs, so rollouts, disruption and the golden signals have the same number of pods behind them.
# A service the catalog gives no count gets this many.
DEFAULT_REPLICAS = 1
# Environment each container gets from the Secret (the guide's list; backend-api bills too).
_ENV_FROM_SECRET = {
    "DATABASE_URL": "database-url",
    "REDIS_URL": "redis-url",
    "JWT_SECRET": "jwt-secret",
}
_BILLING_SERVICES = ("veza-backend-api",)


class ServiceSpec:
    """What the manifests need of a service from parameters/services.yaml."""

    def __init__(self, name: str, port: int, health_path: str = "/health", ready_path: str = "/ready",
                 replicas: int = DEFAULT_REPLICAS) -> None:
        self.name, self.port, self.health_path, self.ready_path = name, port, health_path, ready_path
        self.replicas = replicas

    def __repr__(self) -> str:
        return f"ServiceSpec({self.name!r}, port={self.port}, replicas={self.replicas})"


def load_services(home: Path) -> tuple[str, list[ServiceSpec]]:
    """The image repository and the services of ``<home>/parameters/services.yaml``."""
    raw = yaml.safe_load((home / "parameters" / "services.yaml").read_text()) or {}
    specs = [
        ServiceSpec(name, int(spec["port"]), spec.get("health_path", "/health"), spec.get("ready_path", "/ready"),
                    int(spec.get("replicas", DEFAULT_REPLICAS)))
        for name, spec in (raw.get("services") or {}).items()
    ]
    return str(raw.get("image_repository", "registry.veza.app")), specs


def namespace(name: str = NAMESPACE) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "veza", "veza.app/env": "sandbox"}}}


def secret_from_vault(vault_secret: dict[str, str], ns: str = NAMESPACE) -> dict[str, Any]:
    """The Secret veza-secrets holding the Vault secret's application keys (as stringData)."""
    missing = [vault_key for vault_key in SECRET_KEYS.values() if vault_key not in vault_secret]
    if missing:
        raise KeyError(f"{VAULT_PATH} lacks {', '.join(missing)}")
    return {
        "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
        "metadata": {"name": SECRET_NAME, "namespace": ns,
                     "labels": {"app.kubernetes.io/part-of": "veza"},
                     "annotations": {"veza.app/synced-from": VAULT_PATH}},
        "stringData": {k8s_key: vault_secret[vault_key] for k8s_key, vault_key in SECRET_KEYS.items()},
    }


def _probe(path: str, port: int, *, initial_delay: int, period: int, timeout: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": port, "scheme": "HTTP"}, "initialDelaySeconds": initial_delay,
            "periodSeconds": period, "timeoutSeconds": timeout, "failureThreshold": failures,
            "successThreshold": 1}


def _container(spec: ServiceSpec, image: str) -> dict[str, Any]:
    env_names = dict(_ENV_FROM_SECRET)
    if spec.name in _BILLING_SERVICES:
        env_names["STRIPE_API_KEY"] = "stripe-api-key"
    env: list[dict[str, Any]] = [
        {"name": name, "valueFrom": {"secretKeyRef": {"name": SECRET_NAME, "key": key}}}
        for name, key in env_names.items()
    ]
    env.append({"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}})
    return {
        "name": spec.name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        "env": env,
        "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "500m", "memory": "256Mi"}},
        # The guide's probes as written; the sandbox's pod runtime scales their times down.
        "livenessProbe": _probe(spec.health_path, spec.port, initial_delay=30, period=10, timeout=5, failures=3),
        "readinessProbe": _probe(spec.ready_path, spec.port, initial_delay=10, period=5, timeout=3, failures=3),
    }


def deployment(spec: ServiceSpec, repository: str, version: str = INITIAL_VERSION,
               replicas: int | None = None, ns: str = NAMESPACE) -> dict[str, Any]:
    """The guide's Deployment for one service (RollingUpdate maxSurge 1, maxUnavailable 0)."""
    labels = {"app": spec.name, "version": version}
    if replicas is None:
        replicas = spec.replicas
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": spec.name, "namespace": ns, "labels": dict(labels)},
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 120,
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "selector": {"matchLabels": {"app": spec.name}},
            "template": {
                "metadata": {
                    "labels": dict(labels),
                    # Prometheus' relabelling sends every pod to :8080 unless told otherwise.
                    "annotations": {"prometheus.io/scrape": "true", "prometheus.io/port": str(spec.port)},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 30,
                    "containers": [_container(spec, f"{repository}/{spec.name}:{version}")],
                },
            },
        },
    }


def service(spec: ServiceSpec, ns: str = NAMESPACE) -> dict[str, Any]:
    """A ClusterIP Service: port 80 to the container port, selecting the service's pods."""
    return {
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": spec.name, "namespace": ns, "labels": {"app": spec.name}},
        "spec": {"type": "ClusterIP", "selector": {"app": spec.name},
                 "ports": [{"name": "http", "port": 80, "targetPort": spec.port, "protocol": "TCP"}]},
    }


def veza_manifests(home: Path, vault_secret: dict[str, str], version: str = INITIAL_VERSION,
                   replicas: dict[str, int] | None = None, ns: str = NAMESPACE) -> list[dict[str, Any]]:
    """Everything in apply order: namespace, Secret, then each service's Service and Deployment."""
    repository, specs = load_services(home)
    objects = [namespace(ns), secret_from_vault(vault_secret, ns)]
    for spec in specs:
        objects.append(service(spec, ns))
        objects.append(deployment(spec, repository, version, (replicas or {}).get(spec.name), ns))
    objects += edge_manifests(ns)  # the guide's Ingress and backend HPA
    return objects


def expected_pods(home: Path, replicas: dict[str, int] | None = None) -> int:
    """How many pods the Veza deployments ask for (what the health waits count)."""
    _, specs = load_services(home)
    return sum((replicas or {}).get(s.name, s.replicas) for s in specs)


# -- applying them through the real client ------------------------------------------------------


def read_vault_secret(vault_addr: str, token: str, path: str = VAULT_PATH) -> dict[str, str]:
    """The KV v2 secret at ``secret/<path>`` (e.g. secret/veza/sandbox), read with hvac."""
    import hvac

    mount, _, sub_path = path.partition("/")
    client = hvac.Client(url=vault_addr, token=token, timeout=5)
    reply = client.secrets.kv.v2.read_secret_version(path=sub_path, mount_point=mount, raise_on_deleted_version=True)
    return dict(reply["data"]["data"])


def istio_crds() -> list[dict[str, Any]]:
    """Istio's VirtualService and DestinationRule as CustomResourceDefinitions: the sandbox's Service
    proxy honours their routes and weights (a mesh's sidecars would), so the canary runbook's
    ``routing.router: istio`` works. The schema keeps every field (Istio's own CRDs validate more)."""
    def crd(kind: str, plural: str, short: str) -> dict[str, Any]:
        schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
        return {
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.networking.istio.io", "labels": {"app.kubernetes.io/part-of": "veza-sandbox"}},
            "spec": {"group": "networking.istio.io", "scope": "Namespaced",
                     "names": {"kind": kind, "plural": plural, "singular": kind.lower(), "shortNames": [short],
                               "categories": ["istio-io", "networking-istio-io"]},
                     "versions": [{"name": version, "served": True, "storage": version == "v1beta1", "schema": schema,
                                   "subresources": {"status": {}}} for version in ("v1", "v1beta1", "v1alpha3")]},
        }

    return [crd("VirtualService", "virtualservices", "vs"), crd("DestinationRule", "destinationrules", "dr")]


def apply_veza(kubeconfig: str, home: Path, vault_addr: str, vault_token: str, ns: str = NAMESPACE) -> list[str]:
    """Create the namespace, the Secret synced from OpenBao and the services' manifests.

    Goes through the official Kubernetes client, as an operator's ``kubectl apply`` would.
    Returns ``kind/name`` of each object created.
    """
    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    core, apps = client.CoreV1Api(api_client), client.AppsV1Api(api_client)
    creators = {
        "Namespace": lambda o: core.create_namespace(o),
        "Secret": lambda o: core.create_namespaced_secret(ns, o),
        "Service": lambda o: core.create_namespaced_service(ns, o),
        "Deployment": lambda o: apps.create_namespaced_deployment(ns, o),
        "Ingress": lambda o: client.NetworkingV1Api(api_client).create_namespaced_ingress(ns, o),
        "HorizontalPodAutoscaler": lambda o: client.AutoscalingV2Api(api_client).create_namespaced_horizontal_pod_autoscaler(ns, o),
    }
    created = []
    try:
        for obj in veza_manifests(home, read_vault_secret(vault_addr, vault_token), ns=ns):
            try:
                creators[obj["kind"]](obj)
            except client.ApiException as e:
                if not (e.status == 409 and obj["kind"] == "Namespace"):  # the control plane made it, with its RBAC
                    raise
                continue
            created.append(f"{obj['kind'].lower()}/{obj['metadata']['name']}")
    finally:
        api_client.close()
    return created


def wait_available(kubeconfig: str, ns: str, deadline: float, progress: Any = None) -> None:
    """Wait until every deployment in ``ns`` has all its replicas updated and available.

    ``progress(total, description)`` makes a tqdm-like bar (``update``/``close``/``n``);
    the bar counts available pods. On timeout, TimeoutError names what is not ready and why.
    """
    import time

    from kubernetes import client, config

    api_client = config.new_client_from_config(config_file=kubeconfig)
    apps, core = client.AppsV1Api(api_client), client.CoreV1Api(api_client)
    bar = None
    try:
        while True:
            deployments = apps.list_namespaced_deployment(ns).items
            wanted = sum(d.spec.replicas or 0 for d in deployments)
            available = sum(min(d.status.available_replicas or 0, d.spec.replicas or 0) for d in deployments)
            if progress is not None and bar is None and wanted:
                bar = progress(wanted, f"pods available in {ns}")
            if bar is not None:
                bar.update(available - bar.n)
            if deployments and all(_rolled_out(d) for d in deployments):
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"deployments not available in time: {_not_ready(deployments, core, ns)}")
            time.sleep(0.2)
    finally:
        if bar is not None:
            bar.close()
        api_client.close()


def _rolled_out(d: Any) -> bool:
    want = d.spec.replicas or 0
    st = d.status
    return ((st.observed_generation or 0) >= (d.metadata.generation or 0)
            and (st.updated_replicas or 0) == want and (st.available_replicas or 0) == want
            and (st.replicas or 0) == want)


def _not_ready(deployments: list[Any], core: Any, ns: str) -> str:
    """``name: 1/3 available (pod x: CrashLoopBackOff ...)`` for each deployment not rolled out."""
    parts = []
    for d in deployments:
        if _rolled_out(d):
            continue
        reasons = []
        pods = core.list_namespaced_pod(ns, label_selector=f"app={d.metadata.name}").items
        for pod in pods:
            for cs in pod.status.container_statuses or []:
                waiting = cs.state.waiting if cs.state else None
                if waiting is not None or not cs.ready:
                    reasons.append(f"{pod.metadata.name}: {waiting.reason if waiting else 'not ready'}")
        parts.append(f"{d.metadata.name} {d.status.available_replicas or 0}/{d.spec.replicas} available"
                     + (f" ({'; '.join(reasons)})" if reasons else ""))
    return ", ".join(parts) or "none listed"
