"""The cluster as runbooks see it: deployments, pods, events, through the official client.

Objects come back as plain dicts in the API's own camelCase shape (what ``kubectl get -o json``
shows), which keeps runbook code and the record close to what an engineer already reads.
Every mutating call honours ``dry_run`` with the API server's ``dryRun=All``.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any, Callable

from ..config.clock import parse_time
from .images import version_of_image
from .kube import api_client, call, resource_path, translate

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from ..config.profiles import Profile
    from .reach import Reach

__all__ = ["Cluster", "DeploymentState", "PodState", "secret_hashes"]

Obj = dict[str, Any]


@dataclass(frozen=True)
class PodState:
    name: str
    phase: str
    ready: bool
    restarts: int
    ip: str | None
    image: str | None
    version: str | None
    waiting_reason: str | None
    deleting: bool


@dataclass(frozen=True)
class DeploymentState:
    """What ``kubectl rollout status`` reads, as numbers."""

    name: str
    desired: int
    replicas: int
    updated: int
    ready: int
    available: int
    unavailable: int
    generation: int
    observed_generation: int
    image: str | None
    revision: str | None
    progressing_reason: str | None
    paused: bool

    @property
    def rolled_out(self) -> bool:
        """kubectl's rule (rollout_status.go): the latest spec observed, every replica updated and
        available, and no old replica left."""
        return (
            self.observed_generation >= self.generation
            and self.updated == self.desired
            and self.available >= self.desired
            and self.ready >= self.desired
            and self.replicas == self.updated
        )

    @property
    def deadline_exceeded(self) -> bool:
        return self.progressing_reason == "ProgressDeadlineExceeded"


def condition(obj: Obj, kind: str) -> Obj | None:
    return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c.get("type") == kind), None)


def deployment_state(dep: Obj) -> DeploymentState:
    spec, status, meta = dep.get("spec") or {}, dep.get("status") or {}, dep.get("metadata") or {}
    containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or [{}]
    progressing = condition(dep, "Progressing")
    return DeploymentState(
        name=meta.get("name", ""),
        desired=int(spec.get("replicas", 1)),
        replicas=int(status.get("replicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        available=int(status.get("availableReplicas") or 0),
        unavailable=int(status.get("unavailableReplicas") or 0),
        generation=int(meta.get("generation") or 0),
        observed_generation=int(status.get("observedGeneration") or 0),
        image=containers[0].get("image"),
        revision=(meta.get("annotations") or {}).get("deployment.kubernetes.io/revision"),
        progressing_reason=progressing.get("reason") if progressing else None,
        paused=bool(spec.get("paused")),
    )


def secret_hashes(secret: Obj | None) -> dict[str, str]:
    """Each key of a Secret (as read, values base64) with a short hash of its decoded value: the
    same hash ``vault.fingerprint`` gives the value in Vault, so the two compare. None: no keys."""
    import base64
    import hashlib

    data = (secret or {}).get("data") or {}
    return {k: hashlib.sha256(base64.b64decode(v)).hexdigest()[:12] for k, v in data.items()}


def pod_state(pod: Obj) -> PodState:
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    containers = status.get("containerStatuses") or []
    waiting = next((c["state"]["waiting"].get("reason") for c in containers if (c.get("state") or {}).get("waiting")), None)
    ready = condition(pod, "Ready")
    spec_containers = (pod.get("spec") or {}).get("containers") or [{}]
    image = spec_containers[0].get("image")
    return PodState(
        name=meta.get("name", ""),
        phase=status.get("phase", "Unknown"),
        ready=bool(ready and ready.get("status") == "True"),
        restarts=sum(int(c.get("restartCount") or 0) for c in containers),
        ip=status.get("podIP"),
        image=image,
        # The image is what runs; the label may be stale after `kubectl set image`.
        version=version_of_image(image) or (meta.get("labels") or {}).get("version"),
        waiting_reason=waiting,
        deleting=bool(meta.get("deletionTimestamp")),
    )


class Cluster:
    """One namespace of one cluster, as a profile names it."""

    def __init__(self, profile: "Profile", *, dry_run: bool = False, client: "ApiClient | None" = None) -> None:
        self.profile = profile
        self.namespace = profile.cluster.namespace
        self.dry_run = dry_run
        self._client = client
        # Checked before every real change (a run's deploy lock fences it: a run that lost its
        # lock to another stops before its next change). Each raises to refuse the change.
        self.fences: list[Callable[[], None]] = []

    @cached_property
    def client(self) -> "ApiClient":
        return self._client or api_client(self.profile.cluster)

    @cached_property
    def reach(self) -> "Reach":
        """How checks send HTTP requests to this cluster's pods and Services (``cluster.reach``)."""
        from .reach import reach_of

        return reach_of(self.profile.cluster, lambda: self.client)

    @property
    def _dry(self) -> dict[str, str]:
        return {"dryRun": "All"} if self.dry_run else {}

    def _path(self, kind: str, name: str | None = None, subresource: str | None = None) -> str:
        """The API path of this namespace's ``kind`` objects, or of one of them (and a subresource)."""
        return self._in_namespace(*_RESOURCES[kind], name, subresource)

    def _in_namespace(self, prefix: str, plural: str, *names: str | None) -> str:
        """``prefix/namespaces/<this one>/plural``, then each name given (a custom resource's too)."""
        return resource_path(prefix, "namespaces", self.namespace, plural, *(n for n in names if n))

    def _call(self, method: str, path: str, *, query: dict[str, Any] | None = None, body: Any = None,
              text: bool = False) -> Any:
        if method != "GET" and not (query or {}).get("dryRun") and "/leases" not in path:
            for fence in list(self.fences):  # the runbooks' own leases are how a lock is held: never fenced
                fence()
        return call(self.client, method, path, query=query, body=body, text=text)

    def _get(self, kind: str, name: str) -> Obj:
        return self._call("GET", self._path(kind, name))

    def _list(self, kind: str, label_selector: str | None = None) -> list[Obj]:
        return self._call("GET", self._path(kind), query={"labelSelector": label_selector}).get("items") or []

    def _create(self, kind: str, body: Obj, *, dry: bool = True) -> Obj:
        return self._call("POST", self._path(kind), body=body, query=self._dry if dry else None)

    def _replace(self, kind: str, name: str, body: Obj, *, dry: bool = True) -> Obj:
        return self._call("PUT", self._path(kind, name), body=body, query=self._dry if dry else None)

    def _patch(self, kind: str, name: str, patch: Any, subresource: str | None = None) -> Obj:
        return self._call("PATCH", self._path(kind, name, subresource), body=patch, query=self._dry)

    def _delete(self, kind: str, name: str, body: Obj | None = None, *, dry: bool = True) -> Obj:
        return self._call("DELETE", self._path(kind, name), body=body, query=self._dry if dry else None)

    def _absent_is_none(self, what: str, read: Any) -> Any:
        """``read()`` under ``translate(what)``; None when the object does not exist."""
        from ..errors import NotFound

        try:
            with translate(what):
                return read()
        except NotFound:
            return None

    def _delete_if_there(self, what: str, kind: str, name: str) -> bool:
        """Delete one object; False when there was none."""
        return self._absent_is_none(what, lambda: self._delete(kind, name)) is not None

    # -- reads ---------------------------------------------------------------------------

    def deployment(self, name: str) -> Obj:
        with translate(f"read deployment {self.namespace}/{name}"):
            return self._get("Deployment", name)

    def deployments(self, label_selector: str | None = None) -> list[Obj]:
        with translate(f"list deployments in {self.namespace}"):
            return self._list("Deployment", label_selector)

    def service(self, name: str) -> Obj:
        with translate(f"read service {self.namespace}/{name}"):
            return self._get("Service", name)

    def live_deployment(self, service: str) -> str:
        """The name of the Deployment whose pods the Service sends traffic to.

        Usually the service's own name; blue-green renames Deployments by colour and the
        Service's ``color`` selector says which one is live.
        """
        from ..errors import NotFound

        try:
            selector = (self.service(service).get("spec") or {}).get("selector") or {}
        except NotFound:
            return service
        colour = selector.get("color")
        if not colour:
            return service
        for dep in self.deployments(label_selector=f"app={service}"):
            if ((dep["spec"]["template"].get("metadata") or {}).get("labels") or {}).get("color") == colour:
                return dep["metadata"]["name"]
        return service

    def deployment_state(self, name: str) -> DeploymentState:
        return deployment_state(self.deployment(name))

    def replica_sets(self, label_selector: str | None = None) -> list[Obj]:
        with translate(f"list replicasets in {self.namespace}"):
            return self._list("ReplicaSet", label_selector)

    def pods(self, label_selector: str | None = None) -> list[Obj]:
        with translate(f"list pods in {self.namespace}"):
            return self._list("Pod", label_selector)

    def pod_states(self, label_selector: str | None = None) -> list[PodState]:
        return [pod_state(p) for p in self.pods(label_selector)]

    def events(self, since: timedelta = timedelta(minutes=15), involving: str | None = None) -> list[Obj]:
        """Recent events, newest last; ``involving`` keeps those whose object name starts with it."""
        with translate(f"list events in {self.namespace}"):
            found = self._list("Event")
        cutoff = datetime.now(timezone.utc) - since
        recent = []
        for event in found:
            stamp = event.get("lastTimestamp") or event.get("eventTime") or (event.get("metadata") or {}).get("creationTimestamp")
            when = parse_time(stamp)
            name = (event.get("involvedObject") or {}).get("name", "")
            if (when is None or when >= cutoff) and (involving is None or name.startswith(involving)):
                recent.append(event)
        return sorted(recent, key=lambda e: parse_time(e.get("lastTimestamp") or e.get("eventTime")) or cutoff)

    def pod_log(self, name: str, container: str | None = None, *, tail: int = 20, previous: bool = False) -> str:
        """The last ``tail`` lines of a container's log (``kubectl logs [--previous] --tail``).

        ``previous=True`` reads the instance before the last restart; a cluster that has none
        (or does not keep it) answers 400, raised as ParameterError, as kubectl reports it.
        """
        what = f"read {'previous ' if previous else ''}log of pod {self.namespace}/{name}"
        with translate(what):
            return str(self._call("GET", self._path("Pod", name, "log"), text=True,
                                  query={"container": container, "tailLines": tail, "previous": previous}) or "")

    def config_objects(self) -> list[Obj]:
        """ConfigMaps and Secrets of the namespace, metadata only (never a Secret's data)."""
        with translate(f"list configmaps in {self.namespace}"):
            maps = self._list("ConfigMap")
        with translate(f"list secrets in {self.namespace}"):
            secrets = self._list("Secret")
        return ([{"kind": "ConfigMap", "metadata": m.get("metadata") or {}} for m in maps]
                + [{"kind": "Secret", "metadata": s.get("metadata") or {}} for s in secrets])

    def secret(self, name: str) -> Obj | None:
        """A Secret as stored (its data stays base64 and is never printed), or None when absent."""
        return self._absent_is_none(f"read secret {self.namespace}/{name}", lambda: self._get("Secret", name))

    def lease(self, name: str) -> Obj | None:
        return self._absent_is_none(f"read lease {self.namespace}/{name}", lambda: self._get("Lease", name))

    # -- writes: every one honours dry run (dryRun=All) ----------------------------------------

    def patch_deployment(self, name: str, patch: Any, *, what: str = "patch") -> Obj:
        """A strategic-merge patch (dict) or a JSON patch (list) of a Deployment; ``what`` names the change."""
        with translate(f"{what} (deployment {self.namespace}/{name})", write=True):
            return self._patch("Deployment", name, patch)

    def create_deployment(self, body: Obj) -> Obj:
        name = body["metadata"]["name"]
        with translate(f"create deployment {self.namespace}/{name}"):
            return self._create("Deployment", body)

    def delete_deployment(self, name: str) -> bool:
        """Delete a Deployment (its pods drain as usual); False when there was none."""
        return self._delete_if_there(f"delete deployment {self.namespace}/{name}", "Deployment", name)

    def patch_replica_set(self, name: str, patch: Obj, *, what: str = "patch") -> Obj:
        with translate(f"{what} (replicaset {self.namespace}/{name})"):
            return self._patch("ReplicaSet", name, patch)

    def patch_service(self, name: str, patch: Obj, *, what: str = "patch") -> Obj:
        with translate(f"{what} (service {self.namespace}/{name})"):
            return self._patch("Service", name, patch)

    def patch_secret(self, name: str, patch: Obj, *, what: str = "patch") -> Obj:
        with translate(f"{what} (secret {self.namespace}/{name})"):
            return self._patch("Secret", name, patch)

    def apply_secret(self, body: Obj, live: Obj | None) -> Obj:
        """Create the Secret, or replace ``live`` (its resourceVersion guards against a concurrent change)."""
        name = body["metadata"]["name"]
        with translate(f"apply secret {self.namespace}/{name}"):
            if live is None:
                return self._create("Secret", body)
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
            return self._replace("Secret", name, body)

    # Leases are the runbooks' own locks: taking one is how a dry run checks, never a change to
    # the platform, so lease writes are real even in a dry run (DeployLock skips them itself).
    def create_lease(self, body: Obj) -> Obj:
        with translate(f"create lease {self.namespace}/{body['metadata']['name']}"):
            return self._create("Lease", body, dry=False)

    def replace_lease(self, name: str, body: Obj, *, what: str = "renew") -> Obj:
        with translate(f"{what} lease {self.namespace}/{name}"):
            return self._replace("Lease", name, body, dry=False)

    def delete_lease(self, name: str, resource_version: str) -> None:
        """Delete a Lease only if it is still the one we read (a precondition on its resourceVersion)."""
        with translate(f"delete lease {self.namespace}/{name}"):
            self._delete("Lease", name, {"apiVersion": "v1", "kind": "DeleteOptions",
                                         "preconditions": {"resourceVersion": resource_version}}, dry=False)

    def secret_keys(self, name: str) -> dict[str, str]:
        """A Secret's keys with a short hash of each value — never the values (``secret_hashes``)."""
        with translate(f"read secret {self.namespace}/{name}"):
            return secret_hashes(self._get("Secret", name))

    # -- named operations for routing and canaries (every change honours dry run) ----------

    def scale_deployment(self, name: str, replicas: int) -> Obj:
        """``kubectl scale``: through the scale subresource, as an autoscaler would see it."""
        with translate(f"scale deployment {self.namespace}/{name} to {replicas}"):
            return self._patch("Deployment", name, {"spec": {"replicas": replicas}}, subresource="scale")

    def restart_deployment(self, name: str) -> Obj:
        """``kubectl rollout restart``: a new pod-template annotation rolls every pod."""
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        patch = {"spec": {"template": {"metadata": {"annotations": {"kubectl.kubernetes.io/restartedAt": stamp}}}}}
        return self.patch_deployment(name, patch, what="rolling restart")

    def custom_object(self, group: str, version: str, plural: str, name: str) -> Obj | None:
        """A custom resource (an Istio VirtualService...), or None when it does not exist."""
        return self._absent_is_none(f"read {plural} {self.namespace}/{name}", lambda: self._call(
            "GET", self._in_namespace(f"/apis/{group}/{version}", plural, name)))

    def apply_custom_object(self, group: str, version: str, plural: str, body: Obj) -> Obj:
        """Create the object, or replace the live one's spec (resourceVersion kept: no lost update)."""
        name = body["metadata"]["name"]
        live = self.custom_object(group, version, plural, name)
        prefix = f"/apis/{group}/{version}"
        with translate(f"apply {plural} {self.namespace}/{name}"):
            if live is None:
                return self._call("POST", self._in_namespace(prefix, plural), body=body, query=self._dry)
            body = {**body, "metadata": {**body["metadata"], "resourceVersion": live["metadata"]["resourceVersion"]}}
            return self._call("PUT", self._in_namespace(prefix, plural, name), body=body, query=self._dry)

    def delete_custom_object(self, group: str, version: str, plural: str, name: str) -> bool:
        path = self._in_namespace(f"/apis/{group}/{version}", plural, name)
        return self._absent_is_none(f"delete {plural} {self.namespace}/{name}",
                                    lambda: self._call("DELETE", path, query=self._dry)) is not None

    # -- a whole namespace: what the region drill keeps off-site and rebuilds elsewhere ------

    def namespaced_objects(self, kinds: tuple[str, ...]) -> list[Obj]:
        """Every object of these kinds in the namespace, as stored (``kind`` and ``apiVersion`` set).

        Istio's VirtualService and DestinationRule are listed too when asked for; a cluster
        without Istio's CRDs has none (NotFound), which is not an error."""
        found: list[Obj] = []
        for kind in kinds:
            _check_exported(kind)
            what = f"list {_RESOURCES[kind][1]} in {self.namespace}"
            if kind in _ISTIO_KINDS:
                listed = self._absent_is_none(what, lambda: self._call("GET", self._path(kind)))
            else:
                with translate(what):
                    listed = self._call("GET", self._path(kind))
            api_version = (listed or {}).get("apiVersion") or _RESOURCES[kind][0].split("/", 2)[-1]
            found += [{**item, "kind": kind, "apiVersion": item.get("apiVersion") or api_version}
                      for item in (listed or {}).get("items") or []]
        return found

    def namespace_exists(self) -> bool:
        return self._absent_is_none(f"read namespace {self.namespace}", lambda: self._call(
            "GET", resource_path("/api/v1", "namespaces", self.namespace))) is not None

    def create_namespace(self, labels: dict[str, str] | None = None) -> Obj:
        body = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": self.namespace, "labels": labels or {}}}
        with translate(f"create namespace {self.namespace}"):
            return self._call("POST", "/api/v1/namespaces", body=body, query=self._dry)

    def delete_namespace(self) -> bool:
        """Delete the namespace and everything in it; False when there was none."""
        return self._absent_is_none(f"delete namespace {self.namespace}", lambda: self._call(
            "DELETE", resource_path("/api/v1", "namespaces", self.namespace), query=self._dry)) is not None

    def create_object(self, body: Obj) -> Obj:
        """Create one object of a kind :meth:`namespaced_objects` lists, in this namespace."""
        kind, name = body["kind"], body["metadata"]["name"]
        _check_exported(kind)
        with translate(f"create {kind.lower()} {self.namespace}/{name}"):
            return self._create(kind, body)

    def delete_object(self, kind: str, name: str) -> bool:
        """Delete one object of a kind :meth:`namespaced_objects` lists; False when there was none."""
        _check_exported(kind)
        return self._delete_if_there(f"delete {kind.lower()} {self.namespace}/{name}", kind, name)


# Istio's routing objects (custom resources): kind -> (group, version, plural).
_ISTIO_KINDS = {"VirtualService": ("networking.istio.io", "v1beta1", "virtualservices"),
                "DestinationRule": ("networking.istio.io", "v1beta1", "destinationrules")}

# Where each kind the runbooks touch lives in the API: kind -> (path prefix, plural).
_RESOURCES = {
    "Deployment": ("/apis/apps/v1", "deployments"),
    "ReplicaSet": ("/apis/apps/v1", "replicasets"),
    "Pod": ("/api/v1", "pods"),
    "Service": ("/api/v1", "services"),
    "Event": ("/api/v1", "events"),
    "ConfigMap": ("/api/v1", "configmaps"),
    "Secret": ("/api/v1", "secrets"),
    "Lease": ("/apis/coordination.k8s.io/v1", "leases"),
    "Ingress": ("/apis/networking.k8s.io/v1", "ingresses"),
    "HorizontalPodAutoscaler": ("/apis/autoscaling/v2", "horizontalpodautoscalers"),
    **{kind: (f"/apis/{group}/{version}", plural) for kind, (group, version, plural) in _ISTIO_KINDS.items()},
}

# The kinds the region drill keeps off-site and creates again in the DR region.
_EXPORTED = ("Service", "ConfigMap", "Secret", "Deployment", "Ingress", "HorizontalPodAutoscaler", *_ISTIO_KINDS)


def _check_exported(kind: str) -> None:
    if kind not in _EXPORTED:
        raise ValueError(f"kind {kind} is not one the region drill handles ({', '.join(_EXPORTED)})")


