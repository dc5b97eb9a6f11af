"""The guide's Ingress (k8s/ingress.yaml) and backend HorizontalPodAutoscaler (k8s/backend/hpa.yaml).

As the guide writes them (section 4), with two sandbox spellings: the namespace is the
sandbox's, and the backend's Deployment and Service are named after the catalog's service
(``veza-backend-api``, where the guide's excerpt says ``veza-backend``). Nothing in the sandbox
serves the Ingress (no ingress controller: the Service proxy is how traffic arrives); it is
there so that runbooks and operators read the same objects as in production. The HPA's
min/max are enforced by the real controller manager's HPA controller.
"""
from __future__ import annotations

from typing import Any

__all__ = ["BACKEND", "FRONTEND", "backend_hpa", "ingress", "edge_manifests"]

BACKEND, FRONTEND = "veza-backend-api", "veza-frontend"


def backend_hpa(ns: str) -> dict[str, Any]:
    """k8s/backend/hpa.yaml: 3..10 replicas on 70 % CPU / 80 % memory, the guide's behaviour."""
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "veza-backend-hpa", "namespace": ns},
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": BACKEND},
            "minReplicas": 3, "maxReplicas": 10,
            "metrics": [
                {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 70}}},
                {"type": "Resource", "resource": {"name": "memory", "target": {"type": "Utilization", "averageUtilization": 80}}},
            ],
            "behavior": {
                "scaleUp": {"stabilizationWindowSeconds": 60,
                            "policies": [{"type": "Percent", "value": 100, "periodSeconds": 60}]},
                "scaleDown": {"stabilizationWindowSeconds": 300,
                              "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]},
            },
        },
    }


def _rule(host: str, service: str) -> dict[str, Any]:
    return {"host": host, "http": {"paths": [{"path": "/", "pathType": "Prefix", "backend": {
        "service": {"name": service, "port": {"number": 80}}}}]}}


def ingress(ns: str) -> dict[str, Any]:
    """k8s/ingress.yaml: api.veza.app to the backend, veza.app to the frontend, TLS by cert-manager."""
    return {
        "apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
        "metadata": {"name": "veza-ingress", "namespace": ns, "annotations": {
            "cert-manager.io/cluster-issuer": "letsencrypt-prod",
            "nginx.ingress.kubernetes.io/rate-limit": "100",
            "nginx.ingress.kubernetes.io/ssl-redirect": "true"}},
        "spec": {"ingressClassName": "nginx",
                 "tls": [{"hosts": ["api.veza.app", "veza.app"], "secretName": "veza-tls"}],
                 "rules": [_rule("api.veza.app", BACKEND), _rule("veza.app", FRONTEND)]},
    }


def edge_manifests(ns: str) -> list[dict[str, Any]]:
    """Applied after the Deployments and Services they refer to."""
    return [ingress(ns), backend_hpa(ns)]
