"""The route table: which handler serves a path, and what a resource path names.

Resource paths follow the API server's layout:
``/api/v1[/watch][/namespaces/<ns>]/<plural>[/<name>[/<subresource>]]`` for the core group and
``/apis/<group>/<version>/...`` for the others.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..models.resources import NAMESPACES, ResourceInfo, ResourceRegistry


@dataclass(frozen=True)
class ResourcePath:
    info: ResourceInfo
    namespace: str | None
    name: str | None
    subresource: str | None
    watch_prefix: bool  # the legacy /watch/ form


@dataclass(frozen=True)
class Route:
    """A non-resource endpoint: ``handler`` names a method of the request handler."""

    handler: str
    args: tuple[str, ...] = ()


def _split(path: str) -> list[str]:
    return [part for part in path.split("?")[0].split("/") if part]


def match_static(path: str) -> Route | None:
    """Discovery, version, health and OpenAPI endpoints."""
    parts = _split(path)
    if parts in (["version"], ["version", ""]):
        return Route("version")
    if parts and parts[0] in ("healthz", "livez", "readyz"):
        return Route("health")
    if parts == ["api"]:
        return Route("api_versions")
    if parts == ["apis"]:
        return Route("api_groups")
    if parts == ["api", "v1"]:
        return Route("resource_list", ("", "v1"))
    if len(parts) == 2 and parts[0] == "apis":
        return Route("api_group", (parts[1],))
    if len(parts) == 3 and parts[0] == "apis":
        return Route("resource_list", (parts[1], parts[2]))
    if parts[:2] == ["openapi", "v3"]:
        return Route("openapi_v3", ("/".join(parts[2:]),))
    if parts[:2] == ["openapi", "v2"]:
        return Route("openapi_v2")
    return None


def match_resource(registry: ResourceRegistry, path: str) -> ResourcePath | None:
    """Parse a resource path, or None when it names no served resource."""
    parts = _split(path)
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 4 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    watch_prefix = bool(rest) and rest[0] == "watch"
    if watch_prefix:
        rest = rest[1:]
    namespace = None
    if len(rest) >= 3 and rest[0] == "namespaces":
        inner = registry.lookup(group, version, rest[2])
        if inner is not None and inner.type.namespaced:
            namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        return None
    info = registry.lookup(group, version, rest[0])
    if info is None:
        return None
    if info.type == NAMESPACES and len(rest) >= 2:
        # /api/v1/namespaces/NS/<plural> of a resource not served here (replicationcontrollers,
        # persistentvolumeclaims ...) is not a subresource of the namespace: it is a 404.
        subresource = rest[2] if len(rest) == 3 else None
        if subresource is not None and subresource not in info.subresources:
            return None
        return ResourcePath(info, None, rest[1], subresource, watch_prefix)
    name = rest[1] if len(rest) >= 2 else None
    subresource = rest[2] if len(rest) == 3 else None
    if subresource is not None and subresource not in info.subresources:
        return None
    return ResourcePath(info, namespace, name, subresource, watch_prefix)
