"""Events about pods, written to the real API server as the kubelet writes them.

Repeats of the same reason and message for the same object are folded into one Event whose
``count`` and ``lastTimestamp`` advance (the client-go event correlator does this), so a pod
failing its readiness probe every half second yields one line in ``kubectl get events``.
"""
from __future__ import annotations

import secrets
import threading
from typing import Any

from ..kube import EVENTS, ApiError, ClusterStore, now_rfc3339

__all__ = ["EventRecorder"]

Obj = dict[str, Any]


class EventRecorder:
    """Records core/v1 Events with involvedObject set; thread-safe, never raises."""

    def __init__(self, store: ClusterStore, component: str, host: str) -> None:
        self._store = store
        self._component = component
        self._host = host
        self._seen: dict[tuple[str, str, str, str], tuple[str, int]] = {}  # key -> (event name, count)
        self._lock = threading.Lock()

    def record(self, obj: Obj, kind: str, reason: str, message: str, *, warning: bool = False,
               field_path: str | None = None, component: str | None = None) -> None:
        meta = obj["metadata"]
        namespace = meta.get("namespace") or "default"
        key = (meta.get("uid", ""), reason, message, field_path or "")
        now = now_rfc3339()
        with self._lock:
            seen = self._seen.get(key)
            try:
                if seen is not None:
                    name, count = seen
                    self._store.patch(EVENTS, namespace, name, {"count": count + 1, "lastTimestamp": now}, "merge")
                    self._seen[key] = (name, count + 1)
                    return
            except ApiError:
                pass  # the event was deleted (a namespace went away): write a new one
            involved: Obj = {"kind": kind, "namespace": namespace, "name": meta["name"], "uid": meta.get("uid"),
                             "apiVersion": obj.get("apiVersion", "v1"), "resourceVersion": meta.get("resourceVersion")}
            if field_path:
                involved["fieldPath"] = field_path
            source = component or self._component
            event = {
                # The API server's naming: object name, a dot, a unique hex suffix.
                "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": namespace},
                "involvedObject": involved, "reason": reason, "message": message,
                "source": {"component": source, "host": self._host} if source == "kubelet" else {"component": source},
                "firstTimestamp": now, "lastTimestamp": now, "count": 1,
                "type": "Warning" if warning else "Normal",
                "reportingComponent": source, "reportingInstance": self._host if source == "kubelet" else "",
            }
            try:
                created = self._store.create(EVENTS, namespace, event)
                self._seen[key] = (created["metadata"]["name"], 1)
            except ApiError:
                pass  # the namespace is being deleted: nobody will read this event

    def forget(self, uid: str) -> None:
        """Drop the folding state of an object that is gone."""
        with self._lock:
            for key in [k for k in self._seen if k[0] == uid]:
                del self._seen[key]
