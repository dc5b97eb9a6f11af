"""``ClusterStore``: the sandbox's parts read and write the real API server through this.

Objects are plain dicts as the API serialises them; ``get``, ``list`` (returns ``(items,
resourceVersion)``), ``create``, ``replace``, ``patch``, ``delete``, ``update_status`` and
``subscribe``; failures are :mod:`.errors` classes. In particular:

- ``subscribe(callback, resources, ...)`` names what to watch: each type gets an
  :class:`~.informer.Informer` (a thread, a list and a watch), optionally narrowed to a namespace
  and selectors (a node watches ``spec.nodeName=<node>``, the only pod list its authorizer
  allows). The callback first receives an ``ADDED`` for every object that exists, then changes
  as they happen (see :mod:`.informer`).
- ``patch`` takes the patch type by short name (``merge``, ``strategic-merge``, ``json-patch``,
  ``apply``) or media type; ``apply`` needs a ``field_manager``.
- ``delete`` passes DeleteOptions: ``grace_period_seconds``, ``preconditions`` (``{"uid": ...}``),
  ``propagation_policy``, ``dry_run``.
- ``update_status`` is a PATCH of the ``status`` subresource (merge patch unless told).
- ``watch`` returns a :class:`~.informer.WatchStream` (closable from another thread).

Typical use::

    store = ClusterStore.from_kubeconfig(path, context="sandbox-admin")
    pods, rv = store.list(PODS, "veza-sandbox", label_selector="app=veza-backend-api")
    subscription = store.subscribe(on_event, [SERVICES, ENDPOINTSLICES])
    subscription.wait_synced(10)
    ...
    store.close()  # stops every informer, drops connections
"""
from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from .client import CONTENT_TYPES, ApiClient, Credentials
from .informer import Informer, StoreEvent, Subscription, WatchStream, parse_resource_version
from .resources import ResourceType

__all__ = ["ClusterStore"]

Obj = dict[str, Any]
_PAGE = 500  # list page size: one round trip for anything the sandbox holds, bounded for the rest


class ClusterStore:
    """Objects of the real API server by type, namespace and name (see the module doc).

    Thread-safe. ``credentials`` decide who we are (a person, the admin, a node); ``timeout`` is
    the read timeout of one request; ``watch_timeout_s`` the server-side length of one watch
    (randomised by a fifth, so many informers do not all reconnect at once).
    """

    def __init__(self, credentials: Credentials, *, timeout: float = 30.0, user_agent: str = "veza-sandbox",
                 watch_timeout_s: float = 300.0, pool_size: int = 8) -> None:
        self.credentials = credentials
        self.api = ApiClient(credentials, timeout=timeout, user_agent=user_agent, pool_size=pool_size)
        self.watch_timeout_s = watch_timeout_s
        self.closed = False
        self._subscriptions: list[Subscription] = []
        self._lock = threading.Lock()

    @classmethod
    def from_kubeconfig(cls, path: str | Path, context: str | None = None, **options: Any) -> ClusterStore:
        return cls(Credentials.from_kubeconfig(path, context), **options)

    def close(self) -> None:
        """Stop every subscription's informers and drop the connections. Idempotent."""
        self.closed = True
        with self._lock:
            subscriptions, self._subscriptions = self._subscriptions, []
        for subscription in subscriptions:
            subscription.close()
        self.api.close()

    # -- reads --------------------------------------------------------------------------------
    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj:
        return self.api.request("GET", rt.path(namespace, name))

    def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[Obj], int | str]:
        """Matching objects (with ``kind`` and ``apiVersion`` filled in, as a watch has them) and the
        list's resourceVersion (an int for etcd's), read page by page from one snapshot."""
        items: list[Obj] = []
        query: dict[str, Any] = {"labelSelector": label_selector, "fieldSelector": field_selector, "limit": _PAGE}
        while True:
            page = self.api.request("GET", rt.path(namespace), query=query)
            for obj in page.get("items") or []:
                obj.setdefault("apiVersion", rt.api_version)
                obj.setdefault("kind", rt.kind)
                items.append(obj)
            meta = page.get("metadata") or {}
            if not meta.get("continue"):
                return items, parse_resource_version(meta.get("resourceVersion"))
            query["continue"] = meta["continue"]

    # -- writes -------------------------------------------------------------------------------
    def create(self, rt: ResourceType, namespace: str | None, obj: Obj, *, dry_run: bool = False,
               field_manager: str | None = None) -> Obj:
        namespace = namespace or (obj.get("metadata") or {}).get("namespace")
        body = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        return self.api.request("POST", rt.path(namespace), body=body, query=_write_query(dry_run, field_manager))

    def replace(self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, *,
                subresource: str | None = None, dry_run: bool = False, field_manager: str | None = None) -> Obj:
        """PUT: 409 Conflict when ``obj``'s resourceVersion is set and stale."""
        body = {"apiVersion": rt.api_version, "kind": rt.kind, **obj}
        return self.api.request("PUT", rt.path(namespace, name, subresource), body=body,
                                query=_write_query(dry_run, field_manager))

    def patch(self, rt: ResourceType, namespace: str | None, name: str, patch: Any,
              patch_type: str = "strategic-merge", *, subresource: str | None = None, dry_run: bool = False,
              field_manager: str | None = None, force: bool | None = None) -> Obj:
        """PATCH with ``patch_type`` (see :data:`~.client.CONTENT_TYPES`); ``apply`` needs ``field_manager``."""
        content_type = CONTENT_TYPES.get(patch_type, patch_type)
        if content_type == CONTENT_TYPES["apply"] and not field_manager:
            raise ValueError("a server-side apply needs a field_manager")
        if content_type == CONTENT_TYPES["apply"] and isinstance(patch, dict) and not subresource:
            # An applied configuration is a whole object: it must say what it is.
            patch = {"apiVersion": rt.api_version, "kind": rt.kind, **patch}
            patch["metadata"] = {"name": name, **(patch.get("metadata") or {})}
        query = _write_query(dry_run, field_manager)
        if force is not None:
            query["force"] = force
        return self.api.request("PATCH", rt.path(namespace, name, subresource), body=patch,
                                content_type=content_type, query=query)

    def update_status(self, rt: ResourceType, namespace: str | None, name: str, status: Obj, *,
                      patch_type: str = "merge") -> Obj:
        """PATCH ``{"status": status}`` to the status subresource (a merge patch unless told)."""
        return self.patch(rt, namespace, name, {"status": status}, patch_type, subresource="status")

    def delete(self, rt: ResourceType, namespace: str | None, name: str, *,
               grace_period_seconds: int | None = None, preconditions: Mapping[str, str] | None = None,
               propagation_policy: str | None = None, dry_run: bool = False) -> Obj:
        """DELETE with DeleteOptions; the answer: the object (now marked for deletion) or a Status."""
        options: Obj = {"apiVersion": "v1", "kind": "DeleteOptions"}
        if grace_period_seconds is not None:
            options["gracePeriodSeconds"] = int(grace_period_seconds)
        if preconditions:
            options["preconditions"] = dict(preconditions)
        if propagation_policy:
            options["propagationPolicy"] = propagation_policy
        if dry_run:
            options["dryRun"] = ["All"]
        return self.api.request("DELETE", rt.path(namespace, name), body=options)

    # -- changes ------------------------------------------------------------------------------
    def watch(self, rt: ResourceType, namespace: str | None = None, resource_version: int | str | None = None, *,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_s: float | None = None, bookmarks: bool = True) -> WatchStream:
        """One watch from ``resource_version`` (410 Gone, raised while iterating, when too old)."""
        seconds = timeout_s if timeout_s is not None else self.watch_timeout_s * random.uniform(0.8, 1.0)
        query = {"watch": True, "resourceVersion": resource_version or None, "labelSelector": label_selector,
                 "fieldSelector": field_selector, "allowWatchBookmarks": bookmarks or None,
                 "timeoutSeconds": int(seconds)}
        # The read timeout outlasts the server's own, so only a dead connection trips it.
        response = self.api.open("GET", rt.path(namespace), query=query, timeout=seconds + 30)
        return WatchStream(response, rt)

    def subscribe(self, callback: Callable[[StoreEvent], None], resources: Iterable[ResourceType], *,
                  namespace: str | None = None, label_selector: str | None = None,
                  field_selector: str | None = None) -> Subscription:
        """Start an informer per type in ``resources``; ``callback`` gets every change (module doc)."""
        types = list(resources)
        if not types:
            raise ValueError("subscribe: name the resource types to watch (e.g. [PODS])")
        informers = [Informer(self, rt, callback, namespace=namespace, label_selector=label_selector,
                              field_selector=field_selector) for rt in types]
        subscription = Subscription(informers)
        with self._lock:
            if self.closed:
                raise RuntimeError("subscribe on a closed ClusterStore")
            self._subscriptions.append(subscription)
        for informer in informers:
            informer.start()
        return subscription


def _write_query(dry_run: bool, field_manager: str | None) -> dict[str, Any]:
    return {"dryRun": "All" if dry_run else None, "fieldManager": field_manager}
