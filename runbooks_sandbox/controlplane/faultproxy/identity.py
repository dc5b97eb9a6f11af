"""Who the caller is, and how the proxy tells the apiserver so without changing it.

The proxy terminates TLS, so whatever the caller proved during the handshake is lost to the
apiserver. The sandbox has two kinds of callers (:mod:`..people`):

- **people** (alice, bob, carol) send a bearer token from the static token file. A token is a
  header: it is passed on unchanged, over a connection that carries no client certificate of
  its own, so the apiserver authenticates the token itself exactly as it would without the
  proxy (its token authenticator, its audit user, its ``kubectl auth whoami``).
- **machines and the admin** (``sandbox-admin``, O=system:masters; components; a node agent)
  prove themselves with a client certificate of the cluster CA, which cannot be forwarded.
  The proxy verifies it against that CA and speaks for the caller as Kubernetes' authenticating
  proxy: it connects with its own ``front-proxy-client`` certificate of the front-proxy CA
  (``--requestheader-client-ca-file``; the apiserver's ``--requestheader-allowed-names``
  admits that CN only) and names the caller in ``X-Remote-User`` (the cert's CN) and
  ``X-Remote-Group`` (one per O), as the apiserver's x509 authenticator would have read them.

A caller with both is the certificate's user, as at the apiserver, whose x509 authenticator
runs before the token authenticator. A caller with neither reaches the apiserver anonymously.
``X-Remote-*`` headers a caller sends are always dropped: only the proxy may assert them, and
only over its front-proxy connection. ``Impersonate-*`` headers pass: the apiserver authorizes
them against the authenticated user, as without the proxy.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["Caller", "caller_from_peer_cert", "upstream_headers", "USER_HEADER", "GROUP_HEADER"]

USER_HEADER = "X-Remote-User"  # --requestheader-username-headers
GROUP_HEADER = "X-Remote-Group"  # --requestheader-group-headers
_REMOTE_PREFIX = "x-remote-"  # user, group and X-Remote-Extra-*: never from a caller

# Hop-by-hop headers (RFC 9110 7.6.1): they describe one connection, not the request.
HOP_BY_HOP = frozenset({"connection", "keep-alive", "proxy-connection", "proxy-authenticate",
                        "proxy-authorization", "te", "trailer", "transfer-encoding", "upgrade"})


@dataclass(frozen=True)
class Caller:
    """A caller proven by a client certificate of the cluster CA (None when it sent none)."""

    user: str
    groups: tuple[str, ...]


def caller_from_peer_cert(cert: dict[str, Any] | None) -> Caller | None:
    """The user (CN) and groups (O) of a verified peer certificate, as ``ssl.getpeercert()`` gives it.

    Only a certificate the TLS layer verified against the cluster CA reaches here (the server's
    context has ``CERT_OPTIONAL`` with that CA): an unverifiable one fails the handshake.
    """
    if not cert:
        return None
    user, groups = "", []
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                user = value
            elif key == "organizationName":
                groups.append(value)
    return Caller(user, tuple(groups)) if user else None


def upstream_headers(headers: list[tuple[str, str]], caller: Caller | None, *, client_ip: str,
                     keep_upgrade: bool = False) -> list[tuple[str, str]]:
    """The request's headers as the proxy sends them on (module doc).

    Drops hop-by-hop headers (``keep_upgrade``: an upgrade's ``Connection``/``Upgrade`` pair is
    forwarded, the apiserver must see it), every ``X-Remote-*`` a caller sent, and with a
    certificate caller its ``Authorization`` too (the certificate's user is who it is); adds
    ``X-Forwarded-For`` (the apiserver's audit log then names the caller's address, not ours).
    """
    named_in_connection = {token.strip().lower() for name, value in headers if name.lower() == "connection"
                           for token in value.split(",")}
    kept: list[tuple[str, str]] = []
    forwarded_for = ""
    for name, value in headers:
        lower = name.lower()
        if keep_upgrade and lower in ("connection", "upgrade"):
            kept.append((name, value))
            continue
        if lower in HOP_BY_HOP or lower in named_in_connection or lower.startswith(_REMOTE_PREFIX):
            continue
        if lower == "authorization" and caller is not None:
            continue
        if lower == "x-forwarded-for":
            forwarded_for = value
            continue
        kept.append((name, value))
    kept.append(("X-Forwarded-For", f"{forwarded_for}, {client_ip}" if forwarded_for else client_ip))
    if caller is not None:
        kept.append((USER_HEADER, caller.user))
        kept += [(GROUP_HEADER, group) for group in caller.groups]
    return kept
