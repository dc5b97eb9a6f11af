"""rotation: which Deployments read a rotated key, and which service's lock each one takes."""
from __future__ import annotations

from runbooks_lib.procedures.rotation import readers_of

from ..kube_stub import deployment
from .conftest import Platform, image


def _reading(name: str, key: str, **labels: str) -> dict:
    dep = deployment(name, image("v1.6.0"), labels=labels or None)
    dep["spec"]["template"]["spec"]["containers"][0]["env"] = [
        {"name": "X", "valueFrom": {"secretKeyRef": {"name": "veza-secrets", "key": key}}}]
    return dep


def test_readers_are_found_by_key_each_with_its_service_not_its_deployment_name(platform: Platform) -> None:
    # A blue-green service's Deployment is named by colour; a deploy of it locks the service's name.
    platform.kube.add("deployments", _reading("veza-chat-server-green", "jwt-secret", app="veza-chat-server"))
    platform.kube.add("deployments", _reading("veza-frontend", "redis-url"))
    readers = readers_of(platform.cluster(), "veza-secrets", {"jwt-secret"})
    assert readers["veza-chat-server-green"] == "veza-chat-server"
    assert "veza-frontend" not in readers  # it reads another key
