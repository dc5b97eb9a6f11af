"""The ServiceAccounts controller: a ``default`` ServiceAccount in every namespace.

As pkg/controller/serviceaccount: when a namespace appears (or its ``default`` ServiceAccount
is deleted) the controller creates it; namespaces being deleted are left alone. Pods that name
no serviceAccountName run as ``default``, and tools (Helm, kubectl auth can-i, the client's
``list_namespaced_service_account``) expect it to be there.
"""
from __future__ import annotations

from typing import Hashable

from ..api import Store, StoreEvent
from ..errors import AlreadyExists, NotFound
from ..resources import NAMESPACES, SERVICEACCOUNTS
from .meta import is_terminating, name_of
from .queue import WorkQueue

__all__ = ["ServiceAccountsController"]

DEFAULT_ACCOUNT = "default"


class ServiceAccountsController:
    name = "serviceaccount-controller"

    def __init__(self, store: Store, queue: WorkQueue) -> None:
        self.store = store
        self.queue = queue

    def keys_for(self, event: StoreEvent) -> list[Hashable]:
        obj = event.object
        if event.resource == NAMESPACES and event.type == "ADDED":
            return [name_of(obj)]
        if event.resource == SERVICEACCOUNTS and event.type == "DELETED" and name_of(obj) == DEFAULT_ACCOUNT:
            return [obj["metadata"].get("namespace")]
        return []

    def all_keys(self) -> list[Hashable]:
        return [name_of(ns) for ns in self.store.list(NAMESPACES)[0]]

    def sync(self, key: Hashable) -> None:
        namespace = str(key)
        try:
            ns = self.store.get(NAMESPACES, None, namespace)
        except NotFound:
            return
        if is_terminating(ns) or (ns.get("status") or {}).get("phase") == "Terminating":
            return
        try:
            self.store.get(SERVICEACCOUNTS, namespace, DEFAULT_ACCOUNT)
            return
        except NotFound:
            pass
        try:
            self.store.create(SERVICEACCOUNTS, namespace, {"metadata": {"name": DEFAULT_ACCOUNT}})
        except (AlreadyExists, NotFound):
            pass  # created meanwhile, or the namespace went
