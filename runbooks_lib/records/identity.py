"""Who ran a runbook: the Vault token's display name and accessor, the Kubernetes user.

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
    from ..profiles import Profile

__all__ = ["operator_identity", "operator_name"]


def _local_user() -> str:
    try:
        return os.environ.get("RUNBOOK_OPERATOR") or getpass.getuser()
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
            return {"context": context_name, "user": (item.get("context") or {}).get("user")}
    return None


def operator_identity(profile: "Profile | None", timeout: float = 2.0) -> dict[str, Any]:
    """``{"user": local user, "vault": {...} | None, "kubernetes": {...} | None}``."""
    identity: dict[str, Any] = {"user": _local_user(), "vault": None, "kubernetes": None}
    if profile is not None:
        identity["vault"] = _vault_identity(profile, timeout)
        identity["kubernetes"] = _kubernetes_user(profile)
    return identity


def operator_name(identity: dict[str, Any]) -> str:
    """The one name a listing shows: RUNBOOK_OPERATOR, else Vault's display name, else the user."""
    if os.environ.get("RUNBOOK_OPERATOR"):
        return os.environ["RUNBOOK_OPERATOR"]
    vault = identity.get("vault") or {}
    return str(vault.get("display_name") or identity.get("user") or "unknown")
