"""Vault (or OpenBao, which speaks the same API) through hvac, KV version 2.

Every value read is wrapped in ``SecretValue`` (masked wherever it is shown) and registered
for redaction, so it cannot reach a record in clear even when revealed for an API call.
What a runbook may show is which keys exist and a short hash of each value, to tell that a
value changed without telling what it is.
"""
from __future__ import annotations

import hashlib
import warnings
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any, Mapping

from ..errors import BackendUnavailable, CheckFailed, GuardRefused, NotFound, ParameterError, RunbookError
from ..records.identity import Person
from ..records.secret import SecretValue

if TYPE_CHECKING:
    from ..config.profiles import VaultSettings

__all__ = ["Vault", "VaultHealth", "Person", "fingerprint", "login_userpass", "SECRET_NAME", "vault_key_to_secret_key"]

#: The Kubernetes Secret the platform's pods read, synced from Vault's ``secret/veza/<env>``.
SECRET_NAME = "veza-secrets"


def vault_key_to_secret_key(key: str) -> str:
    """Vault's jwt_secret is the Secret's jwt-secret (the guide's naming)."""
    return key.replace("_", "-")


def fingerprint(value: str | SecretValue) -> str:
    """A short hash to compare values in a record without showing them."""
    clear = value.reveal() if isinstance(value, SecretValue) else value
    return hashlib.sha256(clear.encode()).hexdigest()[:12]


@dataclass(frozen=True)
class VaultHealth:
    address: str
    reachable: bool
    initialized: bool | None
    sealed: bool | None
    version: str | None


def login_userpass(address: str, username: str, password: str | SecretValue, timeout: float = 10) -> SecretValue:
    """A token for ``username`` from Vault's userpass method (the sandbox's people; in production
    a person logs in with the organisation's method and sets VAULT_TOKEN). Masked and registered."""
    import requests

    clear = password.reveal() if isinstance(password, SecretValue) else password
    try:
        reply = requests.post(f"{address.rstrip('/')}/v1/auth/userpass/login/{username}", json={"password": clear},
                              timeout=timeout)
    except requests.RequestException as e:
        raise BackendUnavailable(f"Vault at {address} unreachable ({type(e).__name__})") from e
    if reply.status_code in (400, 401, 403):
        raise GuardRefused(f"Vault: {username} could not log in (wrong user name or password)")
    if not reply.ok:
        raise BackendUnavailable(f"Vault: login of {username}: HTTP {reply.status_code}")
    return SecretValue(str(reply.json()["auth"]["client_token"]), name="vault_token")


class Vault:
    """The Vault a profile names, with the profile's token, or with ``token`` (a person's own:
    an approver's, a login in JupyterLab)."""

    def __init__(self, settings: "VaultSettings", token: str | SecretValue | None = None) -> None:
        self.settings = settings
        self._token = token

    @cached_property
    def _client(self) -> Any:
        import hvac

        auth = self.settings.auth
        if self._token is not None:
            token = self._token.reveal() if isinstance(self._token, SecretValue) else self._token
        elif auth.method != "token":
            raise ParameterError(f"Vault auth method {auth.method!r} is not supported yet; use a token")
        else:
            token = auth.token.get_secret_value() if auth.token else None
        return hvac.Client(url=self.settings.address, token=token or None, timeout=10)

    def _translate(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        import hvac.exceptions as hv
        import requests

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                reply = fn(*args, **kwargs)
            if isinstance(reply, requests.Response):  # hvac hands back a 2xx body it could not parse as JSON
                raise BackendUnavailable(f"Vault: {what}: the answer is not JSON (HTTP {reply.status_code})")
            return reply
        except RunbookError:
            raise
        except hv.InvalidPath as e:
            raise NotFound(f"Vault: {what}: no such path") from e
        except (hv.Forbidden, hv.Unauthorized) as e:
            raise GuardRefused(f"Vault: {what}: permission denied (check your token)") from e
        except hv.InvalidRequest as e:  # e.g. a check-and-set write that lost the race
            from ..records.redaction import redact

            reason = redact(str(e).splitlines()[0] if str(e) else "invalid request")
            raise CheckFailed(f"Vault: {what}: refused: {reason}") from e
        except hv.VaultDown as e:  # HTTP 503: hvac says "Vault is sealed" when it is
            if "sealed" in str(e).lower():
                raise BackendUnavailable(f"Vault: {what}: Vault is sealed; once it is unsealed, "
                                         "`runbook resume` continues the run") from e
            raise BackendUnavailable(f"Vault: {what}: Vault is down (HTTP 503)") from e
        except hv.VaultError as e:
            raise BackendUnavailable(f"Vault: {what}: {type(e).__name__}") from e
        except requests.RequestException as e:
            raise BackendUnavailable(f"Vault at {self.settings.address} unreachable ({type(e).__name__})") from e

    def _split(self, path: str | None) -> tuple[str, str]:
        full = path or self.settings.path
        mount, _, rest = full.partition("/")
        if not rest:
            raise ParameterError(f"Vault path {full!r} must be <mount>/<path>, e.g. secret/veza/production")
        return mount, rest

    def read(self, path: str | None = None, *, version: int | None = None) -> dict[str, SecretValue]:
        """The secrets at ``path`` (default: the profile's ``secret/veza/<env>``), each masked;
        ``version`` reads an earlier KV version (the latest by default)."""
        return {key: SecretValue(str(value), name=key) for key, value in self._kv_data(path, version).items()}

    def read_public(self, path: str) -> dict[str, str]:
        """Values kept in Vault for their integrity, not their secrecy (the ledger's anchored head):
        plain strings, not registered for masking; ``read`` would mask a hash in every output."""
        return {key: str(value) for key, value in self._kv_data(path, None).items()}

    def _kv_data(self, path: str | None, version: int | None) -> dict[str, Any]:
        """The KV v2 secret's data at ``path`` (a version, or the latest), as Vault returns it."""
        mount, rest = self._split(path)
        reply = self._translate(
            f"read {mount}/{rest}" + (f" version {version}" if version else ""),
            self._client.secrets.kv.v2.read_secret_version,
            path=rest, mount_point=mount, version=version, raise_on_deleted_version=True,
        )
        return reply["data"]["data"] or {}

    def current_version(self, path: str | None = None) -> int:
        """The KV version number the latest read returns (from the secret's metadata)."""
        mount, rest = self._split(path)
        reply = self._translate(f"read the metadata of {mount}/{rest}", self._client.secrets.kv.v2.read_secret_metadata,
                                path=rest, mount_point=mount)
        return int(reply["data"]["current_version"])

    def write(self, data: Mapping[str, str | SecretValue], path: str | None = None, *, cas: int | None = None,
              public: bool = False) -> int:
        """Write a new version of the secret at ``path``; returns the version number. With ``cas``
        (check-and-set), Vault refuses the write unless the current version is still ``cas``.
        Plain values are registered for masking, unless ``public`` (kept in Vault for integrity
        only, like the ledger's head: masked, its hash would be refused in every later record)."""
        mount, rest = self._split(path)
        clear = {k: v.reveal() if isinstance(v, SecretValue) else SecretValue(str(v), register=not public).reveal()
                 for k, v in data.items()}
        reply = self._translate(
            f"write {mount}/{rest}", self._client.secrets.kv.v2.create_or_update_secret,
            path=rest, secret=clear, mount_point=mount, cas=cas,
        )
        return int(reply["data"]["version"])

    def health(self) -> VaultHealth:
        """Reachability and seal state; never raises for a down Vault, it reports it."""
        try:
            status = self._translate("read seal status", self._client.sys.read_seal_status)
        except BackendUnavailable:
            return VaultHealth(self.settings.address, False, None, None, None)
        return VaultHealth(
            self.settings.address, True, bool(status.get("initialized")), bool(status.get("sealed")), status.get("version")
        )

    def data_key(self, key_name: str, mount: str = "transit") -> tuple[bytes, str]:
        """A fresh 256-bit data key from the transit engine: (plaintext bytes, wrapped key).

        Only the wrapped form (``vault:v1:...``) may be stored; the plaintext is used in memory
        and dropped. Envelope encryption: Vault never sees the data, the data never holds a
        usable key.
        """
        import base64

        reply = self._translate(
            f"generate a data key with {mount}/keys/{key_name}", self._client.secrets.transit.generate_data_key,
            name=key_name, key_type="plaintext", bits=256, mount_point=mount,
        )
        data = reply["data"]
        return base64.b64decode(data["plaintext"]), str(data["ciphertext"])

    def unwrap_data_key(self, wrapped: str, key_name: str, mount: str = "transit") -> bytes:
        """The plaintext of a data key wrapped by :meth:`data_key`."""
        import base64

        reply = self._translate(
            f"unwrap a data key with {mount}/keys/{key_name}", self._client.secrets.transit.decrypt_data,
            name=key_name, ciphertext=wrapped, mount_point=mount,
        )
        return base64.b64decode(reply["data"]["plaintext"])

    def whoami(self) -> Person:
        """Who this client's token belongs to, as Vault says (``auth/token/lookup-self``)."""
        reply = self._translate("look up the token", self._client.auth.token.lookup_self)
        return Person.from_lookup(reply.get("data") or {})

    def sign(self, statement: bytes, key_name: str, mount: str = "transit") -> str:
        """Vault transit's signature of ``statement`` with ``key_name`` (``vault:v1:...``): only a
        token whose policy may sign with that key gets one (the approvers' key)."""
        import base64

        reply = self._translate(f"sign with {mount}/keys/{key_name}", self._client.secrets.transit.sign_data,
                                name=key_name, hash_input=base64.b64encode(statement).decode(), mount_point=mount)
        return str(reply["data"]["signature"])

    def verify(self, statement: bytes, signature: str, key_name: str, mount: str = "transit") -> bool:
        """Whether ``signature`` is ``key_name``'s over ``statement`` (any key version still kept)."""
        import base64

        try:
            reply = self._translate(f"verify with {mount}/keys/{key_name}", self._client.secrets.transit.verify_signed_data,
                                    name=key_name, hash_input=base64.b64encode(statement).decode(), signature=signature,
                                    mount_point=mount)
        except CheckFailed:  # a malformed signature: not valid
            return False
        return bool((reply.get("data") or {}).get("valid"))

    def unwrap_data_keys(self, wrapped: list[str], key_name: str, mount: str = "transit") -> list[bytes]:
        """The plaintexts of many wrapped data keys in one call (a PITR's WAL segments: one each)."""
        import base64

        if not wrapped:
            return []
        reply = self._translate(
            f"unwrap {len(wrapped)} data keys with {mount}/keys/{key_name}", self._client.secrets.transit.decrypt_data,
            name=key_name, batch_input=[{"ciphertext": w} for w in wrapped], mount_point=mount,
        )
        results = reply["data"]["batch_results"]
        failed = [i for i, r in enumerate(results) if r.get("error") or "plaintext" not in r]
        if failed:
            raise CheckFailed(f"Vault: {len(failed)} of {len(wrapped)} data keys do not unwrap with "
                              f"{mount}/keys/{key_name} (first: item {failed[0]})")
        return [base64.b64decode(r["plaintext"]) for r in results]

    def hmac(self, data: bytes, key_name: str, mount: str = "transit") -> str:
        """Vault's HMAC-SHA256 of ``data`` with the transit key (``vault:v1:...``): proof, to whoever
        asks this Vault, that someone allowed to use the key vouched for exactly these bytes."""
        import base64

        reply = self._translate(
            f"HMAC with {mount}/keys/{key_name}", self._client.secrets.transit.generate_hmac,
            name=key_name, hash_input=base64.b64encode(data).decode(), algorithm="sha2-256", mount_point=mount,
        )
        return str(reply["data"]["hmac"])

    def verify_hmacs(self, items: list[tuple[bytes, str]], key_name: str, mount: str = "transit") -> list[bool]:
        """For each ``(data, hmac)``, whether the HMAC is the transit key's for that data (one call)."""
        import base64

        if not items:
            return []
        batch = [{"input": base64.b64encode(data).decode(), "hmac": mac} for data, mac in items]
        reply = self._translate(
            f"verify {len(items)} HMACs with {mount}/keys/{key_name}",
            lambda: self._client.adapter.post(f"/v1/{mount}/verify/{key_name}/sha2-256", json={"batch_input": batch}),
        )
        return [bool(r.get("valid")) and not r.get("error") for r in reply["data"]["batch_results"]]

    def token_identity(self) -> dict[str, str]:
        """Who the token belongs to (display name, accessor): an operator identity, never the token."""
        reply = self._translate("look up the token", self._client.auth.token.lookup_self)
        data = reply.get("data", {})
        return {"display_name": str(data.get("display_name", "")), "accessor": str(data.get("accessor", ""))}

    def verify_hmac(self, data: bytes, mac: str, key_name: str, mount: str = "transit") -> bool:
        """Whether ``mac`` is Vault's HMAC of ``data`` with the transit key (any of its versions)."""
        return self.verify_hmacs([(data, mac)], key_name, mount)[0]


class TransitLedgerKey:
    """The ledger's key in Vault's transit engine (``records.trust.LedgerKey``): every line's MAC is
    ``transit/hmac/<key>``, checkable from any machine with access to the key, held by none."""

    def __init__(self, vault: Vault, transit_key: str) -> None:
        mount, _, name = transit_key.rpartition("/")
        self.vault, self.mount, self.name = vault, mount or "transit", name
        self.key_id = f"vault-transit:{self.mount}/{self.name}"

    def mac(self, data: bytes) -> str:
        return self.vault.hmac(data, self.name, self.mount)

    def verify(self, data: bytes, mac: str) -> bool:
        return str(mac).startswith("vault:") and self.vault.verify_hmac(data, mac, self.name, self.mount)


class VaultHeadAnchor:
    """The ledger's head in Vault KV (``records.trust.Anchor``): ``<path>/<writer>``, one per machine."""

    def __init__(self, vault: Vault, path: str) -> None:
        self.vault, self.path = vault, path.rstrip("/")
        self.name = f"Vault KV {self.path}"

    def write(self, head: Any) -> None:
        self.vault.write({k: str(v) for k, v in head.as_dict().items()}, f"{self.path}/{head.writer}", public=True)

    def read(self, writer: str) -> Any:
        from ..records.trust import Head

        try:
            data = self.vault.read_public(f"{self.path}/{writer}")
        except NotFound:
            return None
        return Head.from_dict(data)
