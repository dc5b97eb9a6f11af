"""PATCH bodies applied to plain-dict objects: strategic merge, JSON merge, JSON patch, apply.

Strategic merge follows the rules kubectl relies on (see DESIGN.md): lists with a merge key are
merged item by item, other lists are replaced; ``null`` deletes a field; directives
``$patch: replace|delete``, ``$retainKeys``, ``$setElementOrder/<list>`` and
``$deleteFromPrimitiveList/<list>`` are honoured. The merge keys are the ones the Kubernetes Go
types declare for the fields clients patch, looked up by field name (with ``ports`` told apart by
content: container ports merge on containerPort, Service ports on port).
"""
from __future__ import annotations

import copy
from typing import Any

from .errors import BadRequest, Invalid, UnsupportedMediaType

Obj = dict[str, Any]

STRATEGIC = "strategic"
MERGE = "merge"
JSON_PATCH = "json"
APPLY = "apply"

MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "imagePullSecrets": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
}
# Lists of scalars that merge as sets instead of being replaced.
PRIMITIVE_MERGE_LISTS = {"finalizers"}


def patch_kind(content_type: str) -> str:
    """Normalise a PATCH Content-Type (or a short name) to one of the four patch kinds."""
    text = content_type.split(";")[0].strip().lower()
    if "strategic" in text:
        return STRATEGIC
    if "json-patch" in text or text == JSON_PATCH:
        return JSON_PATCH
    if "merge-patch" in text or text == MERGE:
        return MERGE
    if "apply-patch" in text or text == APPLY:
        return APPLY
    raise UnsupportedMediaType(f"the body of the request was in an unknown format - accepted media types include: "
                               "application/json-patch+json, application/merge-patch+json, "
                               "application/apply-patch+yaml, application/strategic-merge-patch+json")


def apply_patch(obj: Obj, patch: Any, kind: str) -> Obj:
    """Return a new object: obj with patch applied (obj itself is not modified)."""
    kind = patch_kind(kind)
    if kind == JSON_PATCH:
        if not isinstance(patch, list):
            raise BadRequest("json patch must be a list of operations")
        return json_patch(obj, patch)
    if not isinstance(patch, dict):
        raise BadRequest("patch body must be a JSON object")
    if kind == MERGE:
        return merge_patch(obj, patch)
    # Server-side apply is approximated as a strategic merge of the applied configuration:
    # there is no field ownership (managedFields), so fields dropped from a later applied
    # configuration are kept rather than removed, and there are no apply conflicts.
    return strategic_merge(obj, patch)


# --- JSON merge patch (RFC 7386) ---------------------------------------------------------------

def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- Strategic merge patch ---------------------------------------------------------------------

_DELETE = object()  # a map-level {"$patch": "delete"} result


def _merge_key(field: str, items: list[Any]) -> str | None:
    if field == "ports":
        return "containerPort" if any(isinstance(i, dict) and "containerPort" in i for i in items) else "port"
    return MERGE_KEYS.get(field)


def strategic_merge(original: Obj, patch: Obj) -> Obj:
    result = _merge_map(original, patch)
    return {} if result is _DELETE else result


def _merge_map(original: Any, patch: Obj) -> Any:
    directive = patch.get("$patch")
    if directive == "delete":
        return _DELETE
    if directive == "replace":
        return _strip({k: v for k, v in patch.items() if k != "$patch"})
    result = dict(original) if isinstance(original, dict) else {}
    orders = {}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys"):
            continue
        if key.startswith("$setElementOrder/"):
            orders[key.split("/", 1)[1]] = value
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            result[field] = [v for v in result.get(field) or [] if v not in value]
            continue
        if value is None:
            result.pop(key, None)
        elif isinstance(value, dict):
            merged = _merge_map(result.get(key), value)
            if merged is _DELETE:
                result.pop(key, None)
            else:
                result[key] = merged
        elif isinstance(value, list):
            result[key] = _merge_list(key, result.get(key), value)
        else:
            result[key] = value
    if "$retainKeys" in patch:
        keep = set(patch["$retainKeys"]) | {k for k in patch if not k.startswith("$")}
        result = {k: v for k, v in result.items() if k in keep}
    for field, order in orders.items():
        if isinstance(result.get(field), list):
            result[field] = _reorder(field, result[field], order)
    return result


def _merge_list(field: str, original: Any, patch: list[Any]) -> list[Any]:
    current = list(original) if isinstance(original, list) else []
    if any(isinstance(i, dict) and i.get("$patch") == "replace" for i in patch):
        return [_strip(i) for i in patch if not (isinstance(i, dict) and "$patch" in i)]
    if field in PRIMITIVE_MERGE_LISTS:
        return current + [v for v in patch if v not in current]
    key = _merge_key(field, current + patch)
    if key is None or not all(isinstance(i, dict) for i in patch):
        return [_strip(i) for i in patch]
    for item in patch:
        index = next((n for n, c in enumerate(current) if isinstance(c, dict) and c.get(key) == item.get(key)), None)
        if item.get("$patch") == "delete":
            current = [c for c in current if not (isinstance(c, dict) and c.get(key) == item.get(key))]
        elif index is None:
            current.append(_strip(item))
        else:
            current[index] = _merge_map(current[index], item)
    return current


def _reorder(field: str, items: list[Any], order: list[Any]) -> list[Any]:
    """Apply $setElementOrder: listed elements first in the given order, the others after."""
    key = _merge_key(field, items)

    def identity(item: Any) -> Any:
        return item.get(key) if key and isinstance(item, dict) else item

    wanted = [identity(o) for o in order]
    ranked = sorted(items, key=lambda i: wanted.index(identity(i)) if identity(i) in wanted else len(wanted))
    return ranked


def _strip(value: Any) -> Any:
    """A patch value inserted as-is, minus directives and null fields."""
    if isinstance(value, dict):
        return {k: _strip(v) for k, v in value.items() if v is not None and not k.startswith("$")}
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


# --- JSON patch (RFC 6902) ---------------------------------------------------------------------

def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise Invalid(f"invalid JSON pointer {path!r}")
    return [part.replace("~1", "/").replace("~0", "~") for part in path[1:].split("/")]


def _parent(doc: Any, parts: list[str], path: str) -> Any:
    node = doc
    for part in parts[:-1]:
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError, TypeError):
            raise Invalid(f"the server rejected our request: path {path!r} does not exist") from None
    return node


def _get(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    if not parts:
        return doc
    parent = _parent(doc, parts, path)
    try:
        return parent[int(parts[-1])] if isinstance(parent, list) else parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError):
        raise Invalid(f"the server rejected our request: path {path!r} does not exist") from None


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent = _parent(doc, parts, path)
    last = parts[-1]
    if isinstance(parent, list):
        index = len(parent) if last == "-" else int(last)
        if index > len(parent):
            raise Invalid(f"the server rejected our request: index out of range in {path!r}")
        parent.insert(index, value)
    elif isinstance(parent, dict):
        parent[last] = value
    else:
        raise Invalid(f"the server rejected our request: cannot add at {path!r}")
    return doc


def _remove(doc: Any, path: str) -> Any:
    parts = _pointer(path)
    parent = _parent(doc, parts, path)
    try:
        if isinstance(parent, list):
            del parent[int(parts[-1])]
        else:
            del parent[parts[-1]]
    except (KeyError, IndexError, ValueError, TypeError):
        raise Invalid(f"the server rejected our request: path {path!r} does not exist") from None
    return doc


def json_patch(obj: Obj, operations: list[Obj]) -> Obj:
    doc = copy.deepcopy(obj)
    for op in operations:
        kind, path = op.get("op"), op.get("path", "")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op.get("value")))
        elif kind == "remove":
            doc = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)
            doc = _add(_remove(doc, path), path, copy.deepcopy(op.get("value"))) if path else op.get("value")
        elif kind in ("move", "copy"):
            value = copy.deepcopy(_get(doc, op.get("from", "")))
            if kind == "move":
                doc = _remove(doc, op.get("from", ""))
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op.get("value"):
                raise Invalid(f"the server rejected our request: test operation failed at {path!r}")
        else:
            raise BadRequest(f"unknown json patch operation {kind!r}")
    if not isinstance(doc, dict):
        raise Invalid("the server rejected our request: json patch must leave an object")
    return doc
