"""Finding 8b: archived WAL is sealed like the backups; the archive holds no row in clear.

The sandbox's archive_command copied each WAL segment in clear to the off-site folder: whoever
read the archive read every row written. It now runs the project's archiver (walcrypt.py, as
the server's user), which seals each file with a data key from Vault's transit engine, the
wrapped key beside it in the file's header and the file's name bound in. PITR and the region
drill unseal what they replay. A segment offered again with the same plaintext (a promoted
standby does that) still counts as archived; other bytes under its name are refused.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
import uuid
from pathlib import Path
from typing import Any, Iterator

import psycopg
import pytest

from .conftest import Backing, start_backing, stop_backing

pytestmark = [pytest.mark.sandbox, pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def archiving() -> Iterator[Backing]:
    started = start_backing(archive_wal=True)
    yield started
    stop_backing(started)


def _archived_through(backing: Backing, conn: psycopg.Connection, timeout_s: float = 30) -> str:
    """Close the current segment and wait until the archiver has kept it."""
    conn.execute("SELECT pg_logical_emit_message(false, 'test', 'switch')")
    segment = conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0]
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        last, failed = conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
        if last and last[8:] >= segment[8:]:
            return str(segment)
        time.sleep(0.1)
    raise AssertionError(f"{segment} not archived (last failed {failed}); see {backing.postgres.log_path('primary')}")


def _grep(text: str, folder: Path) -> list[str]:
    found = subprocess.run(["grep", "-rlaF", text, str(folder)], capture_output=True, text=True)
    return found.stdout.split()


def test_a_rows_text_is_in_the_wal_but_nowhere_in_the_archive(archiving: Backing) -> None:
    marker = f"confidential-{uuid.uuid4().hex}"
    with psycopg.connect(archiving.postgres.primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_secret (note text)")
        conn.execute("INSERT INTO wal_secret VALUES (%s)", (marker,))
        segment = _archived_through(archiving, conn)
    archive = Path(archiving.postgres.wal_archive)
    assert _grep(marker, archiving.postgres.data_dir("primary") / "pg_wal"), "the row is in the server's WAL"
    assert list(archive.iterdir()), "something was archived"
    assert _grep(marker, archive) == []  # and nowhere in what left the host
    assert _grep("wal_secret", archive) == []
    files = sorted(p.name for p in archive.iterdir())
    assert f"{segment}.enc" in files and all(name.endswith(".enc") for name in files), files


def test_the_archived_segment_opens_with_the_vault_key_and_holds_the_row(archiving: Backing) -> None:
    from runbooks_lib.procedures.dr.walcrypt import open_segment, read_header

    marker = f"proof-{uuid.uuid4().hex}"
    with psycopg.connect(archiving.postgres.primary_dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS wal_secret (note text)")
        conn.execute("INSERT INTO wal_secret VALUES (%s)", (marker,))
        segment = _archived_through(archiving, conn)
    sealed = Path(archiving.postgres.wal_archive) / f"{segment}.enc"
    with sealed.open("rb") as source:
        wrapped, mac = read_header(source)
    assert wrapped.startswith("vault:v1:") and mac.startswith("vault:v1:")
    key = archiving.vault.unwrap_data_key(wrapped, "veza")
    plain = b"".join(open_segment(sealed, key))
    assert len(plain) == 16 * 1024 * 1024 and marker.encode() in plain
    renamed = sealed.with_name("000000010000000000000099.enc")  # another segment's name
    shutil.copyfile(sealed, renamed)
    try:
        from runbooks_lib.procedures.dr.envelope import EnvelopeError

        with pytest.raises(EnvelopeError, match="fails authentication"):
            b"".join(open_segment(renamed, key))
    finally:
        renamed.unlink()


def test_a_segment_offered_again_counts_as_archived_other_bytes_are_refused(archiving: Backing, tmp_path: Path) -> None:
    """As a promoted standby offers its old segments: the same plaintext is archived already (or the
    archiver would stall for good); other bytes under that name are refused, never overwritten."""
    conf = (archiving.postgres.data_dir("primary") / "postgresql.conf").read_text()
    command = re.search(r"^archive_command = '(.*)'$", conf, re.M).group(1).replace("''", "'")
    assert " cp " not in command and "walcrypt.py push %p %f" in command
    archive = Path(archiving.postgres.wal_archive)
    name = "0000000100000000000000F0"
    pg_wal = Path(archiving.state) / "offered"  # a folder user postgres reads (the state dir is 0755)
    pg_wal.mkdir(exist_ok=True)
    segment = pg_wal / name
    segment.write_bytes(b"segment F0 " * 1000)
    segment.chmod(0o644)

    def offer() -> subprocess.CompletedProcess[str]:
        argv = ["sh", "-c", command.replace("%p", str(segment)).replace("%f", name)]
        if os.geteuid() == 0:
            argv = ["runuser", "-u", "postgres", "--", *argv]
        return subprocess.run(argv, capture_output=True, text=True, timeout=60)

    assert offer().returncode == 0
    first = (archive / f"{name}.enc").read_bytes()
    again = offer()
    assert again.returncode == 0 and "already archived" in again.stderr
    segment.write_bytes(b"other bytes " * 1000)
    refused = offer()
    assert refused.returncode != 0 and "other bytes" in refused.stderr
    assert (archive / f"{name}.enc").read_bytes() == first, "never overwritten"
    assert "vault:v1:" not in refused.stderr + again.stderr and "hvs." not in refused.stderr  # no key, no token


def test_point_in_time_recovery_unseals_what_it_replays(archiving: Backing) -> None:
    from datetime import datetime, timezone

    from runbooks_lib.procedures.dr.pitr import recover_to_time, take_base_backup

    dsn = archiving.postgres.primary_dsn
    base = take_base_backup(dsn, archiving.vault, archiving.settings)
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE TABLE IF NOT EXISTS pitr_rows (id int PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())")
        conn.execute("INSERT INTO pitr_rows (id) SELECT generate_series(1, 20)")
        time.sleep(0.3)
        target = datetime.now(timezone.utc)
        time.sleep(0.3)
        conn.execute("INSERT INTO pitr_rows (id) SELECT generate_series(21, 30)")
        _archived_through(archiving, conn)
    instance = recover_to_time(base, target, archiving.vault, archiving.settings)
    try:
        with psycopg.connect(instance.dsn, autocommit=True) as conn:
            ids = [r[0] for r in conn.execute("SELECT id FROM pitr_rows ORDER BY id")]
        assert ids == list(range(1, 21))
        assert instance.wal_files >= 1 and not (instance.data_dir.parent / "wal").exists()  # clear WAL gone
    finally:
        instance.stop()
