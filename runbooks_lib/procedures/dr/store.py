"""Backups at a URL, through fsspec: ``s3://veza-backups/postgres/`` in production, a folder
standing for off-site storage in the sandbox.

One backup is three objects side by side: ``<name>.dump.enc`` (the encrypted dump),
``<name>.key`` (the data key wrapped by Vault's transit engine; useless without Vault) and
``<name>.manifest.json``, written last: a backup without a manifest is incomplete and is
neither listed nor restored. A fourth, ``<name>.proofs.jsonl``, holds the signed stamps of the
drills that restored it (:mod:`.proof`).

A manifest says which backup is newest and what a restore must find, so whoever can write to the
storage could make an old backup "latest" by editing its time, or by renaming it. Each manifest
therefore carries ``authentication``: Vault's HMAC (transit ``hmac/<key>``) of everything else in
it, the sha256 of the dump and of the wrapped key included. A store given a ``seal`` lists and
picks only manifests whose HMAC the profile's transit key confirms and that were read under
their own name; ``latest`` is the newest authentic one; the others are kept in ``refused``, with
why. A restore checks its manifest again, whatever store it came from (.restore).
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from ...errors import BackendUnavailable, CheckFailed, NotFound, ParameterError, RunbookError

if TYPE_CHECKING:
    from ...config.profiles import BackupSettings
    from ...platform.vault import Vault

__all__ = ["Manifest", "BackupStore", "ManifestSeal", "VaultSeal", "Vouched", "unauthentic"]

DUMP_SUFFIX = ".dump.enc"
KEY_SUFFIX = ".key"
MANIFEST_SUFFIX = ".manifest.json"
PROOF_SUFFIX = ".proofs.jsonl"  # the stamps of the drills that restored it (.proof)
_MANIFEST_TAG = b"veza-backup-manifest-v1\n"


class ManifestSeal(Protocol):
    """Who vouches for manifests: makes an HMAC of bytes, and checks many at once."""

    def sign(self, data: bytes) -> str: ...

    def verify(self, items: list[tuple[bytes, str]]) -> list[bool]: ...


class VaultSeal:
    """Manifests vouched for by the profile's transit key (never the key a manifest names: an
    edited manifest could name a key its editor holds)."""

    def __init__(self, vault: "Vault", settings: "BackupSettings") -> None:
        self.vault, self.key, self.mount = vault, settings.transit_key, settings.transit_mount

    def sign(self, data: bytes) -> str:
        return self.vault.hmac(data, self.key, self.mount)

    def verify(self, items: list[tuple[bytes, str]]) -> list[bool]:
        # An HMAC that is not Vault's shape is refused here: a malformed item would fail the batch.
        shaped = [i for i, (_, mac) in enumerate(items) if mac.startswith("vault:v")]
        valid = self.vault.verify_hmacs([items[i] for i in shaped], self.key, self.mount)
        verdicts = [False] * len(items)
        for index, ok in zip(shaped, valid):
            verdicts[index] = ok
        return verdicts


class Vouched(Protocol):
    """A manifest (a backup's, a base backup's): its name, its HMAC and the bytes the HMAC covers."""

    name: str
    authentication: str

    def signed_bytes(self) -> bytes: ...


def unauthentic(seal: ManifestSeal, read: "list[tuple[str, Any]]") -> dict[str, str]:
    """For each ``(name it was read under, manifest)`` (a :class:`Vouched`), why it is not to be
    trusted; the authentic ones are absent. One verification call for all."""
    why: dict[str, str] = {}
    for name, manifest in read:
        if manifest.name != name:
            why[name] = f"its manifest names backup {manifest.name!r}: renamed from another backup"
        elif not manifest.authentication:
            why[name] = "its manifest is not authenticated (no HMAC: older than sealed manifests, or stripped)"
    checked = [(name, m) for name, m in read if name not in why]
    verdicts = seal.verify([(m.signed_bytes(), m.authentication) for _, m in checked])
    for (name, _), ok in zip(checked, verdicts):
        if not ok:
            why[name] = "its manifest fails authentication with the transit key: edited, forged or renamed"
    return why


@dataclass(frozen=True)
class Manifest:
    """What a backup holds and how to prove a restore of it (written beside the backup)."""

    name: str
    database: str
    taken_at: str  # ISO UTC: when the dump's snapshot was taken
    finished_at: str
    source_lsn: str  # the primary's WAL position at the snapshot
    source_time: str  # the primary's clock at the snapshot
    size: int  # bytes of the encrypted file
    plain_size: int  # bytes of the dump before encryption
    sha256: str  # of the encrypted file, as stored
    row_counts: dict[str, int]  # per table, in the dump's snapshot
    marker: str  # a row written just before the snapshot: the restore must hold it
    transit: dict[str, str]  # mount and key name that wrapped the data key (never the key)
    tool_versions: dict[str, str]
    duration_s: float
    encryption: str = "AES-256-GCM, 1 MiB segments (STREAM), data key from Vault transit"
    files: dict[str, str] = field(default_factory=dict)
    key_sha256: str = ""  # of the wrapped key file: another backup's key is named before any decryption
    authentication: str = ""  # Vault's HMAC of signed_bytes(): empty = not authenticated

    def signed_bytes(self) -> bytes:
        """What the HMAC covers: every field but the HMAC itself, canonically, after a tag that
        keeps it apart from the key's other HMACs (the WAL's)."""
        fields = {k: v for k, v in asdict(self).items() if k != "authentication"}
        return _MANIFEST_TAG + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    @property
    def taken(self) -> datetime:
        return datetime.fromisoformat(self.taken_at)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Manifest":
        data = json.loads(text)
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in data.items() if k in known})


class BackupStore:
    """The backups under one URL."""

    def __init__(self, url: str | None, storage_options: dict[str, Any] | None = None,
                 seal: ManifestSeal | None = None) -> None:
        self.seal = seal
        self.refused: dict[str, str] = {}  # backup name -> why its manifest is not trusted (list())
        if not url:
            raise ParameterError("no backup storage URL: set backups.url in the profile (s3://... or a folder)")
        self.url = url.rstrip("/")
        self.storage_options = dict(storage_options or {})
        import fsspec

        try:
            self.fs, base = fsspec.core.url_to_fs(self.url, **(storage_options or {}))
        except (ImportError, ValueError) as e:
            raise RunbookError(f"backup storage {self.url}: {e} (for s3:// install the archive extra: "
                               "pip install 'veza-runbooks[archive]')") from e
        except Exception as e:  # ftp/sftp connect as soon as they are made
            raise BackendUnavailable(f"backup storage {self.url} unreachable ({type(e).__name__})") from e
        self.base = base.rstrip("/")

    def path(self, name: str, suffix: str) -> str:
        return f"{self.base}/{name}{suffix}"

    def folder(self, name: str) -> "BackupStore":
        """A store for a folder under this one, reached the same way (same storage options)."""
        return BackupStore(f"{self.url}/{name}", self.storage_options, self.seal)

    def _guard(self, what: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as e:
            raise NotFound(f"backup storage {self.url}: {what}: not found") from e
        except RunbookError:
            raise
        except Exception as e:  # each fsspec backend has its own errors (botocore's are not OSErrors)
            raise BackendUnavailable(f"backup storage {self.url}: {what} failed ({type(e).__name__}: {e})") from e

    def open_write(self, name: str, suffix: str) -> BinaryIO:
        self._guard("create the folder", self.fs.makedirs, self.base, exist_ok=True)
        return self._guard(f"write {name}{suffix}", self.fs.open, self.path(name, suffix), "wb")

    def open_read(self, name: str, suffix: str = DUMP_SUFFIX) -> BinaryIO:
        return self._guard(f"read {name}{suffix}", self.fs.open, self.path(name, suffix), "rb")

    def write_text(self, name: str, suffix: str, text: str) -> None:
        with self.open_write(name, suffix) as out:
            out.write(text.encode())

    def size(self, name: str, suffix: str = DUMP_SUFFIX) -> int:
        return int(self._guard(f"size of {name}{suffix}", self.fs.size, self.path(name, suffix)))

    def read_text(self, name: str, suffix: str) -> str:
        with self.open_read(name, suffix) as source:
            return source.read().decode()

    def _read_manifest(self, name: str) -> Manifest:
        try:
            return Manifest.from_json(self.read_text(name, MANIFEST_SUFFIX))
        except (ValueError, TypeError) as e:  # not JSON, or not a manifest's fields
            raise CheckFailed(f"backup {name}: its manifest {self.path(name, MANIFEST_SUFFIX)} is unreadable "
                              f"({type(e).__name__}): do not restore it") from None

    def manifest(self, name: str) -> Manifest:
        """The manifest of backup ``name`` (``latest``: the newest). With a seal, only an authentic
        one: CheckFailed naming the backup and why otherwise."""
        if name == "latest":
            found = self.list()
            if not found:
                refused = f" ({len(self.refused)} refused: {', '.join(sorted(self.refused))})" if self.refused else ""
                raise NotFound(f"no authentic backup in {self.url}{refused}" if self.seal else f"no backup in {self.url}")
            return found[0]
        manifest = self._read_manifest(name)
        if self.seal is not None:
            why = unauthentic(self.seal, [(name, manifest)]).get(name)
            if why:
                raise CheckFailed(f"backup {name}: {why}; not restored")
        return manifest

    def list(self) -> list[Manifest]:
        """Complete backups (with a manifest), newest first; with a seal, the authentic ones only
        (the others in ``refused``). Without one, manifests as stored: not proof of anything."""
        self.refused = {}
        if not self._guard("list", self.fs.exists, self.base):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self._guard("list", self.fs.ls, self.base, detail=False)]
        read = []
        for name in (n.removesuffix(MANIFEST_SUFFIX) for n in names if n.endswith(MANIFEST_SUFFIX)):
            try:
                read.append((name, self._read_manifest(name)))
            except CheckFailed as e:
                self.refused[name] = str(e)
        if self.seal is not None:
            self.refused.update(unauthentic(self.seal, read))
        manifests = [m for name, m in read if name not in self.refused]
        return sorted(manifests, key=lambda m: m.taken_at, reverse=True)

    def files(self) -> list[str]:
        """Every object under the URL (complete or not): what a leak check looks at."""
        if not self._guard("list", self.fs.exists, self.base):
            return []
        return sorted(self._guard("list", self.fs.find, self.base))

    def delete(self, name: str) -> list[str]:
        """Remove a backup's objects (manifest first: a half-deleted backup is never listed)."""
        removed = []
        for suffix in (MANIFEST_SUFFIX, DUMP_SUFFIX, KEY_SUFFIX, PROOF_SUFFIX):
            path = self.path(name, suffix)
            if self._guard("check", self.fs.exists, path):
                self._guard(f"delete {name}{suffix}", self.fs.rm, path)
                removed.append(path)
        return removed
