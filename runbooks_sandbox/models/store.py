"""The in-memory object store: the sandbox's etcd plus the API server's write semantics.

One lock guards all objects and one global resourceVersion counter. Every committed write
bumps the counter by exactly one and appends one event to a bounded history, so the event for
resourceVersion N sits at a computable index and a watch from an evicted version is a 410.
Objects in the store are never mutated in place (writes replace them), which lets history
entries share them; callers always get copies.
"""
from __future__ import annotations

import secrets as _random
import threading
import uuid
from collections import deque
from datetime import datetime, timezone
from typing import Any, Callable, Iterator

from . import errors
from .api import Obj, ResourceType, StoreEvent
from .defaults import Allocator
from .eventlog import EventLog, HistoryEntry
from .patch import APPLY, apply_patch, patch_kind
from .resources import NAMESPACES, ResourceInfo, ResourceRegistry, builtin_registry
from .selectors import (fields_match, labels_match, parse_field_selector, parse_label_selector,
                        selector_to_string)
from .watch import Watcher

PROTECTED_NAMESPACES = ("default", "kube-system", "kube-public")
# What DELETE puts on an owner for the garbage collector (metav1.FinalizerOrphanDependents / ...DeleteDependents).
ORPHAN_FINALIZER = "orphan"
FOREGROUND_FINALIZER = "foregroundDeletion"
_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"  # what the API server uses for generateName


def clone(value: Any) -> Any:
    """Deep copy of a JSON-shaped value (several times faster than copy.deepcopy)."""
    if isinstance(value, dict):
        return {k: clone(v) for k, v in value.items()}
    if isinstance(value, list):
        return [clone(v) for v in value]
    return value


def now_rfc3339() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _type_key(rt: ResourceType) -> tuple[str, str]:
    return (rt.group, rt.plural)


class MemoryStore:
    """Implements the ``Store`` Protocol of ``models.api`` (see there for the contract)."""

    def __init__(self, registry: ResourceRegistry | None = None, *, event_history: int = 1000) -> None:
        self.registry = registry or builtin_registry()
        self.allocator = Allocator()
        self.lock = threading.RLock()
        self.events = EventLog(self.lock, event_history)
        self._objects: dict[tuple[str, str], dict[tuple[str, str], Obj]] = {}
        self._types: dict[tuple[str, str], ResourceType] = {}
        self._rv = 0
        self._subscribers: list[Callable[[StoreEvent], None]] = []
        self._pending: deque[StoreEvent] = deque()
        self._dispatch_lock = threading.Lock()
        self._dispatching = threading.local()
        for name in PROTECTED_NAMESPACES:
            if not self._find(NAMESPACES, None, name):
                self.create(NAMESPACES, None, {"metadata": {"name": name}})

    # --- reads -------------------------------------------------------------------------------

    @property
    def history(self) -> deque[HistoryEntry]:
        return self.events.history

    @property
    def closed(self) -> bool:
        return self.events.closed

    @property
    def resource_version(self) -> int:
        return self._rv

    def cluster_uid(self) -> str:
        """kube-system's UID: the cluster identity, new for every store."""
        return self.get(NAMESPACES, None, "kube-system")["metadata"]["uid"]

    def get(self, rt: ResourceType, namespace: str | None, name: str, *, subresource: str | None = None) -> Obj:
        with self.lock:
            obj = self._require(rt, namespace, name)
            if subresource == "scale":
                return self._scale_view(obj)
            return clone(obj)

    def list(
        self, rt: ResourceType, namespace: str | None = None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        with self.lock:
            objects = self._objects.get(_type_key(rt), {})
            matched = [
                clone(obj) for (ns, _), obj in sorted(objects.items())
                if (namespace is None or ns == namespace)
                and labels_match(labels, obj["metadata"].get("labels"))
                and fields_match(fields, obj)
            ]
            return matched, self._rv

    # --- writes ------------------------------------------------------------------------------

    def create(self, rt: ResourceType, namespace: str | None, obj: Obj, *, dry_run: bool = False) -> Obj:
        info = self.registry.info(rt)
        new = clone(obj)
        meta = new.setdefault("metadata", {})
        namespace = self._namespace_for(info, namespace, meta)
        with self.lock:
            if rt.namespaced and not self._find(NAMESPACES, None, namespace or ""):
                raise errors.NotFound.of("namespaces", namespace or "")
            if not meta.get("name"):
                if not meta.get("generateName"):
                    raise errors.Invalid.field(rt.kind, None, "metadata.name",
                                               "Required value: name or generateName is required")
                meta["name"] = self._generate_name(rt, namespace, meta["generateName"])
            if self._find(rt, namespace, meta["name"]):
                raise errors.AlreadyExists.of(rt.plural, meta["name"], rt.group)
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            meta.update(uid=str(uuid.uuid4()), creationTimestamp=now_rfc3339())
            for transient in ("resourceVersion", "deletionTimestamp", "deletionGracePeriodSeconds"):
                meta.pop(transient, None)
            if info.has_spec:
                meta["generation"] = 1
            self._run_hooks(info, new, None)
            if dry_run:
                return new
            self._commit("ADDED", rt, namespace, new, None)
        self._dispatch()
        return clone(new)

    def replace(
        self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, *,
        subresource: str | None = None, dry_run: bool = False,
    ) -> Obj:
        with self.lock:
            current = self._require(rt, namespace, name)
            result = self._update(rt, current, clone(obj), subresource, dry_run)
        self._dispatch()
        return result

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, patch: Any, patch_type: str, *,
        subresource: str | None = None, dry_run: bool = False,
    ) -> Obj:
        kind = patch_kind(patch_type)
        if kind == APPLY and subresource is None and isinstance(patch, dict):
            with self.lock:
                missing = self._find(rt, namespace, name) is None
            if missing:  # server-side apply creates what is missing
                body = clone(patch)
                body.setdefault("metadata", {})["name"] = name
                try:
                    return self.create(rt, namespace, body, dry_run=dry_run)
                except errors.AlreadyExists:
                    pass  # created meanwhile: apply it as a patch below
        with self.lock:
            current = self._find(rt, namespace, name)
            if current is None:
                raise errors.NotFound.of(rt.plural, name, rt.group)
            base = self._scale_view(current) if subresource == "scale" else current
            # A copy, since patch results share unchanged subtrees with the stored object. The
            # result keeps the stored resourceVersion unless the patch itself names one, so a
            # patch conflicts only when it asks to.
            patched = clone(apply_patch(base, patch, kind))
            result = self._update(rt, current, patched, subresource, dry_run)
        self._dispatch()
        return result

    def update_status(self, rt: ResourceType, namespace: str | None, name: str, status: Obj) -> Obj:
        with self.lock:
            current = self._require(rt, namespace, name)
            new = dict(current)
            new["status"] = clone(status)
            if new != current:
                self._commit("MODIFIED", rt, namespace, new, current)
            result = clone(self._objects[_type_key(rt)][(namespace or "", name)])
        self._dispatch()
        return result

    def delete(
        self, rt: ResourceType, namespace: str | None, name: str, *, dry_run: bool = False,
        propagation_policy: str | None = None, grace_period_seconds: int | None = None,
        preconditions: Obj | None = None,
    ) -> Obj:
        """Delete an object, or mark it deleting while it has finalizers.

        Finalizers are also the seam for graceful pod termination: a runtime that runs real
        processes adds one to its pods, sees deletionTimestamp and deletionGracePeriodSeconds,
        stops the process, then removes its finalizer, which completes the deletion.

        Dependents (by ownerReferences) are the garbage collector's business
        (``controllers.garbage``), as on a cluster: with Background (the default) the owner goes
        at once and the collector deletes its dependents afterwards; Foreground and Orphan put
        the ``foregroundDeletion`` / ``orphan`` finalizer on the owner, which the collector
        removes once the blocking dependents are gone / the dependents are let go. A
        namespace's objects go with it in this call.
        """
        if propagation_policy not in (None, "Background", "Foreground", "Orphan"):
            raise errors.BadRequest(f'propagationPolicy: Unsupported value: "{propagation_policy}": '
                                    'supported values: "Foreground", "Background", "Orphan"')
        with self.lock:
            current = self._require(rt, namespace, name)
            if rt == NAMESPACES and name in PROTECTED_NAMESPACES:
                raise errors.Forbidden(f'namespaces "{name}" is forbidden: this namespace may not be deleted')
            self._check_preconditions(rt, current, preconditions)
            if dry_run:
                return clone(current)
            policy = propagation_policy or self.registry.info(rt).default_propagation
            result = self._delete(rt, namespace, current, policy, grace_period_seconds)
        self._dispatch()
        return result

    def objects_metadata(self) -> list[tuple[ResourceType, Obj]]:
        """(type, metadata copy) of every stored object: what the garbage collector's graph needs."""
        with self.lock:
            return [(self._types[key], clone(obj["metadata"]))
                    for key, objects in self._objects.items() for obj in objects.values()]

    def subscribe(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """Call callback (quickly: enqueue, do not block) after every committed write, in order.

        Callbacks run outside the store lock, one event at a time; a callback may write to the
        store, and the resulting events are delivered after the current one.
        """
        with self.lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self.lock:
                if callback in self._subscribers:
                    self._subscribers.remove(callback)
        return unsubscribe

    def watch(
        self, rt: ResourceType, namespace: str | None, resource_version: int | None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> Watcher:
        """A Watcher (an iterator that also has ``poll(timeout)`` and ``close()``).

        With no (or 0) resource_version it first yields ADDED for every matching object.
        """
        labels, fields = parse_label_selector(label_selector), parse_field_selector(field_selector)
        with self.lock:
            initial: list[StoreEvent] = []
            if not resource_version:
                objects, _ = self.list(rt, namespace, label_selector=label_selector, field_selector=field_selector)
                initial = [StoreEvent("ADDED", rt, o, int(o["metadata"]["resourceVersion"])) for o in objects]
                resource_version = self._rv
            elif self.history and resource_version < self.history[0].event.resource_version - 1:
                raise errors.Gone(f"too old resource version: {resource_version} "
                                  f"({self.history[0].event.resource_version - 1})")
            return Watcher(self.events, rt, namespace, resource_version, labels, fields, initial)

    def close(self) -> None:
        """End every watch (used when a server resets or stops)."""
        self.events.close()

    # --- internals -------------------------------------------------------------------------

    def _namespace_for(self, info: ResourceInfo, namespace: str | None, meta: Obj) -> str | None:
        if not info.type.namespaced:
            meta.pop("namespace", None)
            return None
        if namespace and meta.get("namespace") and meta["namespace"] != namespace:
            raise errors.BadRequest("the namespace of the provided object does not match the namespace sent on the request")
        namespace = namespace or meta.get("namespace") or "default"
        meta["namespace"] = namespace
        return namespace

    def _find(self, rt: ResourceType, namespace: str | None, name: str) -> Obj | None:
        return self._objects.get(_type_key(rt), {}).get(((namespace or "") if rt.namespaced else "", name))

    def _require(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        obj = self._find(rt, namespace, name)
        if obj is None:
            raise errors.NotFound.of(rt.plural, name, rt.group)
        return obj

    def _generate_name(self, rt: ResourceType, namespace: str | None, prefix: str) -> str:
        while True:
            name = prefix + "".join(_random.choice(_NAME_CHARS) for _ in range(5))
            if not self._find(rt, namespace, name):
                return name

    def _run_hooks(self, info: ResourceInfo, new: Obj, old: Obj | None) -> None:
        if info.on_write:
            info.on_write(new, old, self.allocator)
        if info.validate:
            info.validate(new, old, self.allocator)

    def _scale_view(self, obj: Obj) -> Obj:
        meta = obj["metadata"]
        return {
            "kind": "Scale", "apiVersion": "autoscaling/v1",
            "metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion", "creationTimestamp") if k in meta},
            "spec": {"replicas": obj.get("spec", {}).get("replicas", 0)},
            "status": {"replicas": obj.get("status", {}).get("replicas", 0),
                       "selector": selector_to_string(obj.get("spec", {}).get("selector"))},
        }

    def _update(self, rt: ResourceType, current: Obj, obj: Obj, subresource: str | None, dry_run: bool) -> Obj:
        """The shared tail of PUT and PATCH: merge by subresource, check, default, commit."""
        info = self.registry.info(rt)
        meta_in = obj.get("metadata") or {}
        name, namespace = current["metadata"]["name"], current["metadata"].get("namespace")
        if meta_in.get("name") not in (None, name):
            raise errors.BadRequest(f"the name of the object ({meta_in.get('name')}) does not match the name on the URL ({name})")
        stale = meta_in.get("resourceVersion")
        if stale and stale != current["metadata"]["resourceVersion"]:
            raise errors.Conflict.stale(rt.plural, name, rt.group)
        if subresource == "scale":
            new = clone(current)
            new.setdefault("spec", {})["replicas"] = (obj.get("spec") or {}).get("replicas", 0)
        elif subresource == "status":
            new = dict(current)
            new["status"] = obj.get("status", {})
        else:
            new = obj
            if "status" in info.subresources:  # the main resource cannot change status
                if "status" in current:
                    new["status"] = current["status"]
                else:
                    new.pop("status", None)
            meta = new.setdefault("metadata", {})
            for kept in ("uid", "creationTimestamp", "generation", "deletionTimestamp", "namespace"):
                if kept in current["metadata"]:
                    meta[kept] = current["metadata"][kept]
            meta["name"] = name
            new["apiVersion"], new["kind"] = rt.api_version, rt.kind
            self._run_hooks(info, new, current)
        new = dict(new)
        new["metadata"] = dict(new["metadata"])
        new["metadata"]["resourceVersion"] = current["metadata"]["resourceVersion"]
        if info.has_spec and new.get("spec") != current.get("spec"):
            new["metadata"]["generation"] = current["metadata"].get("generation", 0) + 1
        finished = (current["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"))
        if new != current and not dry_run:
            if finished:  # the last finalizer is gone: the deletion completes
                self._remove(rt, namespace, new, current)
            else:
                self._commit("MODIFIED", rt, namespace, new, current)
        return self._scale_view(new) if subresource == "scale" else clone(new)

    def _check_preconditions(self, rt: ResourceType, current: Obj, preconditions: Obj | None) -> None:
        """DeleteOptions.preconditions: the uid and/or resourceVersion the caller expects."""
        meta = current["metadata"]
        for field in ("uid", "resourceVersion"):
            wanted = (preconditions or {}).get(field)
            if wanted and wanted != meta.get(field):
                raise errors.Conflict(
                    f'Operation cannot be fulfilled on {rt.plural} "{meta["name"]}": Precondition failed: '
                    f"{field.upper() if field == 'uid' else 'ResourceVersion'} in precondition: {wanted}, "
                    f"{field.upper() if field == 'uid' else 'ResourceVersion'} in object meta: {meta.get(field)}")

    def _delete(self, rt: ResourceType, namespace: str | None, current: Obj, policy: str | None,
                grace_period_seconds: int | None = None) -> Obj:
        meta = current["metadata"]
        finalizers = list(meta.get("finalizers") or [])
        gc_finalizer = {"Orphan": ORPHAN_FINALIZER, "Foreground": FOREGROUND_FINALIZER}.get(policy or "")
        if gc_finalizer and not meta.get("deletionTimestamp") and gc_finalizer not in finalizers:
            finalizers.append(gc_finalizer)
        if finalizers:
            if meta.get("deletionTimestamp"):
                return clone(current)
            new = dict(current)
            # The grace period is for whoever holds the finalizer (a pod runtime stopping a
            # process): the request's, else the pod's terminationGracePeriodSeconds.
            if grace_period_seconds is None:
                grace_period_seconds = current.get("spec", {}).get("terminationGracePeriodSeconds", 0)
            new["metadata"] = dict(meta, deletionTimestamp=now_rfc3339(), finalizers=finalizers,
                                   deletionGracePeriodSeconds=grace_period_seconds)
            self._commit("MODIFIED", rt, namespace, new, current)
            return clone(new)
        return self._remove(rt, namespace, current, current)

    def _remove(self, rt: ResourceType, namespace: str | None, final: Obj, current: Obj) -> Obj:
        if rt == NAMESPACES:
            self._delete_namespace_contents(final["metadata"]["name"])
        self._commit("DELETED", rt, namespace, final, current)
        return clone(final)

    def _delete_namespace_contents(self, namespace: str) -> None:
        for key, objects in list(self._objects.items()):
            rt = self._types[key]
            for (ns, name), obj in list(objects.items()):
                if ns == namespace and (ns, name) in objects:
                    self._remove(rt, ns, obj, obj)

    def _commit(self, kind: str, rt: ResourceType, namespace: str | None, new: Obj, old: Obj | None) -> None:
        self._rv += 1
        if new is old or new.get("metadata") is (old or {}).get("metadata"):
            new = dict(new)
            new["metadata"] = dict(new["metadata"])
        new["metadata"]["resourceVersion"] = str(self._rv)
        objects = self._objects.setdefault(_type_key(rt), {})
        key = ((namespace or "") if rt.namespaced else "", new["metadata"]["name"])
        self._types[_type_key(rt)] = rt
        if kind == "DELETED":
            objects.pop(key, None)
        else:
            objects[key] = new
        event = StoreEvent(kind, rt, new, self._rv)  # type: ignore[arg-type]
        if self._subscribers:
            self._pending.append(event)
        self.events.append(HistoryEntry(event, old))

    def _dispatch(self) -> None:
        """Deliver pending events to subscribers in order, outside the store lock."""
        if getattr(self._dispatching, "active", False):
            return  # a callback wrote: the outer loop below delivers the new events next
        with self._dispatch_lock:
            self._dispatching.active = True
            try:
                while True:
                    with self.lock:
                        if not self._pending:
                            return
                        event = self._pending.popleft()
                        subscribers = list(self._subscribers)
                    copy_for_callbacks = StoreEvent(event.type, event.resource, clone(event.object),
                                                    event.resource_version)
                    for callback in subscribers:
                        callback(copy_for_callbacks)
            finally:
                self._dispatching.active = False
