"""The garbage collector: deletes objects whose owners are gone, as kube-controller-manager's does.

As pkg/controller/garbagecollector, in small: a graph of ``ownerReferences`` (uid -> owners,
owner uid -> dependents) kept current from every store event, and one worker that

- deletes a dependent once none of its owners exists any more (an owner "exists" when the API
  finds an object of that kind, name and uid; the graph only says whom to check),
- on an owner marked ``foregroundDeletion`` deletes every dependent and removes the finalizer
  once no dependent with ``blockOwnerDeletion`` is left in the store (so ``deletionTimestamp``
  shows while they terminate),
- on an owner marked ``orphan`` removes its ownerReference from every dependent, then the
  finalizer.

Background deletion (the default) needs nothing special: the owner is gone at once, its
dependents become ownerless and are deleted here. Because the collector acts on what exists,
not on the delete call, it also collects what a controller created from a stale copy of an
owner deleted meanwhile (a ReplicaSet's pod created a moment after the ReplicaSet went), and
the periodic resync re-checks every ownerless-looking object as a safety net.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any, Hashable

from ..api import ResourceType, Store, StoreEvent
from ..errors import NotFound
from ..store import FOREGROUND_FINALIZER, ORPHAN_FINALIZER
from .meta import Obj
from .queue import WorkQueue

__all__ = ["GarbageCollector"]

log = logging.getLogger(__name__)
MERGE = "application/merge-patch+json"
# Keys: ("dependent", uid) checks whether an object's owners still exist;
# ("owner", uid) processes an owner being deleted with the orphan or foreground finalizer.
DEPENDENT, OWNER = "dependent", "owner"


@dataclass(frozen=True)
class _Node:
    """What the graph knows of one object (from its last event)."""

    rt: ResourceType
    namespace: str | None
    name: str
    owners: tuple[Obj, ...]
    deleting: bool
    finalizers: tuple[str, ...]

    @property
    def waiting_for_dependents(self) -> bool:
        return self.deleting and FOREGROUND_FINALIZER in self.finalizers


def _node(rt: ResourceType, meta: Obj) -> _Node:
    return _Node(rt, meta.get("namespace"), meta["name"], tuple(meta.get("ownerReferences") or ()),
                 bool(meta.get("deletionTimestamp")), tuple(meta.get("finalizers") or ()))


class GarbageCollector:
    name = "garbage-collector"

    def __init__(self, store: Store, queue: WorkQueue) -> None:
        self.store = store
        self.queue = queue
        self.registry: Any = getattr(store, "registry", None)
        self._lock = threading.Lock()
        self._nodes: dict[str, _Node] = {}
        self._dependents: dict[str, set[str]] = {}  # owner uid (present or not) -> dependent uids
        self._built = False

    # --- the graph (kept current from the store's events; callbacks must be quick) ---------

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        meta = event.object["metadata"]
        with self._lock:
            if event.type == "DELETED":
                return self._forget(meta["uid"])
            return self._observe(event.resource, meta)

    def _observe(self, rt: ResourceType, meta: Obj) -> list[Hashable]:
        uid, node = meta["uid"], _node(rt, meta)
        old = self._nodes.get(uid)
        self._nodes[uid] = node
        before = {r.get("uid") for r in old.owners} if old else set()
        after = {r.get("uid") for r in node.owners}
        for owner in before - after:
            self._dependents.get(owner, set()).discard(uid)
        for owner in after - before:
            self._dependents.setdefault(owner, set()).add(uid)
        keys: list[Hashable] = []
        if any(self._absent_or_waiting(r.get("uid")) for r in node.owners):
            keys.append((DEPENDENT, uid))
        if node.deleting and (ORPHAN_FINALIZER in node.finalizers or FOREGROUND_FINALIZER in node.finalizers):
            keys.append((OWNER, uid))
            if node.waiting_for_dependents and not (old and old.waiting_for_dependents):
                keys += [(DEPENDENT, d) for d in self._dependents.get(uid, ())]
        # A foreground owner may be waiting for this object to stop referring to it.
        keys += [(OWNER, o) for o in before - after if self._waiting(o)]
        return keys

    def _forget(self, uid: str) -> list[Hashable]:
        node = self._nodes.pop(uid, None)
        keys: list[Hashable] = [(DEPENDENT, d) for d in self._dependents.get(uid, ())]
        if node is not None:
            for ref in node.owners:
                owner = ref.get("uid")
                self._dependents.get(owner, set()).discard(uid)
                if self._waiting(owner):
                    keys.append((OWNER, owner))
        if not self._dependents.get(uid):
            self._dependents.pop(uid, None)
        return keys

    def _absent_or_waiting(self, owner_uid: str | None) -> bool:
        node = self._nodes.get(owner_uid or "")
        return node is None or node.waiting_for_dependents

    def _waiting(self, owner_uid: str | None) -> bool:
        node = self._nodes.get(owner_uid or "")
        return node is not None and node.deleting

    def all_keys(self) -> list[Hashable]:
        """Resync: every object whose owners look gone, and every owner waiting on the collector."""
        snapshot = self.store.objects_metadata()  # type: ignore[attr-defined]
        with self._lock:
            if not self._built:  # the first resync also fills the graph with what existed before
                self._built = True
                for rt, meta in snapshot:
                    if meta["uid"] not in self._nodes:
                        self._observe(rt, meta)
            keys: list[Hashable] = []
            for uid, node in self._nodes.items():
                if any(self._absent_or_waiting(r.get("uid")) for r in node.owners):
                    keys.append((DEPENDENT, uid))
                if node.deleting and (ORPHAN_FINALIZER in node.finalizers or FOREGROUND_FINALIZER in node.finalizers):
                    keys.append((OWNER, uid))
            return keys

    # --- the worker ------------------------------------------------------------------------

    def sync(self, key: Hashable) -> None:
        kind, uid = key  # type: ignore[misc]
        obj = self._live(uid)
        if obj is None:
            return
        if kind == DEPENDENT:
            self._attempt_to_delete(obj)
        else:
            self._process_deleting_owner(obj)

    def _live(self, uid: str) -> Obj | None:
        """The object as stored now, or None (and out of the graph) when it is gone."""
        with self._lock:
            node = self._nodes.get(uid)
        if node is None:
            return None
        try:
            obj = self.store.get(node.rt, node.namespace, node.name)
        except NotFound:
            obj = None
        if obj is None or obj["metadata"]["uid"] != uid:
            with self._lock:
                if self._nodes.get(uid) is node:
                    self._forget(uid)
            return None
        return obj

    def _owner_state(self, dependent: Obj, ref: Obj) -> str:
        """"solid" (exists), "dangling" (gone) or "waiting" (being deleted in the foreground)."""
        rt = self._owner_type(ref)
        if rt is None:
            return "solid"  # a kind the sandbox does not serve: never delete on a guess
        namespace = dependent["metadata"].get("namespace") if rt.namespaced else None
        try:
            owner = self.store.get(rt, namespace, ref.get("name", ""))
        except NotFound:
            return "dangling"
        meta = owner["metadata"]
        if meta["uid"] != ref.get("uid"):
            return "dangling"  # a new object with the old name is not the owner
        if meta.get("deletionTimestamp") and FOREGROUND_FINALIZER in (meta.get("finalizers") or []):
            return "waiting"
        return "solid"

    def _owner_type(self, ref: Obj) -> ResourceType | None:
        if self.registry is None:
            return None
        group = ref.get("apiVersion", "").rpartition("/")[0]
        info = self.registry.by_kind(ref.get("kind", ""), group)
        return info.type if info is not None else None

    def _attempt_to_delete(self, obj: Obj) -> None:
        meta = obj["metadata"]
        refs = meta.get("ownerReferences") or []
        if not refs:
            return
        states = {ref.get("uid"): self._owner_state(obj, ref) for ref in refs}
        if "solid" in states.values():
            # Still owned: only drop the references to owners that are gone or going.
            stale = {uid for uid, state in states.items() if state != "solid"}
            if stale:
                self._remove_references(obj, stale)
            return
        if meta.get("deletionTimestamp"):
            return  # already being deleted (its own finalizers hold it)
        finalizers = meta.get("finalizers") or []
        if "waiting" in states.values() and self._has_dependents(meta["uid"]):
            policy = "Foreground"  # so that the owner keeps waiting for the whole subtree
        elif ORPHAN_FINALIZER in finalizers:
            policy = "Orphan"
        elif FOREGROUND_FINALIZER in finalizers:
            policy = "Foreground"
        else:
            policy = "Background"
        self._delete(obj, policy)

    def _process_deleting_owner(self, owner: Obj) -> None:
        meta = owner["metadata"]
        if not meta.get("deletionTimestamp"):
            return
        finalizers = meta.get("finalizers") or []
        uid = meta["uid"]
        if ORPHAN_FINALIZER in finalizers:
            for dependent in self._live_dependents(uid):
                self._remove_references(dependent, {uid})
            self._remove_finalizer(owner, ORPHAN_FINALIZER)
        elif FOREGROUND_FINALIZER in finalizers:
            blocking = 0
            for dependent in self._live_dependents(uid):
                ref = next((r for r in dependent["metadata"].get("ownerReferences") or [] if r.get("uid") == uid), None)
                if ref is None:
                    continue
                if ref.get("blockOwnerDeletion"):
                    blocking += 1
                if not dependent["metadata"].get("deletionTimestamp"):
                    self._attempt_to_delete(dependent)
            if blocking == 0:
                self._remove_finalizer(owner, FOREGROUND_FINALIZER)

    def _has_dependents(self, uid: str) -> bool:
        with self._lock:
            return bool(self._dependents.get(uid))

    def _live_dependents(self, uid: str) -> list[Obj]:
        with self._lock:
            uids = list(self._dependents.get(uid, ()))
        return [obj for obj in map(self._live, uids) if obj is not None]

    # --- writes (each guarded by uid or resourceVersion: a conflict means "look again") -----

    def _delete(self, obj: Obj, policy: str) -> None:
        meta = obj["metadata"]
        with self._lock:
            node = self._nodes.get(meta["uid"])
        if node is None:
            return
        log.debug("deleting %s %s/%s (owners gone, %s)", node.rt.kind, node.namespace, node.name, policy)
        try:
            self.store.delete(node.rt, node.namespace, node.name, propagation_policy=policy,
                              preconditions={"uid": meta["uid"]})
        except NotFound:
            pass

    def _remove_references(self, obj: Obj, owner_uids: set[str]) -> None:
        meta = obj["metadata"]
        remaining = [r for r in meta.get("ownerReferences") or [] if r.get("uid") not in owner_uids]
        self._patch_metadata(obj, {"ownerReferences": remaining or None})

    def _remove_finalizer(self, obj: Obj, finalizer: str) -> None:
        remaining = [f for f in obj["metadata"].get("finalizers") or [] if f != finalizer]
        self._patch_metadata(obj, {"finalizers": remaining or None})

    def _patch_metadata(self, obj: Obj, fields: Obj) -> None:
        meta = obj["metadata"]
        with self._lock:
            node = self._nodes.get(meta["uid"])
        if node is None:
            return
        patch = {"metadata": {**fields, "resourceVersion": meta["resourceVersion"]}}
        try:
            self.store.patch(node.rt, node.namespace, node.name, patch, MERGE)
        except NotFound:
            pass
