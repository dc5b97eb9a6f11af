"""Backups at a URL, through fsspec: ``s3://veza-backups/postgres/`` in production, a folder
standing for off-site storage in the sandbox.

One backup is three objects side by side: ``<name>.dump.enc`` (the encrypted dump),
``<name>.key`` (the data key wrapped by Vault's transit engine; useless without Vault) and
``<name>.manifest.json``, written last: a backup without a manifest is incomplete and is
neither listed nor restored.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, BinaryIO

from ...errors import BackendUnavailable, NotFound, ParameterError, RunbookError

__all__ = ["Manifest", "BackupStore"]

DUMP_SUFFIX = ".dump.enc"
KEY_SUFFIX = ".key"
MANIFEST_SUFFIX = ".manifest.json"


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

    def __init__(self, url: str | None, storage_options: dict[str, Any] | None = None) -> None:
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
        return BackupStore(f"{self.url}/{name}", self.storage_options)

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

    def read_text(self, name: str, suffix: str) -> str:
        with self.open_read(name, suffix) as source:
            return source.read().decode()

    def manifest(self, name: str) -> Manifest:
        if name == "latest":
            found = self.list()
            if not found:
                raise NotFound(f"no backup in {self.url}")
            return found[0]
        return Manifest.from_json(self.read_text(name, MANIFEST_SUFFIX))

    def list(self) -> list[Manifest]:
        """Complete backups (with a manifest), newest first."""
        if not self._guard("list", self.fs.exists, self.base):
            return []
        names = [p.rsplit("/", 1)[-1] for p in self._guard("list", self.fs.ls, self.base, detail=False)]
        manifests = [self.manifest(n.removesuffix(MANIFEST_SUFFIX)) for n in names if n.endswith(MANIFEST_SUFFIX)]
        return sorted(manifests, key=lambda m: m.taken_at, reverse=True)

    def files(self) -> list[str]:
        """Every object under the URL (complete or not): what a leak check looks at."""
        if not self._guard("list", self.fs.exists, self.base):
            return []
        return sorted(self._guard("list", self.fs.find, self.base))

    def delete(self, name: str) -> list[str]:
        """Remove a backup's objects (manifest first: a half-deleted backup is never listed)."""
        removed = []
        for suffix in (MANIFEST_SUFFIX, DUMP_SUFFIX, KEY_SUFFIX):
            path = self.path(name, suffix)
            if self._guard("check", self.fs.exists, path):
                self._guard(f"delete {name}{suffix}", self.fs.rm, path)
                removed.append(path)
        return removed
