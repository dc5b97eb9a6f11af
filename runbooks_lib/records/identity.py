"""Who ran a runbook: the operator (a person), and the Vault and Kubernetes identities used.

The operator is a person's name, so that two people are told apart (a record, four eyes):
``RUNBOOK_OPERATOR`` when set, else the kubeconfig's user for the profile's context when it
names someone (not ``admin``, ``default``, ``system:...`` or the cluster's own name, which
say nothing about who), else the OS user. The Vault token's display name is not a person
(``token`` for every run in the sandbox): it stays in ``identity``, as before.

Never the token itself. The accessor identifies a token in Vault's audit log (and lets an
administrator revoke it) without granting anything; the display name says whose token it
is (``token-alice``, ``kubernetes-oncall``). Each lookup is best effort and quick: a record
is still written when Vault is unreachable.
"""
from __future__ import annotations

import getpass
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..config.profiles import Profile

__all__ = ["operator_identity", "operator_name", "operator_source", "GENERIC_USERS"]

#: kubeconfig user names that name a role or a cluster, not a person.
GENERIC_USERS = frozenset({"admin", "default", "user", "root", "token", "kubernetes-admin", "cluster-admin",
                           "kube-admin", "kubeadmin", "oidc", "sandbox"})


def local_user() -> str:
    """The OS user (not RUNBOOK_OPERATOR: that one is the operator's own statement)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


def _vault_identity(profile: "Profile", timeout: float) -> dict[str, Any] | None:
    token = profile.vault.auth.token.get_secret_value() if profile.vault.auth.token else os.environ.get("VAULT_TOKEN")
    if not token or not profile.vault.address:
        return None
    import requests

    try:
        reply = requests.get(
            f"{profile.vault.address.rstrip('/')}/v1/auth/token/lookup-self",
            headers={"X-Vault-Token": token}, timeout=timeout,
        )
        data = reply.json().get("data") or {} if reply.ok else {}
    except (requests.RequestException, ValueError):
        return None
    if not data:
        return None
    return {"display_name": data.get("display_name"), "accessor": data.get("accessor"),
            "entity_id": data.get("entity_id") or None}


def _kubernetes_user(profile: "Profile") -> dict[str, Any] | None:
    import yaml

    path = profile.cluster.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] \
        or str(Path.home() / ".kube" / "config")
    try:
        config = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError):
        return None
    context_name = profile.cluster.context or config.get("current-context")
    for item in config.get("contexts") or []:
        if item.get("name") == context_name:
            context = item.get("context") or {}
            return {"context": context_name, "user": context.get("user"), "cluster": context.get("cluster")}
    return None


def _is_person(kubernetes: dict[str, Any] | None) -> bool:
    """Whether the kubeconfig user names someone rather than a role or the cluster itself."""
    user = str((kubernetes or {}).get("user") or "").strip()
    if not user or user.lower() in GENERIC_USERS or user.startswith("system:"):
        return False
    return user not in {(kubernetes or {}).get("cluster"), (kubernetes or {}).get("context")}


def operator_identity(profile: "Profile | None", timeout: float = 2.0) -> dict[str, Any]:
    """``{"user": OS user, "vault": {...} | None, "kubernetes": {...} | None}``."""
    identity: dict[str, Any] = {"user": local_user(), "vault": None, "kubernetes": None}
    if profile is not None:
        identity["vault"] = _vault_identity(profile, timeout)
        identity["kubernetes"] = _kubernetes_user(profile)
    return identity


def operator_name(identity: dict[str, Any]) -> str:
    """The person operating: RUNBOOK_OPERATOR, else the kubeconfig user when it names a person,
    else the OS user. Never Vault's display name (a token's, shared by everyone using it)."""
    stated = os.environ.get("RUNBOOK_OPERATOR", "").strip()
    if stated:
        return stated
    kubernetes = identity.get("kubernetes")
    if _is_person(kubernetes):
        return str(kubernetes["user"])  # type: ignore[index]
    return str(identity.get("user") or "unknown")


def operator_source(identity: dict[str, Any]) -> str:
    """Where the operator's name came from, as the run shows it at start."""
    if os.environ.get("RUNBOOK_OPERATOR", "").strip():
        return "RUNBOOK_OPERATOR"
    if _is_person(identity.get("kubernetes")):
        return f"kubeconfig user of context {identity['kubernetes'].get('context')}"
    return "OS user"
