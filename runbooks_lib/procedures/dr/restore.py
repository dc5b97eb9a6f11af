"""Restore a backup into a scratch database and prove it: the only proof a backup is good.

Check the manifest is authentic (Vault's HMAC with the profile's transit key: an edited or
renamed backup is refused before anything is created), fetch the encrypted file, check its
sha256 and its wrapped key's against the manifest, unwrap the data key with Vault, decrypt segment by segment straight into ``pg_restore --exit-on-error`` (the clear dump
never reaches a disk), then check: row counts per table equal those of the dump's snapshot,
the marker row written just before the backup is there, and ``pg_amcheck`` finds no corrupt
index or heap. The scratch database is dropped afterwards, whatever happened.
"""
from __future__ import annotations

import hashlib
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from ...errors import CheckFailed
from ...records.secret import SecretValue
from .backups import MARKER_TABLE, table_row_counts
from .envelope import EnvelopeError, decrypt_stream
from ...platform.database import sql_errors
from .postgres import libpq_env, run_tool, tool, with_database
from .store import DUMP_SUFFIX, KEY_SUFFIX, BackupStore, Manifest, VaultSeal, unauthentic

if TYPE_CHECKING:
    from ...config.profiles import BackupSettings
    from ...platform.vault import Vault

__all__ = ["Check", "RestoreReport", "authenticate", "fetch_verified", "restore_and_verify", "restore_into"]


@dataclass(frozen=True)
class Check:
    name: str
    passed: bool
    detail: str


@dataclass
class RestoreReport:
    backup: str
    scratch: str
    checks: list[Check] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # fetch, restore, validation (s)
    row_counts: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.checks) and all(c.passed for c in self.checks)

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def table(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"check": c.name, "passed": c.passed, "detail": c.detail} for c in self.checks]).set_index("check")


def authenticate(store: BackupStore, manifest: Manifest, vault: "Vault", settings: "BackupSettings") -> str:
    """CheckFailed naming the backup unless its manifest is authentic (whatever store it came from)
    and its wrapped key file is the one the manifest names; returns the wrapped key."""
    why = unauthentic(VaultSeal(vault, settings), [(manifest.name, manifest)]).get(manifest.name)
    if why:
        raise CheckFailed(f"backup {manifest.name}: {why}; not restored")
    wrapped = store.read_text(manifest.name, KEY_SUFFIX).strip()
    if hashlib.sha256(wrapped.encode()).hexdigest() != manifest.key_sha256:
        raise CheckFailed(f"backup {manifest.name}: its key file {store.path(manifest.name, KEY_SUFFIX)} is not the "
                          "one its manifest names (swapped or altered); not restored")
    return wrapped


def fetch_verified(store: BackupStore, manifest: Manifest, into: Path) -> Path:
    """Copy the encrypted file to ``into`` and check its size and sha256 against the manifest.

    A mismatch is CheckFailed naming the file: it was corrupted or cut short in storage.
    """
    remote = store.path(manifest.name, DUMP_SUFFIX)
    local = into / (manifest.name + DUMP_SUFFIX)
    digest, size = hashlib.sha256(), 0
    with store.open_read(manifest.name, DUMP_SUFFIX) as source, local.open("wb") as out:
        while chunk := source.read(1 << 20):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if size != manifest.size:
        raise CheckFailed(f"backup file {remote} is {size} bytes, the manifest says {manifest.size}: "
                          f"{'truncated' if size < manifest.size else 'altered'}; do not restore it")
    if digest.hexdigest() != manifest.sha256:
        raise CheckFailed(f"backup file {remote} fails its sha256 check (stored {digest.hexdigest()[:16]}..., "
                          f"manifest {manifest.sha256[:16]}...): corrupted; do not restore it")
    return local


def restore_into(encrypted: Path, key: bytes, dsn: str | SecretValue, *, label: str,
                 bin_dir: str | None = None) -> None:
    """Decrypt ``encrypted`` into ``pg_restore --exit-on-error`` connected with ``dsn``."""
    pg_restore = tool("pg_restore", bin_dir)
    proc = subprocess.Popen([pg_restore, "--exit-on-error", "--no-owner", "--no-privileges", "-d",
                             _dbname(dsn)], stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=libpq_env(dsn))
    assert proc.stdin is not None and proc.stderr is not None
    try:
        with encrypted.open("rb") as source:
            for plain in decrypt_stream(source, key):
                proc.stdin.write(plain)
        proc.stdin.close()
    except EnvelopeError as e:
        proc.kill()
        proc.wait()
        raise CheckFailed(f"backup file {label}: {e}; restore abandoned") from None
    except BrokenPipeError:
        pass  # pg_restore stopped early: its exit status and stderr say why
    errors = proc.stderr.read().decode(errors="replace")
    if proc.wait() != 0:
        raise CheckFailed(f"pg_restore --exit-on-error failed on {label} (exit {proc.returncode}): "
                          f"{errors.strip()[-300:]}")


def _dbname(dsn: str | SecretValue) -> str:
    from psycopg.conninfo import conninfo_to_dict

    return str(conninfo_to_dict(dsn.reveal() if isinstance(dsn, SecretValue) else dsn).get("dbname", "postgres"))


def _check_counts(restored: dict[str, int], expected: dict[str, int]) -> Check:
    differ = {t: (restored.get(t), n) for t, n in expected.items() if restored.get(t) != n}
    extra = sorted(set(restored) - set(expected))
    if differ or extra:
        detail = "; ".join(f"{t}: {got} restored, {want} at backup" for t, (got, want) in differ.items())
        return Check("row counts per table", False, detail + (f"; unexpected tables {extra}" if extra else ""))
    return Check("row counts per table", True, f"{len(expected)} tables, {sum(expected.values())} rows, all equal")


@sql_errors("check the restored database")
def verify_restored(scratch_dsn: str, manifest: Manifest, bin_dir: str | None) -> tuple[list[Check], dict[str, int]]:
    from ...platform.database import connect

    with connect(scratch_dsn, autocommit=True) as conn:
        counts = table_row_counts(conn)
        marker = conn.execute(f"SELECT count(*) FROM {MARKER_TABLE} WHERE name = %s", (manifest.marker,)).fetchone()[0]
    checks = [_check_counts(counts, manifest.row_counts),
              Check("marker row", marker == 1, f"{MARKER_TABLE} row {manifest.marker!r} "
                    + ("present" if marker == 1 else "missing"))]
    try:
        amcheck = tool("pg_amcheck", bin_dir)
    except CheckFailed:
        checks.append(Check("pg_amcheck", True, "not installed here: skipped"))
        return checks, counts
    try:
        run_tool([amcheck, "--install-missing", "--heapallindexed", "--no-strict-names", "-d", _dbname(scratch_dsn)],
                 scratch_dsn, timeout=1800)
        checks.append(Check("pg_amcheck", True, "heap and B-tree indexes consistent"))
    except CheckFailed as e:
        checks.append(Check("pg_amcheck", False, str(e)))
    return checks, counts


@sql_errors("restore into a scratch database")
def restore_and_verify(store: BackupStore, manifest: Manifest, vault: "Vault", settings: "BackupSettings",
                       admin_dsn: str | SecretValue, *, keep: bool = False,
                       extra_checks: Callable[[str], list[Check]] | None = None) -> RestoreReport:
    """Restore ``manifest``'s backup into a new scratch database on ``admin_dsn``'s server, check it,
    drop it. ``extra_checks(scratch_dsn)`` adds the caller's checks before the drop. Raises CheckFailed naming the file when it is corrupted, truncated or will not restore;
    failing data checks are in the report (``passed`` False), not raised."""
    from ...platform.database import connect

    scratch = f"veza_dr_scratch_{uuid.uuid4().hex[:8]}"
    report = RestoreReport(manifest.name, scratch)
    began = time.monotonic()
    wrapped = authenticate(store, manifest, vault, settings)  # before anything is fetched or created
    with tempfile.TemporaryDirectory(prefix="veza-restore-") as tmp:
        encrypted = fetch_verified(store, manifest, Path(tmp))
        report.timings["fetch_s"] = round(time.monotonic() - began, 3)
        key = vault.unwrap_data_key(wrapped, manifest.transit["key"], manifest.transit["mount"])
        with connect(with_database(admin_dsn, "postgres"), autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{scratch}"')
        try:
            mark = time.monotonic()
            scratch_dsn = with_database(admin_dsn, scratch)
            restore_into(encrypted, key, scratch_dsn, label=store.path(manifest.name, DUMP_SUFFIX),
                         bin_dir=settings.pg_bin_dir)
            report.timings["restore_s"] = round(time.monotonic() - mark, 3)
            mark = time.monotonic()
            report.checks, report.row_counts = verify_restored(scratch_dsn, manifest, settings.pg_bin_dir)
            if extra_checks is not None:
                report.checks += extra_checks(scratch_dsn)
            report.timings["validation_s"] = round(time.monotonic() - mark, 3)
        finally:
            del key
            if not keep:
                with connect(with_database(admin_dsn, "postgres"), autocommit=True) as admin:
                    admin.execute(f'DROP DATABASE IF EXISTS "{scratch}" WITH (FORCE)')
    report.timings["total_s"] = round(time.monotonic() - began, 3)
    return report
