"""The seams between the sandbox's parts: object store, controllers, pod runtime.

These Protocols are the contract that lets the store (API server side), the controllers and
the pod runtime be written and tested separately. Objects are plain dicts shaped exactly as
the Kubernetes API serialises them (camelCase JSON), so what the store holds is what goes on
the wire.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Iterator, Literal, Protocol

Obj = dict[str, Any]
EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True)
class ResourceType:
    """One kind of object: e.g. ResourceType("apps", "v1", "deployments", "Deployment", True)."""

    group: str  # "" for the core group
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version


@dataclass(frozen=True)
class StoreEvent:
    type: EventType
    resource: ResourceType
    object: Obj  # the object after the change (before deletion for DELETED)
    resource_version: int


class Store(Protocol):
    """Objects by resource type, namespace and name, with one global resourceVersion.

    Errors are raised as runbooks_sandbox.models.errors.ApiError subclasses carrying the HTTP
    code and reason (NotFound 404, AlreadyExists 409, Conflict 409, Invalid 422, Gone 410...),
    so the HTTP layer can render them as Status bodies.
    """

    def create(self, rt: ResourceType, namespace: str | None, obj: Obj, *, dry_run: bool = False) -> Obj: ...

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> Obj: ...

    def list(
        self,
        rt: ResourceType,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> tuple[list[Obj], int]:
        """Matching objects (deep copies) and the store's current resourceVersion."""

    def replace(
        self, rt: ResourceType, namespace: str | None, name: str, obj: Obj, *,
        subresource: str | None = None, dry_run: bool = False,
    ) -> Obj:
        """PUT semantics: 409 Conflict if obj's resourceVersion is set and stale."""

    def patch(
        self, rt: ResourceType, namespace: str | None, name: str, patch: Any, patch_type: str, *,
        subresource: str | None = None, dry_run: bool = False,
    ) -> Obj:
        """patch_type is the Content-Type: strategic-merge, merge, json-patch or apply-patch."""

    def delete(self, rt: ResourceType, namespace: str | None, name: str, *, dry_run: bool = False) -> Obj: ...

    def update_status(self, rt: ResourceType, namespace: str | None, name: str, status: Obj) -> Obj:
        """Controller/runtime shortcut: replace .status without a resourceVersion check."""

    def subscribe(self, callback: Callable[[StoreEvent], None]) -> Callable[[], None]:
        """Call callback after every committed write (from the writer's thread). Returns unsubscribe."""

    def watch(
        self, rt: ResourceType, namespace: str | None, resource_version: int | None, *,
        label_selector: str | None = None, field_selector: str | None = None,
    ) -> Iterator[StoreEvent]:
        """Events after resource_version (410 Gone if too old); blocks for new ones."""


class PodRuntime(Protocol):
    """Runs pods. Part 1 has a built-in runtime that marks pods ready after a delay; part 2
    plugs in real processes. The runtime reports pod status through Store.update_status."""

    def start(self, store: Store) -> None:
        """Begin running pods: watch the store for pods and reconcile them."""

    def stop(self) -> None:
        """Stop every pod process and thread this runtime started."""


class Controllers(Protocol):
    """The Deployment, ReplicaSet and Endpoints controllers, started against a store."""

    def stop(self) -> None: ...
