"""A watch over the store's event log: what both controllers and HTTP watches consume.

Events are read from the store's bounded history by resourceVersion (contiguous, one per write),
so a watcher that falls behind the history gets a 410 Gone, as from a real API server. Selector
transitions are translated as the watch cache does: an object that starts matching arrives as
ADDED, one that stops matching as DELETED.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Iterator

from .api import ResourceType, StoreEvent
from .errors import Gone
from .eventlog import EventLog, HistoryEntry
from .selectors import FieldRequirement, Requirement, fields_match, labels_match


class Watcher:
    """An iterator of StoreEvents (blocking), with ``poll(timeout)`` for servers and ``close()``."""

    def __init__(
        self, log: EventLog, rt: ResourceType, namespace: str | None, resource_version: int,
        labels: list[Requirement], fields: list[FieldRequirement], initial: list[StoreEvent],
    ) -> None:
        self._log = log
        self._type = (rt.group, rt.plural)
        self._namespace = namespace
        self._labels, self._fields = labels, fields
        self._initial = deque(initial)
        self._cursor = resource_version
        self._closed = False

    @property
    def resource_version(self) -> int:
        """Every event up to this resourceVersion has been delivered (for bookmarks)."""
        return self._cursor

    @property
    def closed(self) -> bool:
        return self._closed or self._log.closed

    def close(self) -> None:
        with self._log.changed:
            self._closed = True
            self._log.changed.notify_all()

    def poll(self, timeout: float | None) -> StoreEvent | None:
        """The next matching event, or None when the timeout passes or the watch is closed."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._log.changed:
            while True:
                if self._initial:
                    return self._initial.popleft()
                if self.closed:
                    return None
                event = self._next_from_history()
                if event is not None:
                    return event
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._log.changed.wait(remaining)

    def __iter__(self) -> Iterator[StoreEvent]:
        return self

    def __next__(self) -> StoreEvent:
        event = self.poll(None)
        if event is None:
            raise StopIteration
        return event

    def _next_from_history(self) -> StoreEvent | None:
        history = self._log.history
        if not history or self._cursor >= history[-1].event.resource_version:
            return None
        first = history[0].event.resource_version
        if self._cursor + 1 < first:
            raise Gone(f"too old resource version: {self._cursor} ({first - 1})")
        for index in range(self._cursor + 1 - first, len(history)):
            entry = history[index]
            self._cursor = entry.event.resource_version
            event = self._translate(entry)
            if event is not None:
                return event
        return None

    def _matches(self, obj: dict | None) -> bool:
        if obj is None:
            return False
        meta = obj.get("metadata", {})
        if self._namespace is not None and meta.get("namespace") != self._namespace:
            return False
        return labels_match(self._labels, meta.get("labels")) and fields_match(self._fields, obj)

    def _translate(self, entry: HistoryEntry) -> StoreEvent | None:
        event = entry.event
        if (event.resource.group, event.resource.plural) != self._type:
            return None
        now = self._matches(event.object)
        if event.type != "MODIFIED":
            return event if now else None
        before = self._matches(entry.old)
        if now and before:
            return event
        if now:
            return StoreEvent("ADDED", event.resource, event.object, event.resource_version)
        if before:
            return StoreEvent("DELETED", event.resource, event.object, event.resource_version)
        return None
