"""Backups stored by URL on real remote filesystems: FTP (pyftpdlib, always) and S3 (moto's server).

The store is fsspec-generic; production uses ``s3://veza-backups/postgres/`` through s3fs (the
``archive`` extra). The S3 test runs against moto's server mode from a venv of its own
(``make test`` builds ``.venv-moto``; moto beside s3fs in one venv makes pip backtrack for
minutes): without that venv, or without s3fs, it is skipped and says why.
"""
from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from runbooks_lib.procedures.dr.envelope import Encryptor, decrypt_stream
from runbooks_lib.procedures.dr.restore import fetch_verified
from runbooks_lib.procedures.dr.store import DUMP_SUFFIX, KEY_SUFFIX, MANIFEST_SUFFIX, BackupStore, Manifest
from runbooks_lib.errors import CheckFailed

PROJECT = Path(__file__).resolve().parent.parent
MOTO = Path(os.environ.get("RUNBOOKS_MOTO_SERVER") or PROJECT / ".venv-moto" / "bin" / "moto_server")
KEY = bytes(range(32))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve(argv: list[str], port: int) -> subprocess.Popen[bytes]:
    server = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return server
        if time.monotonic() > deadline or server.poll() is not None:
            server.kill()
            pytest.fail(f"{argv[0]} did not start")
        time.sleep(0.1)


@pytest.fixture
def ftp_store(tmp_path: Path) -> Iterator[BackupStore]:
    served = tmp_path / "ftp-root"
    served.mkdir()
    port = _free_port()
    server = _serve([sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-w", "-d", str(served)], port)
    try:
        yield BackupStore(f"ftp://127.0.0.1:{port}/veza-backups/postgres")
    finally:
        server.terminate()
        server.wait(timeout=10)


@pytest.fixture
def s3_store() -> Iterator[BackupStore]:
    pytest.importorskip("s3fs", reason="s3fs is in the archive extra: pip install -e '.[archive]'")
    if not os.access(MOTO, os.X_OK):
        pytest.skip(f"no moto server at {MOTO}: `make moto` (part of `make test`) builds it in a venv of its own")
    port = _free_port()
    server = _serve([str(MOTO), "-H", "127.0.0.1", "-p", str(port)], port)
    options = {"endpoint_url": f"http://127.0.0.1:{port}", "key": "testing", "secret": "testing",
               "client_kwargs": {"region_name": "eu-west-1"}}
    try:
        store = BackupStore("s3://veza-backups/postgres/", options)
        store.fs.mkdir("veza-backups")
        yield store
    finally:
        server.terminate()
        server.wait(timeout=10)


def _store_a_backup(store: BackupStore, name: str, plain: bytes) -> Manifest:
    with store.open_write(name, DUMP_SUFFIX) as out:
        enc = Encryptor(KEY, segment_size=4096, write=out.write)
        enc.update(plain)
        enc.close()
    store.write_text(name, KEY_SUFFIX, "vault:v1:wrapped")
    now = datetime.now(timezone.utc).isoformat()
    manifest = Manifest(name=name, database="veza_db", taken_at=now, finished_at=now, source_lsn="0/1",
                        source_time=now, size=enc.size, plain_size=enc.plain_size, sha256=enc.sha256.hexdigest(),
                        row_counts={"users": 200}, marker=name, transit={"mount": "transit", "key": "veza"},
                        tool_versions={}, duration_s=0.1)
    store.write_text(name, MANIFEST_SUFFIX, manifest.to_json())
    return manifest


def _round_trip(store: BackupStore, tmp_path: Path) -> None:
    plain = os.urandom(20_000)
    manifest = _store_a_backup(store, "veza_db-20261201T030000Z-abc123", plain)
    assert [m.name for m in store.list()] == [manifest.name]
    assert store.manifest("latest") == manifest
    local = fetch_verified(store, manifest, tmp_path)
    with local.open("rb") as source:
        assert b"".join(decrypt_stream(source, KEY)) == plain
    # Damage in storage is named with the remote path.
    with store.open_write(manifest.name, DUMP_SUFFIX) as out:
        out.write(local.read_bytes()[:-10])
    with pytest.raises(CheckFailed, match=rf"{manifest.name}\.dump\.enc.*truncated"):
        fetch_verified(store, manifest, tmp_path)
    assert len(store.delete(manifest.name)) == 3 and store.list() == []


def test_backups_round_trip_over_ftp(ftp_store: BackupStore, tmp_path: Path) -> None:
    _round_trip(ftp_store, tmp_path)


@pytest.mark.slow
def test_backups_round_trip_over_s3(s3_store: BackupStore, tmp_path: Path) -> None:
    _round_trip(s3_store, tmp_path)
    assert s3_store.url.startswith("s3://")
