"""kubectl's protobuf request bodies: the ``k8s\\0`` envelope, and which kinds the sandbox decodes.

The wire format and the core schemas live in ``protobuf``; the pod-template kinds (Jobs) in
``protobuf_pods``, whose decoded templates need flattening. This module sits above both, so
neither needs the other.
"""
from __future__ import annotations

from typing import Any

from ..models.errors import UnsupportedMediaType
from .protobuf import KINDS as CORE_KINDS
from .protobuf import MAGIC, UNKNOWN, decode_message
from .protobuf_pods import JOB, flatten

__all__ = ["decode_envelope", "KINDS"]

KINDS = {**CORE_KINDS, "Job": JOB}
_FLATTENED = {"Job"}  # kinds with pod templates (see protobuf_pods.flatten)


def decode_envelope(body: bytes) -> dict[str, Any]:
    """The JSON-shaped object inside a ``k8s\\0`` protobuf envelope."""
    if not body.startswith(MAGIC):
        raise UnsupportedMediaType("protobuf body without the k8s envelope")
    unknown = decode_message(body[len(MAGIC):], UNKNOWN)
    type_meta = unknown.get("typeMeta", {})
    kind = type_meta.get("kind", "")
    if kind not in KINDS:
        raise UnsupportedMediaType(f"the sandbox decodes protobuf only for {sorted(KINDS)}, not {kind!r}; "
                                   "send JSON")
    obj = decode_message(unknown.get("raw", b""), KINDS[kind])
    if kind in _FLATTENED:
        obj = flatten(obj)
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
