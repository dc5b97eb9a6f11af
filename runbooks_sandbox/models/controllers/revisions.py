"""ReplicaSet identity and revision bookkeeping of the Deployment controller, as pure functions.

Follows pkg/controller/deployment/util/deployment_util.go: a ReplicaSet is named
``<deployment>-<pod-template-hash>``; the "new" ReplicaSet is the one whose template equals the
deployment's ignoring that label; revisions live in annotations, and an old ReplicaSet reused by
a rollback gets ``max(old revisions) + 1`` with its previous number appended to
``deployment.kubernetes.io/revision-history``.
"""
from __future__ import annotations

import json
from typing import Any

from .meta import Obj, annotations, clone_obj

HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
DESIRED_REPLICAS = "deployment.kubernetes.io/desired-replicas"
MAX_REPLICAS = "deployment.kubernetes.io/max-replicas"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
ROLLBACK_TO = "deprecated.deployment.rollback.to"
# Deployment annotations never copied onto its ReplicaSets (annotationsToSkip upstream).
ANNOTATIONS_TO_SKIP = frozenset({LAST_APPLIED, REVISION, REVISION_HISTORY, DESIRED_REPLICAS,
                                 MAX_REPLICAS, ROLLBACK_TO})
# The Deployment controller's limit on revision-history's length, in characters.
MAX_REVISION_HISTORY_CHARS = 2000

_SAFE_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"  # k8s.io/apimachinery/pkg/util/rand


def _is_empty(value: Any) -> bool:
    return value is None or value == {} or value == [] or value is False or value == "" or (
        type(value) is int and value == 0)


def normalized(value: Any) -> Any:
    """A template with the fields Go would omit on the wire removed (nil, empty, zero, false).

    Templates reach the controller through different paths (the deployment as created, a
    ReplicaSet's copy patched back by ``kubectl rollout undo`` after a round trip through Go
    structs, which adds ``creationTimestamp: null`` and ``resources: {}`` and drops
    ``false``), so comparisons and hashes work on this form, as the Go code's work on structs.
    """
    if isinstance(value, dict):
        result = {k: normalized(v) for k, v in value.items()}
        return {k: v for k, v in result.items() if not _is_empty(v)}
    if isinstance(value, list):
        return [normalized(v) for v in value]
    return value


def template_without_hash(template: Obj) -> Obj:
    copy = clone_obj(template)
    labels = (copy.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(HASH_LABEL, None)
    return copy


def equal_ignore_hash(a: Obj, b: Obj) -> bool:
    """deploymentutil.EqualIgnoreHash: templates equal apart from the pod-template-hash label."""
    return normalized(template_without_hash(a)) == normalized(template_without_hash(b))


def _fnv32a(data: bytes) -> int:
    value = 0x811C9DC5
    for byte in data:
        value ^= byte
        value = (value * 0x01000193) & 0xFFFFFFFF
    return value


def safe_encode(text: str) -> str:
    """rand.SafeEncodeString: map each byte onto an alphabet without vowels or look-alikes."""
    return "".join(_SAFE_ALPHABET[b % len(_SAFE_ALPHABET)] for b in text.encode())


def pod_template_hash(template: Obj, collision_count: int | None = None) -> str:
    """controller.ComputeHash: FNV-32a of the template (plus collisionCount), safe-encoded.

    The bytes hashed are canonical JSON of the normalised template rather than Go's spew dump,
    so values differ from a real cluster's but have the same form and the same stability.
    """
    data = json.dumps(normalized(template_without_hash(template)), sort_keys=True,
                      separators=(",", ":")).encode()
    if collision_count is not None:
        data += int(collision_count).to_bytes(4, "little")
    return safe_encode(str(_fnv32a(data)))


def revision(rs: Obj) -> int:
    """deploymentutil.Revision: the revision annotation as an int (0 when absent or bad)."""
    try:
        return int(annotations(rs).get(REVISION, "0"))
    except ValueError:
        return 0


def max_revision(replica_sets: list[Obj]) -> int:
    return max((revision(rs) for rs in replica_sets), default=0)


def revision_sort_key(rs: Obj) -> tuple[int, str, str]:
    """deploymentutil.ReplicaSetsByRevision: by revision, then by creation."""
    meta = rs["metadata"]
    return (revision(rs), meta.get("creationTimestamp") or "", meta["name"])


def copy_deployment_annotations(deployment: Obj, rs: Obj) -> bool:
    """Copy the deployment's annotations (but the skipped ones) onto rs; True if any changed.

    Annotations are only added or overwritten, never removed, as upstream does.
    """
    rs_annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in annotations(deployment).items():
        if key in ANNOTATIONS_TO_SKIP or rs_annotations.get(key) == value:
            continue
        rs_annotations[key] = value
        changed = True
    return changed


def set_replicas_annotations(rs: Obj, desired: int, max_replicas: int) -> bool:
    """Record the deployment size a ReplicaSet was scaled for (used by proportional scaling)."""
    rs_annotations = rs["metadata"].setdefault("annotations", {})
    changed = False
    for key, value in ((DESIRED_REPLICAS, str(desired)), (MAX_REPLICAS, str(max_replicas))):
        if rs_annotations.get(key) != value:
            rs_annotations[key] = value
            changed = True
    return changed


def replicas_annotations_need_update(rs: Obj, desired: int, max_replicas: int) -> bool:
    rs_annotations = annotations(rs)
    return (rs_annotations.get(DESIRED_REPLICAS) != str(desired)
            or rs_annotations.get(MAX_REPLICAS) != str(max_replicas))


def _append_revision_history(history: str, old_revision: str) -> str | None:
    """The revision-history annotation with old_revision appended, trimmed from the front to
    MAX_REVISION_HISTORY_CHARS; None when it cannot fit."""
    if not history:
        return old_revision
    revisions = history.split(",")
    total = len(history) + len(old_revision) + 1
    start = 0
    while total > MAX_REVISION_HISTORY_CHARS and start < len(revisions):
        total -= len(revisions[start]) + 1
        start += 1
    if total > MAX_REVISION_HISTORY_CHARS:
        return None
    return ",".join(revisions[start:] + [old_revision])


def set_new_rs_annotations(deployment: Obj, rs: Obj, new_revision: int, exists: bool,
                           desired: int, max_replicas: int) -> bool:
    """deploymentutil.SetNewReplicaSetAnnotations; True if rs's annotations changed.

    The new ReplicaSet's revision only ever grows; when an existing one is given a higher
    revision (a rollback reusing it), its previous revision is kept in revision-history.
    """
    changed = copy_deployment_annotations(deployment, rs)
    rs_annotations = rs["metadata"].setdefault("annotations", {})
    old_text = rs_annotations.get(REVISION)
    try:
        old_revision = int(old_text) if old_text else 0
    except ValueError:
        return False
    if old_revision < new_revision:
        rs_annotations[REVISION] = str(new_revision)
        changed = True
        if old_text is not None:
            history = _append_revision_history(rs_annotations.get(REVISION_HISTORY, ""), old_text)
            if history is not None:
                rs_annotations[REVISION_HISTORY] = history
    if not exists and set_replicas_annotations(rs, desired, max_replicas):
        changed = True
    return changed


def set_deployment_revision(deployment: Obj, new_revision: str) -> bool:
    deployment_annotations = deployment["metadata"].setdefault("annotations", {})
    if deployment_annotations.get(REVISION) == new_revision:
        return False
    deployment_annotations[REVISION] = new_revision
    return True
