"""Request handling: parse the request, call the store, render the Kubernetes response.

Nothing here holds cluster state; ``Backend`` gives access to the current store, registry and
pod runtime (the server swaps stores on reset).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import parse_qs, urlsplit

import yaml

from ..models import errors
from ..models.api import StoreEvent
from ..models.resources import ResourceRegistry
from ..models.selectors import parse_field_selector, parse_label_selector
from ..models.store import MemoryStore
from ..models.watch import Watcher
from . import discovery, tables
from .envelope import decode_envelope
from .urls import ResourcePath, match_resource, match_static
from .watch import DEFAULT_TIMEOUT_S, ChunkedWriter, client_gone, stream_events

Obj = dict[str, Any]
TRUE = ("true", "1")


class Backend(Protocol):
    store: MemoryStore
    registry: ResourceRegistry
    runtime: Any
    bookmark_interval_s: float
    faults: Any  # http.faults.ApiFaults: what a drill injects before handling


    @property
    def server_address_text(self) -> str: ...


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Any  # email.message.Message-like: .get(name, default)
    body: bytes

    @classmethod
    def parse(cls, method: str, raw_path: str, headers: Any, body: bytes) -> Request:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return cls(method, parts.path, query, headers, body)

    def flag(self, name: str) -> bool:
        return self.query.get(name, "").lower() in TRUE

    @property
    def dry_run(self) -> bool:
        return self.query.get("dryRun") == "All"

    def json_body(self) -> Any:
        content_type = (self.headers.get("Content-Type") or "").lower()
        if not self.body:
            return None
        if "protobuf" in content_type:
            return decode_envelope(self.body)
        try:
            if "yaml" in content_type:
                return yaml.safe_load(self.body)
            return json.loads(self.body)
        except (ValueError, yaml.YAMLError) as e:
            raise errors.BadRequest(f"the request body could not be decoded: {e}") from None


@dataclass
class Response:
    code: int
    body: Any
    content_type: str = "application/json"
    stream: Any = None  # a callable(writer, sock) for watches
    headers: dict[str, str] = field(default_factory=dict)


def handle(backend: Backend, request: Request) -> Response:
    """Serve one request; API errors become Status bodies."""
    try:
        route = match_static(request.path)
        if route is not None:
            if request.method != "GET":
                raise errors.MethodNotAllowed(f"{request.method} is not allowed on {request.path}")
            return _static(backend, route.handler, route.args)
        target = match_resource(backend.registry, request.path)
        if target is None:
            raise errors.NotFound("the server could not find the requested resource")
        return _resource(backend, request, target)
    except errors.ApiError as error:
        return Response(error.code, error.status())


def _static(backend: Backend, handler: str, args: tuple[str, ...]) -> Response:
    registry = backend.registry
    body: Obj | None
    if handler == "version":
        body = discovery.version()
    elif handler == "health":
        return Response(200, "ok", "text/plain")
    elif handler == "api_versions":
        body = discovery.api_versions(backend.server_address_text)
    elif handler == "api_groups":
        body = discovery.api_group_list(registry)
    elif handler == "api_group":
        body = discovery.api_group(registry, args[0])
    elif handler == "resource_list":
        body = discovery.resource_list(registry, args[0], args[1])
    elif handler == "openapi_v3":
        body = discovery.openapi_v3(registry, args[0])
    else:
        body = None
    if body is None:
        raise errors.NotFound("the server could not find the requested resource")
    return Response(200, body)


def _resource(backend: Backend, request: Request, target: ResourcePath) -> Response:
    store, rt = backend.store, target.info.type
    namespace, name, sub = target.namespace, target.name, target.subresource
    method = request.method
    if method == "GET":
        if target.watch_prefix or request.flag("watch"):
            return _watch(backend, request, target)
        if name is None:
            return _list(backend, request, target)
        if sub == "log":
            return _log(backend, request, target)
        obj = store.get(rt, namespace, name, subresource=sub)
        return _render(request, target, obj)
    if method == "POST" and name is None:
        obj = store.create(rt, namespace, _object_body(request), dry_run=request.dry_run)
        return Response(201, obj)
    if method == "PUT" and name is not None:
        return Response(200, store.replace(rt, namespace, name, _object_body(request),
                                           subresource=sub, dry_run=request.dry_run))
    if method == "PATCH" and name is not None:
        patch_type = request.headers.get("Content-Type") or "application/merge-patch+json"
        return Response(200, store.patch(rt, namespace, name, request.json_body(), patch_type,
                                         subresource=sub, dry_run=request.dry_run))
    if method == "DELETE":
        options = request.json_body() or {}
        policy = request.query.get("propagationPolicy") or options.get("propagationPolicy")
        dry_run = request.dry_run or "All" in (options.get("dryRun") or [])
        grace = request.query.get("gracePeriodSeconds") or options.get("gracePeriodSeconds")
        if name is not None:
            return Response(200, store.delete(rt, namespace, name, dry_run=dry_run, propagation_policy=policy,
                                              grace_period_seconds=None if grace is None else int(grace),
                                              preconditions=options.get("preconditions")))
        return _delete_collection(backend, request, target, dry_run, policy)
    raise errors.MethodNotAllowed("the server does not allow this method on the requested resource")


def _object_body(request: Request) -> Obj:
    body = request.json_body()
    if not isinstance(body, dict):
        raise errors.BadRequest("the request body must be an object")
    return body


def _render(request: Request, target: ResourcePath, obj: Obj) -> Response:
    if tables.wants_table(request.headers.get("Accept") or "") and target.subresource is None:
        return Response(200, tables.table(target.info.type.plural, [obj], obj["metadata"].get("resourceVersion"),
                                          include_object=request.query.get("includeObject", "Metadata")))
    return Response(200, obj)


def _list(backend: Backend, request: Request, target: ResourcePath) -> Response:
    rt = target.info.type
    items, rv = backend.store.list(rt, target.namespace, label_selector=request.query.get("labelSelector"),
                                   field_selector=request.query.get("fieldSelector"))
    limit = int(request.query.get("limit") or 0)
    if limit > 0:
        items = items[:limit]  # no continue token: the sandbox's lists are small
    if tables.wants_table(request.headers.get("Accept") or ""):
        return Response(200, tables.table(rt.plural, items, str(rv),
                                          include_object=request.query.get("includeObject", "Metadata")))
    return Response(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version,
                          "metadata": {"resourceVersion": str(rv)}, "items": items})


def _delete_collection(backend: Backend, request: Request, target: ResourcePath, dry_run: bool,
                       policy: str | None) -> Response:
    rt = target.info.type
    items, _ = backend.store.list(rt, target.namespace, label_selector=request.query.get("labelSelector"),
                                  field_selector=request.query.get("fieldSelector"))
    deleted = []
    for item in items:
        try:
            deleted.append(backend.store.delete(rt, item["metadata"].get("namespace"), item["metadata"]["name"],
                                                dry_run=dry_run, propagation_policy=policy))
        except errors.NotFound:
            pass  # removed meanwhile, e.g. by garbage collection of an earlier item
    return Response(200, {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": {},
                          "items": deleted})


def _log(backend: Backend, request: Request, target: ResourcePath) -> Response:
    """The runtime's log text; with ``follow`` a chunked stream until the container ends."""
    backend.store.get(target.info.type, target.namespace, target.name or "")  # 404 for a missing pod
    logs = getattr(backend.runtime, "logs", None)
    if logs is None:
        return Response(200, "", "text/plain")
    tail, since = request.query.get("tailLines"), request.query.get("sinceSeconds")
    options: dict[str, Any] = dict(
        tail=int(tail) if tail and tail.lstrip("-").isdigit() else None, timestamps=request.flag("timestamps"),
        since_seconds=float(since) if since else None)
    container = request.query.get("container") or None
    follow = getattr(backend.runtime, "follow_logs", None)
    if request.flag("follow") and not request.flag("previous") and follow is not None:
        client: list[Any] = []
        chunks = follow(target.namespace, target.name, container, options.pop("tail"), **options,
                        stopped=lambda: bool(client) and client_gone(client[0]))

        def stream(writer: ChunkedWriter, sock: Any) -> None:
            client.append(sock)
            for chunk in chunks:
                writer.raw(chunk.encode())

        return Response(200, None, "text/plain", stream=stream)
    text = logs(target.namespace, target.name, container, options.pop("tail"), previous=request.flag("previous"),
                **options)
    return Response(200, text, "text/plain")


def _watch(backend: Backend, request: Request, target: ResourcePath) -> Response:
    rt, store = target.info.type, backend.store
    field_selector = request.query.get("fieldSelector")
    if target.name:  # /watch/.../<name> watches one object
        field_selector = ",".join(filter(None, [field_selector, f"metadata.name={target.name}"]))
    label_selector = request.query.get("labelSelector")
    rv_text = request.query.get("resourceVersion") or "0"
    if not rv_text.isdigit():
        raise errors.BadRequest(f"invalid resourceVersion {rv_text!r}")
    as_table = tables.wants_table(request.headers.get("Accept") or "")
    include = request.query.get("includeObject", "Metadata")
    first = [True]

    def render(event: StoreEvent) -> Obj:
        if not as_table:
            return event.object
        with_columns, first[0] = first[0], False
        return tables.table(rt.plural, [event.object], str(event.resource_version),
                            include_object=include, with_columns=with_columns)

    def bookmark(rv: int) -> Obj:
        return {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": {"resourceVersion": str(rv)}}

    def open_watch() -> Watcher:
        return store.watch(rt, target.namespace, int(rv_text), label_selector=label_selector,
                           field_selector=field_selector)

    def stream(writer: ChunkedWriter, sock: Any) -> None:
        stream_events(writer, sock, open_watch, render=render,
                      bookmark=bookmark if request.flag("allowWatchBookmarks") and not as_table else None,
                      timeout_s=float(request.query.get("timeoutSeconds") or DEFAULT_TIMEOUT_S),
                      bookmark_interval_s=backend.bookmark_interval_s)

    # Selectors are parsed now, so a bad one is a 400 rather than a broken stream.
    parse_label_selector(label_selector), parse_field_selector(field_selector)
    return Response(200, None, stream=stream)
