"""Who ran a runbook: the operator (a person), and the Vault and Kubernetes identities used.

The operator is who Vault says the run's token belongs to, when the token is a person's login
(it has an identity entity: ``runbook sandbox login alice``, or the organisation's own login
method): a name anyone can type proves nothing, a login does. Four eyes and approvals compare
those entities. Without a person's token (a root or a plain token, Vault unreachable), the
operator is ``RUNBOOK_OPERATOR`` when set, else the kubeconfig's user for the profile's context
when it names someone (not ``admin``, ``default``, ``system:...`` or the cluster's own name), else
the OS user, and the record says the name was not authenticated. ``RUNBOOK_OPERATOR`` never
overrides a login: it is ignored, and said so, when it names someone else.

Never the token itself. The accessor identifies a token in Vault's audit log (and lets an
administrator revoke it) without granting anything. Each lookup is best effort and quick: a
record is still written when Vault is unreachable.
"""
from __future__ import annotations

import getpass
import os
from pathlib import Path
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

if TYPE_CHECKING:
    from ..config.profiles import Profile

__all__ = ["Person", "operator_identity", "operator_name", "operator_source", "operator_entity", "GENERIC_USERS"]

#: kubeconfig user names that name a role or a cluster, not a person.
GENERIC_USERS = frozenset({"admin", "default", "user", "root", "token", "kubernetes-admin", "cluster-admin",
                           "kube-admin", "kubeadmin", "oidc", "sandbox"})


def local_user() -> str:
    """The OS user (not RUNBOOK_OPERATOR: that one is the operator's own statement)."""
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"


@dataclass(frozen=True)
class Person:
    """Who Vault says a token belongs to: the identity a record, a four-eyes rule and an approval's
    signature rest on, instead of a name anyone can type.

    ``entity_id`` is Vault's identity entity (one per person, whatever the login method); a token
    without one (a root or a plain token) is nobody in particular: ``authenticated`` is False."""

    name: str  # the login's user name (``alice``), else the token's display name
    entity_id: str | None
    display_name: str
    method: str  # the auth method of the login: userpass, oidc, ldap, token ...

    @property
    def authenticated(self) -> bool:
        return bool(self.entity_id)

    @classmethod
    def from_lookup(cls, data: Mapping[str, Any]) -> "Person":
        """From ``auth/token/lookup-self``'s data (or a record's ``identity.vault``)."""
        display = str(data.get("display_name") or "")
        method, _, rest = display.partition("-")
        meta = data.get("meta") or {}
        name = str(data.get("name") or meta.get("username") or meta.get("role") or rest or display or "unknown")
        return cls(name, str(data.get("entity_id") or "") or None, display,
                   str(data.get("method") or (method if rest else "token")))

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "entity_id": self.entity_id, "display_name": self.display_name, "method": self.method}


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
    return {**Person.from_lookup(data).as_dict(), "accessor": data.get("accessor")}


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


def _person(identity: Mapping[str, Any]) -> Person | None:
    """The authenticated person of an identity, if its Vault token was a person's login."""
    vault = identity.get("vault")
    if not vault:
        return None
    person = Person.from_lookup(vault)
    return person if person.authenticated else None


def operator_entity(identity: Mapping[str, Any]) -> str | None:
    """The Vault entity of the operator, when a login proves who they are (what four eyes compares)."""
    person = _person(identity)
    return person.entity_id if person else None


def operator_name(identity: dict[str, Any]) -> str:
    """The person operating: the Vault login's name, else RUNBOOK_OPERATOR, else the kubeconfig
    user when it names a person, else the OS user."""
    person = _person(identity)
    if person is not None:
        return person.name
    stated = os.environ.get("RUNBOOK_OPERATOR", "").strip()
    if stated:
        return stated
    kubernetes = identity.get("kubernetes")
    if _is_person(kubernetes):
        return str(kubernetes["user"])  # type: ignore[index]
    return str(identity.get("user") or "unknown")


def operator_source(identity: dict[str, Any]) -> str:
    """Where the operator's name came from, as the run shows it at start."""
    person = _person(identity)
    if person is not None:
        stated = os.environ.get("RUNBOOK_OPERATOR", "").strip()
        ignored = (f"; RUNBOOK_OPERATOR={stated} ignored: the token is {person.name}'s"
                   if stated and stated.casefold() != person.name.casefold() else "")
        return f"Vault login ({person.method}, entity {person.entity_id}){ignored}"
    if os.environ.get("RUNBOOK_OPERATOR", "").strip():
        return "RUNBOOK_OPERATOR, not authenticated"
    if _is_person(identity.get("kubernetes")):
        return f"kubeconfig user of context {identity['kubernetes'].get('context')}, not authenticated"
    return "OS user, not authenticated"
