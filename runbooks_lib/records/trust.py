"""What the ledger trusts beyond itself: a key it does not keep, and anchors off the machine.

A hash chain alone proves nothing to someone who can rewrite the whole file. So each ledger line
also carries a MAC over its content (which names the previous line's hash), made with a key the
ledger does not keep beside itself:

- in production, Vault's transit engine (``transit/hmac/<key>``): the key never leaves Vault, and
  every machine that may read the archive can have a line checked (``platform.vault.TransitLedgerKey``,
  named by the profile's ``records.ledger_transit_key``);
- without Vault (a unit test, a laptop), ``FileKey``: 32 random bytes in a 0600 file outside the
  records folder, ``RUNBOOKS_LEDGER_KEY`` or ``~/.config/veza-runbooks/ledger.key``. It keeps the
  chain honest against someone who can write the records but not read the operator's home; other
  machines cannot check its MACs (``records verify`` says so, it is not a failure there).

And the chain's head (last hash, count, time, writer) is anchored off the machine, so that
dropping the newest records, or rewriting the chain with a key, still shows: written to the archive
beside this writer's ledger with every publication (``ArchiveAnchor``), and to Vault KV when the
profile names a path (``platform.vault.VaultHeadAnchor``). ``records verify`` compares the local
chain with every anchor it can read.

Each machine writes its own ledger (``writer_id``): publishing never overwrites another's.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import socket
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable, Protocol

__all__ = ["LedgerKey", "FileKey", "Head", "Anchor", "ArchiveAnchor", "writer_id", "use_ledger_key", "use_anchors",
           "ledger_key", "anchors", "keys_by_id", "set_provider", "configure_for"]


class LedgerKey(Protocol):
    """What keys a ledger's lines: ``mac`` of a line's bytes, and ``verify`` of a MAC made earlier."""

    key_id: str

    def mac(self, data: bytes) -> str: ...

    def verify(self, data: bytes, mac: str) -> bool: ...


def _default_key_path() -> Path:
    configured = os.environ.get("RUNBOOKS_LEDGER_KEY")
    if configured:
        return Path(configured).expanduser()
    base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "veza-runbooks" / "ledger.key"


class FileKey:
    """An HMAC-SHA256 key in a file only its owner can read, created on first use."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = Path(path) if path is not None else _default_key_path()
        self._key: bytes | None = None

    def _secret(self) -> bytes:
        if self._key is None:
            try:
                self._key = self._read()
            except FileNotFoundError:
                self._key = self._create()
        return self._key

    def _read(self) -> bytes:
        key = bytes.fromhex(self.path.read_text().strip())
        if len(key) < 32:
            raise ValueError(f"{self.path}: not a ledger key (32 bytes, hex)")
        return key

    def _create(self) -> bytes:
        """A new key, published whole: written to a private file, then linked to its name, which
        fails if another process made one first (that one is used: two keys would fork the chain)."""
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        key = secrets.token_bytes(32)
        draft = self.path.with_name(f".{self.path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            os.fchmod(f.fileno(), 0o600)
            f.write(key.hex())
        try:
            os.link(draft, self.path)
        except FileExistsError:
            return self._read()
        finally:
            draft.unlink(missing_ok=True)
        return key

    @property
    def key_id(self) -> str:
        """Names the key without revealing it (a hash of a 256-bit random key)."""
        return "file:" + hashlib.sha256(b"veza-ledger-key-id:" + self._secret()).hexdigest()[:16]

    def mac(self, data: bytes) -> str:
        return "hmac-sha256:" + hmac.new(self._secret(), data, hashlib.sha256).hexdigest()

    def verify(self, data: bytes, mac: str) -> bool:
        return hmac.compare_digest(self.mac(data), str(mac))


@dataclass(frozen=True)
class Head:
    """A ledger's last line as anchored elsewhere: who wrote it, how many lines, its hash, when."""

    writer: str
    seq: int
    hash: str
    sealed_at: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Head | None":
        try:
            return cls(str(data["writer"]), int(data["seq"]), str(data["hash"]), str(data.get("sealed_at") or ""))
        except (KeyError, TypeError, ValueError):
            return None


class Anchor(Protocol):
    """A place off this machine that keeps a ledger's head."""

    name: str

    def write(self, head: Head) -> None: ...

    def read(self, writer: str) -> Head | None: ...


def writer_id() -> str:
    """This machine's name as a ledger writer: ``RUNBOOKS_WRITER_ID``, else the host name and a
    hash of the machine id (two hosts named alike still write two ledgers)."""
    if configured := os.environ.get("RUNBOOKS_WRITER_ID"):
        return re.sub(r"[^A-Za-z0-9_.-]", "-", configured)
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    host = re.sub(r"[^A-Za-z0-9_.-]", "-", socket.gethostname()) or "host"
    return f"{host}-{hashlib.sha256(machine.encode()).hexdigest()[:8]}" if machine else host


class ArchiveAnchor:
    """The head beside the writer's ledger in the archive: ``<url>/ledgers/<writer>.head.json``."""

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.url, self.storage_options = url.rstrip("/"), dict(storage_options or {})
        self.name = f"archive {self.url}"

    def _path(self, writer: str) -> tuple[Any, str]:
        import fsspec

        fs, base = fsspec.core.url_to_fs(self.url, **self.storage_options)
        return fs, f"{base.rstrip('/')}/ledgers/{writer}.head.json"

    def write(self, head: Head) -> None:
        fs, path = self._path(head.writer)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, json.dumps(head.as_dict(), sort_keys=True).encode())

    def read(self, writer: str) -> Head | None:
        fs, path = self._path(writer)
        if not fs.exists(path):
            return None
        return Head.from_dict(json.loads(fs.cat_file(path)))


# What this process was told to use (``runbook`` wires Vault's key and anchor from the profile).
_configured_key: LedgerKey | None = None
_configured_anchors: list[Anchor] = []


def use_ledger_key(key: LedgerKey | None) -> None:
    """Key the lines this process seals with ``key`` (None: back to the file key)."""
    global _configured_key
    _configured_key = key


def use_anchors(extra: list[Anchor]) -> None:
    """Also anchor every seal's head in these places, and compare with them in ``verify``."""
    _configured_anchors[:] = list(extra)


def ledger_key() -> LedgerKey:
    """The key new lines are made with: the configured one, else the file key."""
    return _configured_key if _configured_key is not None else FileKey()


def keys_by_id() -> dict[str, LedgerKey]:
    """Every key this process can check a line with, by the id a line names."""
    file_key = FileKey()
    keys: list[LedgerKey] = [file_key] if file_key.path.is_file() else []  # verifying never makes a key
    if _configured_key is not None:
        keys.append(_configured_key)
    found = {}
    for key in keys:
        try:
            found[key.key_id] = key
        except Exception:  # noqa: BLE001 - an unreachable Vault: its lines are reported unchecked
            continue
    return found


def anchors() -> list[Anchor]:
    return list(_configured_anchors)


# Who knows how to reach Vault for an environment: ``runbook`` (above every room) registers it, so
# that the records commands can use the profile's Vault key and anchor without importing platform/.
_provider: Callable[[str], None] | None = None


def set_provider(provider: Callable[[str], None] | None) -> None:
    """``provider(env)`` configures this process's key and anchors from ``env``'s profile."""
    global _provider
    _provider = provider


def configure_for(env: str | None) -> None:
    """Use ``env``'s Vault key and anchors, when a provider is registered and ``env`` is named."""
    if env and _provider is not None:
        _provider(env)
