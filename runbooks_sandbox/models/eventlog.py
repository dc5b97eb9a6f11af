"""The store's event log: every committed write as an event, by resourceVersion, and the
condition watchers wait on.

The store appends (under its lock); watchers read (under the same lock, through ``changed``).
Both depend on this module and neither on the other, so a watch needs no store to be tested.
"""
from __future__ import annotations

import threading
from collections import deque
from dataclasses import dataclass

from .api import Obj, StoreEvent

__all__ = ["EventLog", "HistoryEntry"]


@dataclass(frozen=True)
class HistoryEntry:
    """A committed event plus the object before it (for selector transitions in watches)."""

    event: StoreEvent
    old: Obj | None


class EventLog:
    """A bounded history of committed events, one per resourceVersion, contiguous."""

    def __init__(self, lock: threading.RLock, max_events: int) -> None:
        self.history: deque[HistoryEntry] = deque(maxlen=max_events)
        self.changed = threading.Condition(lock)  # notified on every append and on close
        self.closed = False

    def append(self, entry: HistoryEntry) -> None:
        """Record a committed event (the caller holds the store's lock) and wake the watchers."""
        self.history.append(entry)
        self.changed.notify_all()

    def oldest(self) -> int | None:
        """The resourceVersion of the oldest event still kept."""
        return self.history[0].event.resource_version if self.history else None

    def close(self) -> None:
        """End every watch (the store is being reset or stopped)."""
        with self.changed:
            self.closed = True
            self.changed.notify_all()
