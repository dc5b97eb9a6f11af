"""Envelope encryption of backups: round trip, and every kind of damage named."""
from __future__ import annotations

import io
import os

import pytest

from runbooks_lib.procedures.dr.envelope import MAGIC, EnvelopeError, decrypt_stream, encrypt_stream

KEY = bytes(range(32))
SEGMENT = 64


def sealed(plain: bytes, key: bytes = KEY) -> bytes:
    out = io.BytesIO()
    encrypt_stream(io.BytesIO(plain), out, key, segment_size=SEGMENT)
    return out.getvalue()


def opened(data: bytes, key: bytes = KEY) -> bytes:
    return b"".join(decrypt_stream(io.BytesIO(data), key))


@pytest.mark.parametrize("length", [0, 1, SEGMENT - 1, SEGMENT, SEGMENT + 1, 5 * SEGMENT, 5 * SEGMENT + 7])
def test_round_trip(length: int) -> None:
    plain = os.urandom(length)
    data = sealed(plain)
    assert opened(data) == plain
    assert len(plain) < 16 or plain not in data


def test_output_is_not_a_dump_and_reports_its_size_and_hash() -> None:
    import hashlib

    plain = b"PGDMP" + os.urandom(300)
    out = io.BytesIO()
    enc = encrypt_stream(io.BytesIO(plain), out, KEY, segment_size=SEGMENT)
    data = out.getvalue()
    assert data.startswith(MAGIC) and b"PGDMP" not in data
    assert enc.size == len(data) and enc.sha256.hexdigest() == hashlib.sha256(data).hexdigest()
    assert enc.plain_size == len(plain)


def test_two_encryptions_differ() -> None:
    assert sealed(b"same") != sealed(b"same")


def test_wrong_key_fails() -> None:
    with pytest.raises(EnvelopeError, match="segment 0"):
        opened(sealed(b"x" * 100), key=bytes(32))


@pytest.mark.parametrize("cut", [1, 16, SEGMENT + 16, 2 * (SEGMENT + 16)])
def test_truncation_is_detected(cut: int) -> None:
    data = sealed(os.urandom(4 * SEGMENT + 10))
    with pytest.raises(EnvelopeError, match="truncated"):
        opened(data[:-cut])


def test_cut_at_a_segment_boundary_is_detected() -> None:
    data = sealed(os.urandom(4 * SEGMENT))
    header = len(MAGIC) + 7 + 4
    with pytest.raises(EnvelopeError, match="truncated"):
        opened(data[: header + 2 * (SEGMENT + 16)])


def test_flipped_bit_is_detected_and_located() -> None:
    data = bytearray(sealed(os.urandom(4 * SEGMENT)))
    header = len(MAGIC) + 7 + 4
    data[header + (SEGMENT + 16) + 3] ^= 0x01
    with pytest.raises(EnvelopeError, match="altered: segment 1"):
        opened(bytes(data))


def test_swapped_segments_are_detected() -> None:
    data = sealed(os.urandom(3 * SEGMENT + 5))
    header, size = len(MAGIC) + 7 + 4, SEGMENT + 16
    swapped = data[:header] + data[header + size:header + 2 * size] + data[header:header + size] + data[header + 2 * size:]
    with pytest.raises(EnvelopeError):
        opened(swapped)


def test_not_an_envelope() -> None:
    with pytest.raises(EnvelopeError, match="not an encrypted backup"):
        opened(b"PGDMP" + b"\0" * 100)


def test_the_data_key_never_shows_in_a_repr() -> None:
    enc = encrypt_stream(io.BytesIO(b"x"), io.BytesIO(), KEY, segment_size=SEGMENT)
    assert KEY.hex() not in repr(enc) and repr(KEY) not in repr(enc)


def test_a_context_binds_the_stream_to_it() -> None:
    """A WAL segment is sealed with its name as context: renamed, it no longer opens."""
    from runbooks_lib.procedures.dr.envelope import Encryptor

    out = io.BytesIO()
    enc = Encryptor(KEY, SEGMENT, out.write, context=b"000000010000000000000007")
    enc.update(b"a row of segment seven" * 10)
    enc.close()
    data = out.getvalue()
    assert b"".join(decrypt_stream(io.BytesIO(data), KEY, context=b"000000010000000000000007")).startswith(b"a row")
    with pytest.raises(EnvelopeError, match="segment 0"):
        b"".join(decrypt_stream(io.BytesIO(data), KEY, context=b"000000010000000000000009"))
    with pytest.raises(EnvelopeError):
        opened(data)  # no context: neither
