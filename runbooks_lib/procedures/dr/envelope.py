"""Envelope encryption of a backup stream: AES-256-GCM in authenticated segments.

A data key (256 bits) comes from Vault's transit engine; only its wrapped form (``vault:v1:...``)
is stored beside the backup, so reading a backup needs both the file and a Vault that will
unwrap the key. One GCM message for a whole 500 MB dump would have to sit in memory, so the
stream is cut into segments (1 MiB), each sealed on its own with a nonce made of a random
prefix, the segment number and a last-segment flag (the STREAM construction, as in Tink and
age): reordered, dropped or appended segments fail authentication, and a file cut at a
segment boundary fails because its last segment does not carry the flag.

File layout: ``MAGIC`` (8 bytes) | nonce prefix (7 bytes) | segment size (4 bytes, big-endian)
| segments, each ``ciphertext + 16-byte tag``. The header, followed by the caller's ``context``
(e.g. a WAL segment's name: a file renamed to stand for another fails), is every segment's
associated data.

This module needs nothing but the standard library and ``cryptography``: the WAL archiver runs
a copy of it on the database host (:mod:`.walcrypt`).
"""
from __future__ import annotations

import hashlib
import os
import struct
from dataclasses import dataclass, field
from typing import BinaryIO, Callable, Iterator

__all__ = ["MAGIC", "SEGMENT_SIZE", "KEY_BYTES", "EnvelopeError", "Encryptor", "encrypt_stream", "decrypt_stream"]

MAGIC = b"VEZABK01"
SEGMENT_SIZE = 1 << 20
KEY_BYTES = 32
_TAG = 16
_PREFIX = 7
_HEADER = struct.Struct(f">8s{_PREFIX}sI")


class EnvelopeError(ValueError):
    """The encrypted stream is not one of ours, was altered, or was cut short."""


def _nonce(prefix: bytes, index: int, last: bool) -> bytes:
    return prefix + struct.pack(">IB", index, 1 if last else 0)


def _aead(key: bytes):  # type: ignore[no-untyped-def]
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    if len(key) != KEY_BYTES:
        raise EnvelopeError(f"a data key must be {KEY_BYTES} bytes, got {len(key)}")
    return AESGCM(key)


@dataclass
class Encryptor:
    """Encrypts a byte stream fed in pieces; ``sha256`` and ``size`` are those of the output.

    Holds back one segment so that the last one, known only at ``close()``, carries the flag.
    """

    key: bytes = field(repr=False)  # the plaintext data key: never in a repr, a log or a record
    segment_size: int = SEGMENT_SIZE
    write: Callable[[bytes], object] | None = field(default=None, repr=False)
    context: bytes = b""  # authenticated with every segment, not stored: the reader must know it
    sha256: "hashlib._Hash" = field(default_factory=hashlib.sha256)
    size: int = 0
    plain_size: int = 0

    def __post_init__(self) -> None:
        self._aead = _aead(self.key)
        self._prefix = os.urandom(_PREFIX)
        self._header = _HEADER.pack(MAGIC, self._prefix, self.segment_size)
        self._associated = self._header + self.context
        self._pending = bytearray()
        self._index = 0
        self._emit(self._header)

    def _emit(self, data: bytes) -> None:
        self.sha256.update(data)
        self.size += len(data)
        if self.write is not None:
            self.write(data)

    def _seal(self, chunk: bytes, last: bool) -> None:
        if self._index >= 2**32 - 1:
            raise EnvelopeError("stream too long for one envelope")
        self._emit(self._aead.encrypt(_nonce(self._prefix, self._index, last), chunk, self._associated))
        self._index += 1

    def update(self, data: bytes) -> None:
        self.plain_size += len(data)
        self._pending += data
        # Keep at least one full segment back: the last one is sealed by close().
        while len(self._pending) > self.segment_size:
            self._seal(bytes(self._pending[: self.segment_size]), last=False)
            del self._pending[: self.segment_size]

    def close(self) -> None:
        self._seal(bytes(self._pending), last=True)
        self._pending.clear()


def encrypt_stream(source: BinaryIO, sink: BinaryIO, key: bytes, segment_size: int = SEGMENT_SIZE) -> Encryptor:
    """Encrypt ``source`` into ``sink``; returns the encryptor (size and sha256 of what was written)."""
    enc = Encryptor(key, segment_size, sink.write)
    while chunk := source.read(segment_size):
        enc.update(chunk)
    enc.close()
    return enc


def decrypt_stream(source: BinaryIO, key: bytes, context: bytes = b"") -> Iterator[bytes]:
    """Yield the plaintext of ``source`` segment by segment, each authenticated before it is yielded
    (with the ``context`` it was sealed with).

    Raises EnvelopeError naming what is wrong: not an envelope, a segment altered (or another
    context), or the stream cut short (no last segment).
    """
    from cryptography.exceptions import InvalidTag

    aead = _aead(key)
    header = source.read(_HEADER.size)
    if len(header) < _HEADER.size:
        raise EnvelopeError("not an encrypted backup: shorter than the header")
    magic, prefix, segment_size = _HEADER.unpack(header)
    if magic != MAGIC:
        raise EnvelopeError("not an encrypted backup: unknown header")
    sealed = segment_size + _TAG
    index = 0
    current = source.read(sealed)
    while True:
        following = source.read(sealed) if len(current) == sealed else b""
        last = not following
        if len(current) < _TAG:
            raise EnvelopeError(f"truncated: segment {index} is incomplete")
        try:
            yield aead.decrypt(_nonce(prefix, index, last), current, header + context)
        except InvalidTag:
            if last:
                raise EnvelopeError(f"truncated or altered: segment {index} fails authentication "
                                    "as the last segment") from None
            raise EnvelopeError(f"altered: segment {index} fails authentication") from None
        if last:
            return
        current, index = following, index + 1
