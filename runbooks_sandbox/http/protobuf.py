"""Decoding of the protobuf bodies kubectl sends for ``create secret|configmap|namespace|deployment``.

kubectl's typed clients POST ``application/vnd.kubernetes.protobuf``: the magic ``k8s\\0`` then
a ``runtime.Unknown`` message {typeMeta=1 {apiVersion=1, kind=2}, raw=2, contentEncoding=3,
contentType=4}, whose ``raw`` is the object's own protobuf encoding. A tiny wire-format reader
plus field tables for the few kinds that arrive this way is all that is needed (field numbers
from k8s.io/api/core/v1/generated.proto and apimachinery's meta/v1/generated.proto).
"""
from __future__ import annotations

import base64
from datetime import datetime, timezone
from typing import Any, Iterator

from ..models.errors import UnsupportedMediaType

MAGIC = b"k8s\x00"
Schema = dict[int, tuple[str, Any]]  # field number -> (json name, type)

TIME: Schema = {1: ("seconds", "int"), 2: ("nanos", "int")}
OWNER_REFERENCE: Schema = {1: ("kind", "string"), 3: ("name", "string"), 4: ("uid", "string"),
                           5: ("apiVersion", "string"), 6: ("controller", "bool"),
                           7: ("blockOwnerDeletion", "bool")}
OBJECT_META: Schema = {
    1: ("name", "string"), 2: ("generateName", "string"), 3: ("namespace", "string"),
    5: ("uid", "string"), 6: ("resourceVersion", "string"), 7: ("generation", "int"),
    8: ("creationTimestamp", ("time", TIME)), 11: ("labels", ("map", "string")),
    12: ("annotations", ("map", "string")), 13: ("ownerReferences", ("repeated", OWNER_REFERENCE)),
    14: ("finalizers", ("repeated", "string")),
}
LABEL_SELECTOR: Schema = {1: ("matchLabels", ("map", "string")), 2: ("matchExpressions", ("repeated", {
    1: ("key", "string"), 2: ("operator", "string"), 3: ("values", ("repeated", "string"))}))}
# What ``kubectl create deployment NAME --image=I [--replicas=N] [--port=P] [-- CMD ...]`` fills in
# (k8s.io/api/core/v1 and apps/v1 generated.proto; checked against kubectl 1.32's bytes). "opt_int"
# is a pointer field: written only when set, so its zero is a value (replicas: 0).
CONTAINER: Schema = {
    1: ("name", "string"), 2: ("image", "string"), 3: ("command", ("repeated", "string")),
    4: ("args", ("repeated", "string")), 5: ("workingDir", "string"),
    6: ("ports", ("repeated", {1: ("name", "string"), 2: ("hostPort", "int"), 3: ("containerPort", "int"),
                               4: ("protocol", "string"), 5: ("hostIP", "string")})),
    7: ("env", ("repeated", {1: ("name", "string"), 2: ("value", "string")})),
    14: ("imagePullPolicy", "string"),
}
POD_SPEC: Schema = {2: ("containers", ("repeated", CONTAINER)), 3: ("restartPolicy", "string"),
                    4: ("terminationGracePeriodSeconds", "opt_int"), 8: ("serviceAccountName", "string"),
                    20: ("initContainers", ("repeated", CONTAINER))}
POD_TEMPLATE: Schema = {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)}
DEPLOYMENT_SPEC: Schema = {
    1: ("replicas", "opt_int"), 2: ("selector", LABEL_SELECTOR), 3: ("template", POD_TEMPLATE),
    4: ("strategy", {1: ("type", "string")}), 5: ("minReadySeconds", "int"),
    6: ("revisionHistoryLimit", "opt_int"), 7: ("paused", "bool"), 9: ("progressDeadlineSeconds", "opt_int"),
}
KINDS: dict[str, Schema] = {
    "Secret": {1: ("metadata", OBJECT_META), 2: ("data", ("map", "bytes")), 3: ("type", "string"),
               4: ("stringData", ("map", "string")), 5: ("immutable", "bool")},
    "ConfigMap": {1: ("metadata", OBJECT_META), 2: ("data", ("map", "string")),
                  3: ("binaryData", ("map", "bytes")), 4: ("immutable", "bool")},
    "Namespace": {1: ("metadata", OBJECT_META), 2: ("spec", {1: ("finalizers", ("repeated", "string"))})},
    "Deployment": {1: ("metadata", OBJECT_META), 2: ("spec", DEPLOYMENT_SPEC)},
}
UNKNOWN: Schema = {1: ("typeMeta", {1: ("apiVersion", "string"), 2: ("kind", "string")}),
                   2: ("raw", "raw"), 3: ("contentEncoding", "string"), 4: ("contentType", "string")}


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= len(data):
            raise UnsupportedMediaType("truncated protobuf body")
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value): ints for varints, bytes for length-delimited."""
    pos = 0
    while pos < len(data):
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = data[pos:pos + length], pos + length
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise UnsupportedMediaType(f"unsupported protobuf wire type {wire}")
        yield number, wire, value


# Pointer fields (``*int32``, ``*bool``) whose zero is a value, not "unset" (backoffLimit: 0).
_KEEP_ZERO = ("opt_int", "opt_bool")


def _scalar(kind: str, value: Any) -> Any:
    if kind == "string":
        return value.decode()
    if kind == "bytes":
        return base64.b64encode(value).decode()
    if kind in ("bool", "opt_bool"):
        return bool(value)
    if kind in ("int", "opt_int"):
        return value - (1 << 64) if value >= 1 << 63 else value
    return value  # raw


def _decode_value(kind: Any, value: Any) -> Any:
    if isinstance(kind, dict):
        return decode_message(value, kind)
    if isinstance(kind, tuple) and kind[0] == "time":
        seconds = decode_message(value, TIME).get("seconds", 0)
        if not seconds:
            return None
        return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return _scalar(kind, value)


def decode_message(data: bytes, schema: Schema) -> dict[str, Any]:
    """Decode the fields the schema names; unknown fields are skipped, as protobuf allows."""
    result: dict[str, Any] = {}
    for number, _, value in _fields(data):
        if number not in schema:
            continue
        name, kind = schema[number]
        if isinstance(kind, tuple) and kind[0] == "map":
            entry = decode_message(value, {1: ("key", "string"), 2: ("value", kind[1])})
            result.setdefault(name, {})[entry.get("key", "")] = entry.get("value", "")
        elif isinstance(kind, tuple) and kind[0] == "repeated":
            result.setdefault(name, []).append(_decode_value(kind[1], value))
        else:
            decoded = _decode_value(kind, value)
            if decoded not in ("", 0, False, {}, None) or kind == "raw" or kind in _KEEP_ZERO:
                result[name] = decoded  # Go writes empty optional fields; JSON omits them
    return result
