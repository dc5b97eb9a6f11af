"""A full logical backup of veza_db: ``pg_dump -Fc``, encrypted on the fly, stored by URL.

The dump never touches a disk in clear: pg_dump's output is read from a pipe, sealed in
segments (:mod:`.envelope`) with a data key Vault's transit engine just made, and written
straight to the store. The data key is asked for first, so a Vault that cannot be reached
stops the backup before anything is written. Row counts per table are taken inside the very
snapshot pg_dump dumps (``pg_export_snapshot`` + ``--snapshot``), so a restore can be checked
against them exactly while the platform keeps writing. The manifest is authenticated by Vault's
HMAC with the same transit key (.store): editing it, or renaming the backup, is found before a
restore.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import replace
from datetime import datetime
from typing import TYPE_CHECKING, Any

from ...config.clock import utcnow
from ...errors import CheckFailed, RunbookError
from ...records.secret import SecretValue
from .envelope import Encryptor
from .postgres import libpq_env, tool, tool_version
from .store import DUMP_SUFFIX, KEY_SUFFIX, MANIFEST_SUFFIX, BackupStore, Manifest, VaultSeal

if TYPE_CHECKING:
    from ...config.profiles import BackupSettings
    from ...platform.vault import Vault

__all__ = ["take_backup", "table_row_counts", "backup_name", "MARKER_TABLE"]

MARKER_TABLE = "dr_backup_marker"
_READ_SIZE = 1 << 20


def backup_name(database: str, moment: datetime) -> str:
    return f"{database}-{moment.strftime('%Y%m%dT%H%M%SZ')}-{uuid.uuid4().hex[:6]}"


def table_row_counts(conn: Any) -> dict[str, int]:
    """Rows per user table (schema-qualified when not public), in the connection's snapshot."""
    from psycopg import sql

    tables = conn.execute(
        "SELECT schemaname, tablename FROM pg_tables "
        "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') ORDER BY 1, 2"
    ).fetchall()
    counts = {}
    for schema, table in tables:
        query = sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(table))
        counts[table if schema == "public" else f"{schema}.{table}"] = int(conn.execute(query).fetchone()[0])
    return counts


def _write_marker(dsn: str | SecretValue, name: str) -> None:
    from ...platform.database import connect, sql_errors

    with sql_errors(f"backup {name}: write its marker row"), connect(dsn, autocommit=True) as conn:
        conn.execute(f"CREATE TABLE IF NOT EXISTS {MARKER_TABLE} "
                     "(name text PRIMARY KEY, written_at timestamptz NOT NULL DEFAULT clock_timestamp())")
        conn.execute(f"INSERT INTO {MARKER_TABLE} (name) VALUES (%s)", (name,))


def take_backup(dsn: str | SecretValue, vault: "Vault", settings: "BackupSettings", *,
                database: str = "veza_db", store: BackupStore | None = None, progress: Any = None) -> Manifest:
    """Dump, encrypt and store ``database``; returns the manifest (written last, beside it).

    On any failure the objects already written are removed and the error says what failed;
    nothing in clear is ever written.
    """
    import psycopg

    from ...platform.database import connect, translate

    store = store or BackupStore(settings.url, settings.storage_options)
    pg_dump = tool("pg_dump", settings.pg_bin_dir)
    began = time.monotonic()
    # Vault first: without a key there is no backup, and nothing must be written.
    key, wrapped = vault.data_key(settings.transit_key, settings.transit_mount)
    name = backup_name(database, utcnow())
    _write_marker(dsn, name)
    try:
        with connect(dsn) as snap:
            # One snapshot for the row counts and pg_dump: the manifest says what the dump holds.
            snap.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
            snapshot, lsn, source_time, server = snap.execute(
                "SELECT pg_export_snapshot(), pg_current_wal_lsn()::text, now(), current_setting('server_version')"
            ).fetchone()
            counts = table_row_counts(snap)
            taken_at = utcnow()
            with store.open_write(name, DUMP_SUFFIX) as out:
                enc = _dump_encrypted(pg_dump, dsn, database, snapshot, Encryptor(key, write=out.write), progress)
            snap.execute("COMMIT")
        store.write_text(name, KEY_SUFFIX, wrapped)
        manifest = Manifest(
            name=name, database=database, taken_at=taken_at.isoformat(), finished_at=utcnow().isoformat(),
            source_lsn=str(lsn), source_time=source_time.isoformat(), size=enc.size, plain_size=enc.plain_size,
            sha256=enc.sha256.hexdigest(), row_counts=counts, marker=name,
            transit={"mount": settings.transit_mount, "key": settings.transit_key},
            tool_versions=_versions(pg_dump, str(server)), duration_s=round(time.monotonic() - began, 3),
            files={"dump": name + DUMP_SUFFIX, "key": name + KEY_SUFFIX},
            key_sha256=hashlib.sha256(wrapped.encode()).hexdigest(),
        )
        manifest = replace(manifest, authentication=VaultSeal(vault, settings).sign(manifest.signed_bytes()))
        store.write_text(name, MANIFEST_SUFFIX, manifest.to_json())
        return manifest
    except BaseException as e:
        store.delete(name)
        if isinstance(e, psycopg.Error):
            raise translate(e, f"backup {name} failed, nothing kept") from e
        if isinstance(e, RunbookError):
            raise type(e)(f"backup {name} failed, nothing kept: {e}") from e
        raise
    finally:
        del key


def _dump_encrypted(pg_dump: str, dsn: str | SecretValue, database: str, snapshot: str, enc: Encryptor,
                    progress: Any) -> Encryptor:
    """``pg_dump -Fc`` of ``database`` at the exported ``snapshot``, streamed through ``enc`` (the
    clear dump never touches a disk); CheckFailed with pg_dump's last words if it fails."""
    import subprocess

    proc = subprocess.Popen([pg_dump, "-Fc", f"--snapshot={snapshot}", "--no-sync"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**libpq_env(dsn), "PGDATABASE": database})
    assert proc.stdout is not None and proc.stderr is not None
    while chunk := proc.stdout.read(_READ_SIZE):
        enc.update(chunk)
        if progress is not None:
            progress.update(len(chunk))
    errors = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise CheckFailed(f"pg_dump failed (exit {proc.returncode}): {errors.strip()[-300:]}")
    enc.close()
    return enc


def _versions(pg_dump: str, server: str) -> dict[str, str]:
    import cryptography

    from ...config.version import __version__

    return {"pg_dump": tool_version(pg_dump), "server": server, "cryptography": cryptography.__version__,
            "veza-runbooks": __version__}
