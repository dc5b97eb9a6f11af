"""Discovery documents (/version, /api, /apis, resource lists) and a minimal OpenAPI v3.

kubectl needs: kinds, verbs, short names and subresources in the resource lists (scale as an
autoscaling/v1 Scale); and for ``kubectl apply`` an OpenAPI v3 root plus, per group-version,
a document whose PATCH operations list the ``fieldValidation`` parameter and whose schemas carry
``x-kubernetes-group-version-kind`` (an empty ``paths`` makes kubectl refuse).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any

from ..models.resources import ResourceInfo, ResourceRegistry

Obj = dict[str, Any]
KUBERNETES_VERSION = {"major": "1", "minor": "32"}
SUBRESOURCE_VERBS = ["get", "patch", "update"]


def version() -> Obj:
    return {**KUBERNETES_VERSION, "gitVersion": "v1.32.0-sandbox", "gitCommit": "0" * 40,
            "gitTreeState": "clean", "buildDate": "2025-01-01T00:00:00Z", "goVersion": "go1.23",
            "compiler": "gc", "platform": "linux/amd64"}


def api_versions(server_address: str) -> Obj:
    return {"kind": "APIVersions", "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}]}


def _group(name: str, versions: list[str]) -> Obj:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def api_group_list(registry: ResourceRegistry) -> Obj:
    groups = [_group(g, vs) for g, vs in registry.group_versions().items() if g]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def api_group(registry: ResourceRegistry, name: str) -> Obj | None:
    versions = registry.group_versions().get(name)
    return None if not versions or not name else {"kind": "APIGroup", "apiVersion": "v1", **_group(name, versions)}


def _entries(info: ResourceInfo) -> list[Obj]:
    rt = info.type
    main: Obj = {"name": rt.plural, "singularName": info.singular, "namespaced": rt.namespaced,
                 "kind": rt.kind, "verbs": list(info.verbs)}
    if info.short_names:
        main["shortNames"] = list(info.short_names)
    if info.categories:
        main["categories"] = list(info.categories)
    entries = [main]
    for sub in sorted(info.subresources):
        entry: Obj = {"name": f"{rt.plural}/{sub}", "singularName": "", "namespaced": rt.namespaced,
                      "kind": rt.kind, "verbs": SUBRESOURCE_VERBS}
        if sub == "scale":
            entry.update(group="autoscaling", version="v1", kind="Scale")
        elif sub == "log":
            entry.update(kind="Pod", verbs=["get"])
        entries.append(entry)
    return entries


def resource_list(registry: ResourceRegistry, group: str, version: str) -> Obj | None:
    infos = [i for i in registry if i.type.group == group and i.type.version == version]
    if not infos:
        return None
    group_version = f"{group}/{version}" if group else version
    return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": group_version,
            "resources": [entry for info in infos for entry in _entries(info)]}


def _openapi_key(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _openapi_document(registry: ResourceRegistry, group: str, version: str) -> Obj:
    paths: Obj = {}
    schemas: Obj = {}
    prefix = f"/apis/{group}/{version}" if group else f"/api/{version}"
    for info in registry:
        rt = info.type
        if (rt.group, rt.version) != (group, version):
            continue
        gvk = {"group": group, "version": version, "kind": rt.kind}
        scope = f"{prefix}/namespaces/{{namespace}}" if rt.namespaced else prefix
        patch = {"operationId": f"patch{rt.kind}", "x-kubernetes-action": "patch",
                 "x-kubernetes-group-version-kind": gvk,
                 "parameters": [{"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
                                {"name": "dryRun", "in": "query", "schema": {"type": "string"}}],
                 "responses": {"200": {"description": "OK"}}}
        paths[f"{scope}/{rt.plural}/{{name}}"] = {"patch": patch}
        schemas[f"sandbox.{group or 'core'}.{version}.{rt.kind}"] = {
            "type": "object", "x-kubernetes-group-version-kind": [gvk],
            "properties": {"apiVersion": {"type": "string"}, "kind": {"type": "string"},
                           "metadata": {"type": "object"}, "spec": {"type": "object"},
                           "status": {"type": "object"}},
        }
    return {"openapi": "3.0.0", "info": {"title": "Kubernetes (sandbox)", "version": "v1.32.0"},
            "paths": paths, "components": {"schemas": schemas}}


def openapi_v3(registry: ResourceRegistry, subpath: str) -> Obj | None:
    """The root document (empty subpath) or one group-version's document."""
    if not subpath:
        root = {}
        for group, versions in registry.group_versions().items():
            for v in versions:
                doc = json.dumps(_openapi_document(registry, group, v), sort_keys=True).encode()
                digest = hashlib.sha256(doc).hexdigest()[:16].upper()
                key = _openapi_key(group, v)
                root[key] = {"serverRelativeURL": f"/openapi/v3/{key}?hash={digest}"}
        return {"paths": root}
    parts = subpath.split("/")
    if parts[0] == "api" and len(parts) == 2:
        group, version = "", parts[1]
    elif parts[0] == "apis" and len(parts) == 3:
        group, version = parts[1], parts[2]
    else:
        return None
    if version not in registry.group_versions().get(group, []):
        return None
    return _openapi_document(registry, group, version)
