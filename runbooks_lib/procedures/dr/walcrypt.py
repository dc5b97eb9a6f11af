"""WAL segments sealed for the archive, and the ``archive_command`` that seals them.

PostgreSQL hands each finished WAL segment (16 MiB; history and backup files too) to
``archive_command``. Archived in clear, the off-site copy held every row the database wrote:
whoever reads the archive reads the data. So each file is sealed as a backup is: a fresh
256-bit data key from Vault's transit engine (``datakey/plaintext``), the file encrypted with it
(:mod:`.envelope`, the file's name as associated data: a segment renamed to stand for another
fails), and only the wrapped key kept, in the file's first line::

    VEZAWAL1 <wrapped data key> <transit HMAC of the plaintext's sha256>\\n<envelope>

stored as ``<name>.enc``, written under a temporary name and linked into place: a file is
never overwritten and never seen half-written. A promoted standby offers again segments the
old primary archived: the same plaintext counts as archived (its sha256's HMAC is checked by
Vault's ``transit/verify``, so the archiver needs no right to decrypt anything), other bytes
under that name are refused, as PostgreSQL's own advice has it.

``python3 walcrypt.py push %p %f --config FILE`` is the archive_command. It runs as the
database server's user on its host, so it needs only the standard library and
``cryptography`` (Vault through urllib; a copy of this file and ``envelope.py`` side by side is
the whole install, see runbooks_sandbox.servers.postgres). ``FILE`` is JSON (mode 0600, the
server's user's): ``vault_addr``, ``token`` (a token allowed datakey, hmac and verify on the
key, nothing else), ``mount``, ``key``, ``archive`` (the folder). Nothing it prints holds the
token or a key. The restore side (:func:`open_segment`) is the library's: PITR and the region
drill decrypt what they replay (runbooks_lib.procedures.dr.pitr).
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Iterator

try:
    from .envelope import Encryptor, decrypt_stream
except ImportError:  # run as a script beside envelope.py: the database host's copy
    from envelope import Encryptor, decrypt_stream  # type: ignore[no-redef]

__all__ = ["SUFFIX", "MAGIC", "WalArchiveError", "ArchiverConfig", "push", "read_header", "open_segment",
           "archived_name", "is_archived_file", "main"]

MAGIC = b"VEZAWAL1"
SUFFIX = ".enc"
_TIMEOUT_S = 10


class WalArchiveError(RuntimeError):
    """The segment could not be archived (the archiver keeps it and tries again)."""


@dataclass(frozen=True)
class ArchiverConfig:
    vault_addr: str
    token: str = field(repr=False)
    mount: str
    key: str
    archive: Path

    @classmethod
    def load(cls, path: Path) -> "ArchiverConfig":
        try:
            data = json.loads(Path(path).read_text())
            return cls(str(data["vault_addr"]).rstrip("/"), str(data["token"]), str(data["mount"]),
                       str(data["key"]), Path(data["archive"]))
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise WalArchiveError(f"archiver configuration {path} unreadable ({type(e).__name__})") from None


def archived_name(name: str) -> str:
    return name + SUFFIX


def is_archived_file(filename: str) -> bool:
    """A sealed file of the archive (not a temporary one being written)."""
    return filename.endswith(SUFFIX) and not filename.startswith(".")


def _vault(config: ArchiverConfig, operation: str, body: dict[str, object]) -> dict[str, object]:
    """POST to ``<mount>/<operation>/<key>``; its ``data``. Errors name the call, never the token."""
    import urllib.error
    import urllib.request

    url = f"{config.vault_addr}/v1/{config.mount}/{operation}/{config.key}"
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"X-Vault-Token": config.token, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=_TIMEOUT_S) as reply:
            return dict(json.loads(reply.read())["data"])
    except urllib.error.HTTPError as e:
        raise WalArchiveError(f"Vault {config.mount}/{operation}/{config.key}: HTTP {e.code}") from None
    except (OSError, ValueError, KeyError) as e:
        raise WalArchiveError(f"Vault at {config.vault_addr} unreachable for {operation} ({type(e).__name__})") from None


def _digest_b64(data: bytes) -> str:
    return base64.b64encode(hashlib.sha256(data).digest()).decode()


def _seal(data: bytes, name: str, config: ArchiverConfig, out: BinaryIO) -> None:
    made = _vault(config, "datakey/plaintext", {"bits": 256})
    key = base64.b64decode(str(made["plaintext"]))
    mac = str(_vault(config, "hmac", {"input": _digest_b64(data)})["hmac"])
    out.write(b" ".join((MAGIC, str(made["ciphertext"]).encode(), mac.encode())) + b"\n")
    encryptor = Encryptor(key, write=out.write, context=name.encode())
    encryptor.update(data)
    encryptor.close()
    del key


def read_header(source: BinaryIO) -> tuple[str, str]:
    """(wrapped data key, HMAC of the plaintext's sha256) from an archived file's first line."""
    line = source.readline(512)
    parts = line.rstrip(b"\n").split(b" ")
    if len(parts) != 3 or parts[0] != MAGIC or not line.endswith(b"\n"):
        raise WalArchiveError("not a sealed WAL file (no VEZAWAL1 header)")
    return parts[1].decode(), parts[2].decode()


def _same_plaintext(existing: Path, data: bytes, config: ArchiverConfig) -> bool:
    with existing.open("rb") as source:
        _, mac = read_header(source)
    return bool(_vault(config, "verify", {"input": _digest_b64(data), "hmac": mac}).get("valid"))


def push(segment: Path, name: str, config: ArchiverConfig) -> str:
    """Seal ``segment`` into the archive as ``name``: 'archived', 'already archived', or WalArchiveError."""
    if "/" in name or name.startswith(".") or not name:
        raise WalArchiveError(f"{name!r} is not a WAL file name")
    data = segment.read_bytes()
    final = config.archive / archived_name(name)
    if not final.exists():
        tmp = config.archive / f".{name}.{os.getpid()}.tmp"
        try:
            with tmp.open("wb") as out:
                _seal(data, name, config, out)
                out.flush()
                os.fsync(out.fileno())  # the archiver forgets the segment once we say it is kept
            os.link(tmp, final)  # refuses an existing name: a concurrent push never overwrites
            return "archived"
        except FileExistsError:
            pass  # another push got there first: compare with what it kept
        finally:
            tmp.unlink(missing_ok=True)
    if _same_plaintext(final, data, config):
        return "already archived"
    raise WalArchiveError(f"{final.name} already holds other bytes: never overwritten")


def open_segment(path: Path, key: bytes) -> Iterator[bytes]:
    """The plaintext of an archived file, authenticated, with its own name as the context."""
    name = path.name.removesuffix(SUFFIX)
    with path.open("rb") as source:
        read_header(source)
        yield from decrypt_stream(source, key, context=name.encode())


def main(argv: list[str] | None = None) -> int:
    """``push PATH NAME --config FILE``: exit 0 once the file is sealed in the archive."""
    import argparse

    parser = argparse.ArgumentParser(prog="walcrypt", description="PostgreSQL archive_command: seal a WAL file")
    parser.add_argument("action", choices=["push"])
    parser.add_argument("path", type=Path)
    parser.add_argument("name")
    parser.add_argument("--config", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        said = push(args.path, args.name, ArchiverConfig.load(args.config))
    except (WalArchiveError, OSError) as e:
        print(f"walcrypt: {args.name} not archived: {e}", file=sys.stderr)
        return 1
    if said != "archived":
        print(f"walcrypt: {args.name} {said}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
