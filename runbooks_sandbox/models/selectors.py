"""Label selectors (equality and set-based) and field selectors, as the API server parses them.

Grammar (k8s.io/apimachinery/pkg/labels): requirements separated by commas, each one of
``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (a,b)``,
``key notin (a,b)``. Structured ``matchLabels``/``matchExpressions`` selectors (as in a
Deployment's spec.selector) are converted to the same requirement objects.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Callable, Mapping

from .errors import BadRequest

Obj = dict[str, Any]


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        if self.operator in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" also match objects without the label, as in Kubernetes.
        return not present or value not in self.values


_SET_RE = re.compile(r"^\s*([^\s!=(),]+)\s+(in|notin)\s*\(([^)]*)\)\s*$")


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside a ``(...)`` value set."""
    parts, depth, current = [], 0, ""
    for char in text:
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        if char == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += char
    parts.append(current)
    return [part.strip() for part in parts if part.strip()]


def _parse_requirement(term: str) -> Requirement:
    match = _SET_RE.match(term)
    if match:
        key, op, values = match.groups()
        return Requirement(key, op, frozenset(v.strip() for v in values.split(",") if v.strip()))
    for op in ("==", "!=", "="):
        if op in term:
            key, value = (s.strip() for s in term.split(op, 1))
            if not key:
                break
            return Requirement(key, "=" if op == "==" else op, frozenset({value}))
    if term.startswith("!"):
        return Requirement(term[1:].strip(), "!")
    if re.fullmatch(r"[A-Za-z0-9_./-]+", term):
        return Requirement(term, "exists")
    raise BadRequest(f"unable to parse requirement: {term!r}")


def parse_label_selector(text: str | None) -> list[Requirement]:
    """Parse a ``labelSelector`` query string; an empty selector matches everything."""
    if not text:
        return []
    return [_parse_requirement(term) for term in _split_top_level(text)]


def from_label_selector_object(selector: Mapping[str, Any] | None) -> list[Requirement]:
    """Convert a ``metav1.LabelSelector`` (matchLabels + matchExpressions) to requirements."""
    if not selector:
        return []
    requirements = [Requirement(k, "=", frozenset({v})) for k, v in (selector.get("matchLabels") or {}).items()]
    operators = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expression in selector.get("matchExpressions") or []:
        op = operators.get(expression.get("operator", ""))
        if op is None:
            raise BadRequest(f"invalid label selector operator {expression.get('operator')!r}")
        requirements.append(Requirement(expression["key"], op, frozenset(expression.get("values") or [])))
    return requirements


def labels_match(requirements: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    return all(r.matches(labels or {}) for r in requirements)


def selector_to_string(selector: Mapping[str, Any] | None) -> str:
    """Render a structured selector as the string form (Scale's status.selector, kubectl)."""
    parts = []
    for r in from_label_selector_object(selector):
        if r.operator == "=":
            parts.append(f"{r.key}={next(iter(r.values))}")
        elif r.operator in ("in", "notin"):
            parts.append(f"{r.key} {r.operator} ({','.join(sorted(r.values))})")
        elif r.operator == "exists":
            parts.append(r.key)
        else:
            parts.append(f"!{r.key}")
    return ",".join(parts)


# Fields a fieldSelector may name: metadata ones for every type, plus a few that clients use.
_FIELD_GETTERS: dict[str, Callable[[Obj], Any]] = {
    "metadata.name": lambda o: o.get("metadata", {}).get("name"),
    "metadata.namespace": lambda o: o.get("metadata", {}).get("namespace"),
    "spec.nodeName": lambda o: o.get("spec", {}).get("nodeName", ""),
    "status.phase": lambda o: o.get("status", {}).get("phase", ""),
    "involvedObject.name": lambda o: o.get("involvedObject", {}).get("name"),
    "involvedObject.kind": lambda o: o.get("involvedObject", {}).get("kind"),
    "involvedObject.namespace": lambda o: o.get("involvedObject", {}).get("namespace"),
    "involvedObject.uid": lambda o: o.get("involvedObject", {}).get("uid"),
    "type": lambda o: o.get("type"),
}


@dataclass(frozen=True)
class FieldRequirement:
    field: str
    equal: bool
    value: str

    def matches(self, obj: Obj) -> bool:
        actual = _FIELD_GETTERS[self.field](obj)
        actual = "" if actual is None else str(actual)
        return (actual == self.value) == self.equal


def parse_field_selector(text: str | None) -> list[FieldRequirement]:
    """Parse a ``fieldSelector`` (``a=b``, ``a==b``, ``a!=b``, comma-separated)."""
    if not text:
        return []
    requirements = []
    for term in _split_top_level(text):
        for op in ("!=", "==", "="):
            if op in term:
                field, value = (s.strip() for s in term.split(op, 1))
                break
        else:
            raise BadRequest(f"invalid field selector: {term!r}")
        if field not in _FIELD_GETTERS:
            raise BadRequest(f'field label not supported: {field}')
        requirements.append(FieldRequirement(field, op != "!=", value))
    return requirements


def fields_match(requirements: list[FieldRequirement], obj: Obj) -> bool:
    return all(r.matches(obj) for r in requirements)
