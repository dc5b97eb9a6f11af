"""Watch streams and informers: the API server's changes delivered to callbacks, as client-go does it.

:class:`WatchStream` reads one ``?watch=1`` response (JSON lines) as :class:`StoreEvent` values
and can be closed from another thread (which is how an informer stops).

:class:`Informer` keeps one resource type (optionally one namespace, label and field selector)
in step with the server on a thread of its own: it lists, hands the callback a synthetic
``ADDED`` for every object listed, then watches from the list's resourceVersion. A watch that
ends at the server's timeout is reopened from the last resourceVersion seen (bookmarks keep it
fresh); a 410 Gone (etcd compacted past it) relists at once; a broken connection or any other
error relists after a back-off (0.2 s doubling to 5 s, with jitter). A relist tells the callback
what changed meanwhile: ``ADDED`` for new objects, ``MODIFIED`` for changed ones, ``DELETED``
(with the last known object) for those that vanished. Callbacks run on the informer's thread,
one event at a time, in the server's order for that type; one that raises is logged, not fatal.
"""
from __future__ import annotations

import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Protocol

import urllib3

from .errors import ApiError, Gone, Unreachable
from .resources import ResourceType


class Lister(Protocol):
    """What an informer reads: a ClusterStore's list and watch (a Protocol, so that the store,
    which makes informers, and the informer do not import each other)."""

    def list(self, rt: ResourceType, namespace: str | None = None, *, label_selector: str | None = None,
             field_selector: str | None = None) -> tuple[list[dict[str, Any]], int | str]: ...

    def watch(self, rt: ResourceType, namespace: str | None = None, resource_version: int | str | None = None, *,
              label_selector: str | None = None, field_selector: str | None = None,
              timeout_s: float | None = None, bookmarks: bool = True) -> "WatchStream": ...


__all__ = ["EventType", "StoreEvent", "WatchStream", "Informer", "Subscription", "parse_resource_version"]

log = logging.getLogger(__name__)
Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED", "BOOKMARK"]
_BACKOFF_START_S, _BACKOFF_MAX_S = 0.2, 5.0


def parse_resource_version(value: Any) -> int | str:
    """A resourceVersion as an int when it is one (etcd's are), else the opaque string."""
    text = str(value or "")
    return int(text) if text.isdigit() else text


@dataclass(frozen=True)
class StoreEvent:
    """One change: ``object`` is the object after it (for DELETED, its last state)."""

    type: EventType
    resource: ResourceType
    object: Obj
    resource_version: int | str


class WatchStream:
    """The events of one watch response; iterate it, or close it from any thread."""

    def __init__(self, response: urllib3.BaseHTTPResponse, rt: ResourceType) -> None:
        self._response = response
        self._rt = rt
        self._closed = False

    def __iter__(self) -> Iterator[StoreEvent]:
        buffer = b""
        try:
            for chunk in self._response.stream(65536, decode_content=True):
                buffer += chunk
                *lines, buffer = buffer.split(b"\n")
                for line in lines:
                    if line.strip():
                        yield self._event(json.loads(line))
        except (urllib3.exceptions.HTTPError, OSError, ValueError) as e:
            if not self._closed:
                raise Unreachable(f"watch of {self._rt.qualified} broke: {e}") from None
        finally:
            self.close()

    def _event(self, raw: Obj) -> StoreEvent:
        obj = raw.get("object") or {}
        if raw.get("type") == "ERROR":  # a Status: 410 Expired when the resourceVersion is too old
            raise ApiError.from_response(int(obj.get("code") or 500), json.dumps(obj))
        if raw.get("type") != "BOOKMARK":
            obj.setdefault("apiVersion", self._rt.api_version)
            obj.setdefault("kind", self._rt.kind)
        rv = parse_resource_version((obj.get("metadata") or {}).get("resourceVersion"))
        return StoreEvent(raw["type"], self._rt, obj, rv)

    def close(self) -> None:
        """End the stream; a read blocked in another thread returns (the socket is shut down)."""
        if self._closed:
            return
        self._closed = True
        try:
            self._response.shutdown()
        except (AttributeError, OSError):  # urllib3 < 2.3 has no shutdown(); close() still ends it
            pass
        self._response.close()


class Informer:
    """One resource type kept in step with the server, changes handed to ``deliver`` (module doc)."""

    def __init__(self, store: Lister, rt: ResourceType, deliver: Callable[[StoreEvent], None], *,
                 namespace: str | None = None, label_selector: str | None = None,
                 field_selector: str | None = None) -> None:
        self.store, self.rt, self._deliver = store, rt, deliver
        self.namespace, self.label_selector, self.field_selector = namespace, label_selector, field_selector
        self.cache: dict[tuple[str, str], Obj] = {}  # (namespace, name) -> the latest object
        self.synced = threading.Event()  # set after the first list was delivered
        self._stop = threading.Event()
        self._stream: WatchStream | None = None
        self._lock = threading.Lock()
        self.thread = threading.Thread(target=self._run, name=f"informer-{rt.plural}", daemon=True)

    def start(self) -> Informer:
        self.thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        with self._lock:
            stream = self._stream
        if stream is not None:
            stream.close()
        if self.thread.is_alive() and self.thread is not threading.current_thread():
            self.thread.join(timeout)

    # -- the loop ------------------------------------------------------------------------------
    def _run(self) -> None:
        backoff = 0.0
        while not self._stop.is_set():
            try:
                rv = self._relist()
                backoff = 0.0
                self._watch_from(rv)
            except Gone:
                continue  # compacted past our resourceVersion: list again, at once
            except Exception as e:  # noqa: BLE001 - any failure: list again after a pause
                if self._stop.is_set():
                    return
                backoff = min(_BACKOFF_MAX_S, backoff * 2 or _BACKOFF_START_S)
                log.info("informer %s: %s; relisting in %.1f s", self.rt.qualified, e, backoff)
                self._stop.wait(backoff * random.uniform(0.8, 1.2))

    def _relist(self) -> int | str:
        items, rv = self.store.list(self.rt, self.namespace, label_selector=self.label_selector,
                                    field_selector=self.field_selector)
        listed = {_key(obj): obj for obj in items}
        for key, obj in listed.items():
            known = self.cache.get(key)
            if known is None:
                self._apply(StoreEvent("ADDED", self.rt, obj, rv))
            elif _rv_of(known) != _rv_of(obj):
                self._apply(StoreEvent("MODIFIED", self.rt, obj, rv))
        for key in [k for k in self.cache if k not in listed]:
            self._apply(StoreEvent("DELETED", self.rt, self.cache[key], rv))
        self.synced.set()
        return rv

    def _watch_from(self, rv: int | str) -> None:
        while not self._stop.is_set():
            stream = self.store.watch(self.rt, self.namespace, rv, label_selector=self.label_selector,
                                      field_selector=self.field_selector)
            with self._lock:
                self._stream = stream
            if self._stop.is_set():
                stream.close()
                return
            for event in stream:
                rv = event.resource_version or rv
                if event.type != "BOOKMARK":
                    self._apply(event)
            # The server ended the watch (its timeout): go on from the last resourceVersion.

    def _apply(self, event: StoreEvent) -> None:
        key = _key(event.object)
        if event.type == "DELETED":
            self.cache.pop(key, None)
        else:
            self.cache[key] = event.object
        try:
            self._deliver(event)
        except Exception:  # one bad callback must not stop the stream for everyone
            log.exception("informer %s: callback failed on %s %s/%s", self.rt.qualified, event.type, *key)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata") or {}
    return meta.get("namespace") or "", meta.get("name") or ""


def _rv_of(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class Subscription:
    """What :meth:`ClusterStore.subscribe` returns: call it (or ``close()``) to stop its informers."""

    def __init__(self, informers: list[Informer]) -> None:
        self.informers = informers

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Whether every informer delivered its first list within ``timeout`` seconds."""
        deadline = None if timeout is None else time.monotonic() + timeout
        return all(informer.synced.wait(None if deadline is None else max(0.0, deadline - time.monotonic()))
                   for informer in self.informers)

    def close(self) -> None:
        for informer in self.informers:
            informer._stop.set()
        for informer in self.informers:
            informer.stop()

    def __call__(self) -> None:
        self.close()
