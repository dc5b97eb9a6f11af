"""Kubernetes Events recorded by the controllers (what ``kubectl describe`` shows at the end).

Shaped as client-go's event recorder writes core/v1 Events: named ``<object>.<hex nanos>``,
with involvedObject, source and reportingComponent. Repeats are not aggregated into counts.
"""
from __future__ import annotations

import logging
import time

from ..api import Store
from ..errors import AlreadyExists, ApiError
from ..resources import EVENTS
from .meta import Obj, rfc3339, utcnow

log = logging.getLogger(__name__)


class EventRecorder:
    def __init__(self, store: Store, component: str) -> None:
        self.store = store
        self.component = component

    def event(self, obj: Obj, kind: str, reason: str, message: str) -> None:
        """Record an event about obj; kind is "Normal" or "Warning". Never raises."""
        meta = obj["metadata"]
        stamp = rfc3339(utcnow())
        event = {
            "metadata": {"name": f"{meta['name']}.{time.time_ns():x}", "namespace": meta.get("namespace")},
            "involvedObject": {
                "kind": obj.get("kind"), "namespace": meta.get("namespace"), "name": meta["name"],
                "uid": meta.get("uid"), "apiVersion": obj.get("apiVersion"),
                "resourceVersion": meta.get("resourceVersion"),
            },
            "reason": reason,
            "message": message,
            "source": {"component": self.component},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": 1,
            "type": kind,
            "eventTime": None,
            "reportingComponent": self.component,
            "reportingInstance": "",
        }
        try:
            self.store.create(EVENTS, meta.get("namespace"), event)
        except AlreadyExists:
            event["metadata"]["name"] += "a"
            self.store.create(EVENTS, meta.get("namespace"), event)
        except ApiError as error:  # events are best effort, as in client-go
            log.debug("event %s for %s dropped: %s", reason, meta["name"], error.message)
