"""Protobuf field tables for pod templates and batch/v1 Jobs (``kubectl create job --from=cronjob/...``).

kubectl builds that Job from the CronJob's (defaulted) jobTemplate and POSTs it as protobuf, so
the decoder needs PodTemplateSpec, PodSpec and Container. Field numbers are those of
k8s.io/api/core/v1 and batch/v1 generated.proto. Embedded Go structs (``LocalObjectReference``
in key selectors, ``ProbeHandler`` in a Probe) and ``resource.Quantity`` arrive as nested
messages; :func:`flatten` lifts them to their JSON shape after decoding. ``opt_int`` and
``opt_bool`` are pointer fields whose zero value is meaningful (``backoffLimit: 0``).
"""
from __future__ import annotations

from typing import Any

from .protobuf import OBJECT_META, Schema

__all__ = ["POD_TEMPLATE_SPEC", "POD_SPEC", "CONTAINER", "JOB", "flatten"]

_REF: Schema = {1: ("name", "string")}
_INT_OR_STRING: Schema = {1: ("type", "int"), 2: ("intVal", "int"), 3: ("strVal", "string")}
_KEY_SELECTOR: Schema = {1: ("localObjectReference", _REF), 2: ("key", "string"), 3: ("optional", "opt_bool")}
_ENV_SOURCE: Schema = {
    1: ("fieldRef", {1: ("apiVersion", "string"), 2: ("fieldPath", "string")}),
    2: ("resourceFieldRef", {1: ("containerName", "string"), 2: ("resource", "string")}),
    3: ("configMapKeyRef", _KEY_SELECTOR),
    4: ("secretKeyRef", _KEY_SELECTOR),
}
_ENV: Schema = {1: ("name", "string"), 2: ("value", "string"), 3: ("valueFrom", _ENV_SOURCE)}
_ENV_FROM: Schema = {1: ("prefix", "string"),
                     2: ("configMapRef", {1: ("localObjectReference", _REF), 2: ("optional", "opt_bool")}),
                     3: ("secretRef", {1: ("localObjectReference", _REF), 2: ("optional", "opt_bool")})}
_QUANTITY: Schema = {1: ("string", "string")}
_RESOURCES: Schema = {1: ("limits", ("map", _QUANTITY)), 2: ("requests", ("map", _QUANTITY))}
_PORT: Schema = {1: ("name", "string"), 2: ("hostPort", "int"), 3: ("containerPort", "int"),
                 4: ("protocol", "string"), 5: ("hostIP", "string")}
_HANDLER: Schema = {
    1: ("exec", {1: ("command", ("repeated", "string"))}),
    2: ("httpGet", {1: ("path", "string"), 2: ("port", _INT_OR_STRING), 3: ("host", "string"),
                    4: ("scheme", "string")}),
    3: ("tcpSocket", {1: ("port", _INT_OR_STRING), 2: ("host", "string")}),
}
_PROBE: Schema = {1: ("probeHandler", _HANDLER), 2: ("initialDelaySeconds", "int"), 3: ("timeoutSeconds", "int"),
                  4: ("periodSeconds", "int"), 5: ("successThreshold", "int"), 6: ("failureThreshold", "int")}
_MOUNT: Schema = {1: ("name", "string"), 2: ("readOnly", "bool"), 3: ("mountPath", "string"), 4: ("subPath", "string")}
CONTAINER: Schema = {
    1: ("name", "string"), 2: ("image", "string"), 3: ("command", ("repeated", "string")),
    4: ("args", ("repeated", "string")), 5: ("workingDir", "string"), 6: ("ports", ("repeated", _PORT)),
    7: ("env", ("repeated", _ENV)), 8: ("resources", _RESOURCES), 9: ("volumeMounts", ("repeated", _MOUNT)),
    10: ("livenessProbe", _PROBE), 11: ("readinessProbe", _PROBE), 13: ("terminationMessagePath", "string"),
    14: ("imagePullPolicy", "string"), 19: ("envFrom", ("repeated", _ENV_FROM)),
    20: ("terminationMessagePolicy", "string"), 22: ("startupProbe", _PROBE),
}
POD_SPEC: Schema = {
    2: ("containers", ("repeated", CONTAINER)), 3: ("restartPolicy", "string"),
    4: ("terminationGracePeriodSeconds", "opt_int"), 5: ("activeDeadlineSeconds", "int"),
    6: ("dnsPolicy", "string"), 7: ("nodeSelector", ("map", "string")), 8: ("serviceAccountName", "string"),
    9: ("serviceAccount", "string"), 10: ("nodeName", "string"),
    15: ("imagePullSecrets", ("repeated", _REF)), 16: ("hostname", "string"), 19: ("schedulerName", "string"),
    20: ("initContainers", ("repeated", CONTAINER)), 21: ("automountServiceAccountToken", "opt_bool"),
    24: ("priorityClassName", "string"),
}
POD_TEMPLATE_SPEC: Schema = {1: ("metadata", OBJECT_META), 2: ("spec", POD_SPEC)}
_LABEL_SELECTOR: Schema = {1: ("matchLabels", ("map", "string")),
                           2: ("matchExpressions", ("repeated", {1: ("key", "string"), 2: ("operator", "string"),
                                                                 3: ("values", ("repeated", "string"))}))}
JOB_SPEC: Schema = {
    1: ("parallelism", "opt_int"), 2: ("completions", "opt_int"), 3: ("activeDeadlineSeconds", "opt_int"),
    4: ("selector", _LABEL_SELECTOR), 5: ("manualSelector", "opt_bool"), 6: ("template", POD_TEMPLATE_SPEC),
    7: ("backoffLimit", "opt_int"), 8: ("ttlSecondsAfterFinished", "opt_int"), 9: ("completionMode", "string"),
    10: ("suspend", "opt_bool"), 14: ("podReplacementPolicy", "string"),
}
JOB: Schema = {1: ("metadata", OBJECT_META), 2: ("spec", JOB_SPEC)}


def flatten(value: Any) -> Any:
    """Lift embedded structs and Quantities to their JSON shape, recursively."""
    if isinstance(value, list):
        return [flatten(v) for v in value]
    if not isinstance(value, dict):
        return value
    result: dict[str, Any] = {}
    for key, item in value.items():
        if key in ("localObjectReference", "probeHandler") and isinstance(item, dict):
            result.update(flatten(item))
        elif key in ("limits", "requests") and isinstance(item, dict):
            result[key] = {name: q.get("string", "") if isinstance(q, dict) else q for name, q in item.items()}
        elif key == "port" and isinstance(item, dict):
            result[key] = item.get("strVal") if item.get("type") == 1 else item.get("intVal", 0)
        else:
            result[key] = flatten(item)
    return result
