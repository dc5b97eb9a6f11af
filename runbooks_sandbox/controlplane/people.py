"""The sandbox's people, their tokens and what RBAC lets each do; the kubeconfig they use.

Three people, one per role a runbook meets (the same names as the runbooks' approvals):

- alice, group ``veza:oncall``: runs the runbooks. Reads everything in the Veza namespaces
  (Secrets too: she rotates them), and changes what runbooks change: Deployments (and their
  scale), ReplicaSets (a rollback writes their annotations), Secrets, ConfigMaps, Services,
  Leases (``runbook-lock-<service>``, the deploy lock), Jobs and CronJobs (scheduled runbooks),
  HPAs, Ingresses and Istio's VirtualServices/DestinationRules (canary and region drills), and
  evicts pods (``pods/eviction``, which honours PodDisruptionBudgets; no plain pod delete, no
  ``exec``). Never Namespaces, RBAC or anything cluster-wide beyond reading.
- bob, group ``veza:approvers``: approves changes, so reads everything an approval is judged on,
  logs and RBAC objects included, but no Secrets: RBAC cannot grant a Secret's names without its
  values (get and list return the data), and an approval needs only what the run record shows
  (the keys' hashes).
- carol, group ``veza:viewers``: watches. Reads workloads, config and events; no Secrets and no
  pod logs (logs may carry user data).

All three read Namespaces and Nodes cluster-wide: every runbook starts with the identity guard,
which reads namespace ``kube-system``'s uid, a read-only health check by carol included.

People authenticate with bearer tokens from the apiserver's static token file (random, 0600,
never printed); the components (controller manager, scheduler) and the admin with client certs
of the cluster CA (see :mod:`.pki`): a person's token is what a real cluster's OIDC login
yields, while components are machines, and keeping them out of the token file means the file
lists people only.
"""
from __future__ import annotations

import base64
import csv
import io
import os
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "Person",
    "PEOPLE",
    "ONCALL_GROUP",
    "APPROVERS_GROUP",
    "VIEWERS_GROUP",
    "DEFAULT_NAMESPACES",
    "ADMIN_CONTEXT",
    "write_token_file",
    "read_token_file",
    "rbac_manifests",
    "write_kubeconfig",
    "write_component_kubeconfig",
]

ONCALL_GROUP = "veza:oncall"
APPROVERS_GROUP = "veza:approvers"
VIEWERS_GROUP = "veza:viewers"
DEFAULT_NAMESPACES: tuple[str, ...] = ("veza-sandbox",)
ADMIN_CONTEXT = "sandbox-admin"
CLUSTER_NAME = "veza-sandbox"


@dataclass(frozen=True)
class Person:
    """A person of the sandbox: user name, groups (what RBAC binds), and their role in words."""

    name: str
    groups: tuple[str, ...]
    role: str


PEOPLE: tuple[Person, ...] = (
    Person("alice", (ONCALL_GROUP,), "on-call: reads everything in the Veza namespaces, changes workloads"),
    Person("bob", (APPROVERS_GROUP,), "approver: reads everything but Secrets"),
    Person("carol", (VIEWERS_GROUP,), "viewer: reads workloads and config, no Secrets, no logs"),
)


# -- tokens -------------------------------------------------------------------------------------

def write_token_file(path: Path, people: Sequence[Person] = PEOPLE) -> dict[str, str]:
    """Write the apiserver's --token-auth-file (mode 0600): ``token,user,uid,"group,..."``.

    Returns user -> token, for the kubeconfig; the tokens are random and appear nowhere else.
    """
    tokens = {person.name: secrets.token_urlsafe(32) for person in people}
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    for person in people:
        writer.writerow([tokens[person.name], person.name, person.name, ",".join(person.groups)])
    path = Path(path)
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(out.getvalue())
    return tokens


def read_token_file(path: Path) -> dict[str, str]:
    """User -> token, from a file :func:`write_token_file` wrote."""
    with open(path, newline="") as f:
        return {row[1]: row[0] for row in csv.reader(f) if len(row) >= 2}


# -- RBAC ---------------------------------------------------------------------------------------

_READ = ["get", "list", "watch"]
_WRITE = ["create", "update", "patch", "delete"]

# What a viewer reads in a Veza namespace: workloads, their config, status and events. No Secrets,
# no pods/log, no RBAC objects.
_VIEWER_RESOURCES: dict[str, list[str]] = {
    "": ["pods", "pods/status", "services", "endpoints", "configmaps", "events", "persistentvolumeclaims",
         "replicationcontrollers", "resourcequotas", "limitranges"],
    "apps": ["deployments", "deployments/status", "deployments/scale", "replicasets", "replicasets/status",
             "replicasets/scale", "statefulsets", "daemonsets", "controllerrevisions"],
    "batch": ["jobs", "cronjobs"],
    "autoscaling": ["horizontalpodautoscalers"],
    "policy": ["poddisruptionbudgets"],
    "networking.k8s.io": ["ingresses", "networkpolicies"],
    "discovery.k8s.io": ["endpointslices"],
    "events.k8s.io": ["events"],
    "coordination.k8s.io": ["leases"],
    "networking.istio.io": ["virtualservices", "destinationrules"],
}

# What an approver reads besides: logs (to judge a canary) and who may do what.
_APPROVER_EXTRA: dict[str, list[str]] = {
    "": ["pods/log", "serviceaccounts"],
    "rbac.authorization.k8s.io": ["roles", "rolebindings"],
}

# What on-call changes (reads: everything in the namespace).
_ONCALL_WRITES: dict[str, list[str]] = {
    "apps": ["deployments", "deployments/scale", "replicasets", "replicasets/scale"],
    "": ["secrets", "configmaps", "services"],
    "coordination.k8s.io": ["leases"],
    "batch": ["jobs", "cronjobs"],
    "autoscaling": ["horizontalpodautoscalers"],
    "networking.k8s.io": ["ingresses"],
    "networking.istio.io": ["virtualservices", "destinationrules"],
}


def _rules(resources: Mapping[str, list[str]], verbs: list[str]) -> list[dict[str, Any]]:
    return [{"apiGroups": [group], "resources": list(names), "verbs": list(verbs)}
            for group, names in resources.items()]


def _merge(*maps: Mapping[str, list[str]]) -> dict[str, list[str]]:
    merged: dict[str, list[str]] = {}
    for m in maps:
        for group, names in m.items():
            merged.setdefault(group, [])
            merged[group] += [n for n in names if n not in merged[group]]
    return merged


def _cluster_role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole",
            "metadata": {"name": name, "labels": {"app.kubernetes.io/part-of": "veza-sandbox"}}, "rules": rules}


def _subjects(groups: Iterable[str]) -> list[dict[str, str]]:
    return [{"kind": "Group", "apiGroup": "rbac.authorization.k8s.io", "name": g} for g in groups]


def rbac_manifests(namespaces: Sequence[str] = DEFAULT_NAMESPACES) -> list[dict[str, Any]]:
    """The Namespaces, ClusterRoles and bindings of the module doc, in apply order.

    The roles are ClusterRoles (defined once) bound per Veza namespace by RoleBindings, so a
    person's rights stop at those namespaces; only ``veza:cluster-reader`` (namespaces, nodes)
    is bound cluster-wide. No namespaces: the roles and that binding only (namespaces made later
    need their RoleBindings then: ``ControlPlane.apply_rbac``).
    """
    objects: list[dict[str, Any]] = [
        {"apiVersion": "v1", "kind": "Namespace",
         "metadata": {"name": ns, "labels": {"app.kubernetes.io/part-of": "veza"}}} for ns in namespaces]
    roles = {
        ONCALL_GROUP: _cluster_role("veza:oncall", [
            {"apiGroups": ["*"], "resources": ["*"], "verbs": list(_READ)},
            *_rules(_ONCALL_WRITES, _WRITE),
            {"apiGroups": [""], "resources": ["pods/eviction"], "verbs": ["create"]},
        ]),
        APPROVERS_GROUP: _cluster_role("veza:approver", _rules(_merge(_VIEWER_RESOURCES, _APPROVER_EXTRA), _READ)),
        VIEWERS_GROUP: _cluster_role("veza:viewer", _rules(_VIEWER_RESOURCES, _READ)),
    }
    objects += roles.values()
    objects.append(_cluster_role("veza:cluster-reader", [
        {"apiGroups": [""], "resources": ["namespaces", "nodes"], "verbs": list(_READ)}]))
    objects.append({
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "veza:cluster-reader"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "veza:cluster-reader"},
        "subjects": _subjects(roles)})
    for ns in namespaces:
        for group, role in roles.items():
            objects.append({
                "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
                "metadata": {"name": role["metadata"]["name"], "namespace": ns},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": role["metadata"]["name"]},
                "subjects": _subjects([group])})
    return objects


# -- kubeconfigs --------------------------------------------------------------------------------

def _b64(path: Path) -> str:
    return base64.b64encode(Path(path).read_bytes()).decode()


def _write_yaml_private(path: Path, doc: dict[str, Any]) -> Path:
    """Write a kubeconfig 0600 (it holds tokens and a key), atomically: a reader never sees half."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        yaml.safe_dump(doc, f, sort_keys=False)
    os.replace(tmp, path)
    return path


def write_kubeconfig(path: Path, *, server: str, ca_cert: Path, tokens: Mapping[str, str],
                     admin_cert: Path, admin_key: Path, namespace: str | None = DEFAULT_NAMESPACES[0],
                     current_context: str = ADMIN_CONTEXT) -> Path:
    """A kubeconfig (0600, everything embedded) with one context per person and ``sandbox-admin``.

    The people's contexts default to ``namespace`` (the first Veza namespace); the admin's to
    ``default``. ``current_context`` is one of the contexts' names.
    """
    contexts = [*tokens, ADMIN_CONTEXT]
    if current_context not in contexts:
        raise ValueError(f"no context {current_context!r} (contexts: {', '.join(contexts)})")
    users: list[dict[str, Any]] = [{"name": name, "user": {"token": token}} for name, token in tokens.items()]
    users.append({"name": ADMIN_CONTEXT, "user": {"client-certificate-data": _b64(admin_cert),
                                                  "client-key-data": _b64(admin_key)}})
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server,
                                                         "certificate-authority-data": _b64(ca_cert)}}],
        "users": users,
        "contexts": [{"name": name, "context": {"cluster": CLUSTER_NAME, "user": name,
                                                 **({"namespace": namespace} if namespace and name != ADMIN_CONTEXT
                                                    else {})}}
                     for name in contexts],
        "current-context": current_context,
        "preferences": {},
    }
    return _write_yaml_private(path, doc)


def write_component_kubeconfig(path: Path, *, server: str, ca_cert: Path, client_cert: Path,
                               client_key: Path, user: str) -> Path:
    """A one-context kubeconfig for a component (controller manager, scheduler), files referenced."""
    doc = {
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": CLUSTER_NAME, "cluster": {"server": server, "certificate-authority": str(ca_cert)}}],
        "users": [{"name": user, "user": {"client-certificate": str(client_cert), "client-key": str(client_key)}}],
        "contexts": [{"name": user, "context": {"cluster": CLUSTER_NAME, "user": user}}],
        "current-context": user,
    }
    return _write_yaml_private(path, doc)
