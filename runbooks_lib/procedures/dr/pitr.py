"""Point-in-time recovery: a base backup plus the archived WAL, replayed to a chosen time.

The base backup (``pg_basebackup -Ft -X fetch`` to stdout) is sealed like a dump
(:mod:`.envelope`) and stored beside the WAL archive, with a manifest Vault's HMAC vouches for
(its time, sha256 and wrapped key's sha256): the newest *authentic* one is the region drill's
starting point, and an edited or renamed one is refused naming it. A restore makes a scratch
instance: the tar is checked, decrypted and unpacked into a new data directory, the archived WAL
it needs (from its ``backup_label``'s start segment on, and the timelines' history files) is
unsealed (:mod:`.walcrypt`: its data keys unwrapped in one Vault call) into the instance's own
folder, ``recovery.signal`` and ``recovery_target_time`` are set, the server replays that WAL up
to the time and promotes, the clear WAL is removed, and the drill checks what the server holds.
The scratch instance is stopped and removed afterwards.

The WAL archive must be a folder this machine reads; for an s3:// archive, the restore needs the
archive's own fetch tool (wal-g, pgbackrest) instead.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import socket
import stat
import subprocess
import tarfile
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ...errors import CheckFailed, ParameterError, RunbookTimeout
from ...records.secret import SecretValue
from .envelope import Encryptor, EnvelopeError, decrypt_stream
from ...platform.database import sql_errors
from .postgres import libpq_env, last_lines, tool
from .store import VaultSeal, unauthentic
from .walcrypt import SUFFIX as WAL_SUFFIX, WalArchiveError, is_archived_file, open_segment, read_header

if TYPE_CHECKING:
    from ...config.profiles import BackupSettings
    from ...platform.vault import Vault

__all__ = ["BaseBackup", "take_base_backup", "latest_base_backup", "archived_up_to", "force_wal_switch",
           "RecoveredInstance", "recover_to_time", "scratch_folder"]

OS_USER = "postgres"  # the server refuses to run as root


_BASE_TAG = b"veza-base-backup-v1\n"


@dataclass(frozen=True)
class BaseBackup:
    path: Path  # the encrypted tar
    wrapped_key: str
    taken_at: datetime
    start_lsn: str
    size: int
    sha256: str = ""  # of the encrypted tar
    authentication: str = ""  # Vault's HMAC of signed_bytes() (its manifest, base-...json)

    @property
    def name(self) -> str:
        return self.path.name.removesuffix(".tar.enc")

    def signed_bytes(self) -> bytes:
        fields = {"name": self.name, "taken_at": self.taken_at.isoformat(), "start_lsn": self.start_lsn,
                  "size": self.size, "sha256": self.sha256,
                  "key_sha256": hashlib.sha256(self.wrapped_key.encode()).hexdigest()}
        return _BASE_TAG + json.dumps(fields, sort_keys=True, separators=(",", ":")).encode()

    def manifest_json(self) -> str:
        fields = json.loads(self.signed_bytes().removeprefix(_BASE_TAG))
        return json.dumps({**fields, "authentication": self.authentication}, indent=2, sort_keys=True)


def _base_folder(settings: "BackupSettings") -> Path:
    if not settings.wal_archive_url or "://" in settings.wal_archive_url.replace("file://", ""):
        raise ParameterError("point-in-time recovery needs backups.wal_archive_url to be a local folder "
                             f"(got {settings.wal_archive_url!r})")
    return Path(settings.wal_archive_url.removeprefix("file://")).parent / "base"


@sql_errors("take a base backup")
def take_base_backup(dsn: str | SecretValue, vault: "Vault", settings: "BackupSettings") -> BaseBackup:
    """pg_basebackup of the whole cluster, encrypted on the fly, beside the WAL archive."""
    from ...platform.database import connect

    key, wrapped = vault.data_key(settings.transit_key, settings.transit_mount)
    with connect(dsn, autocommit=True) as conn:
        lsn = conn.execute("SELECT pg_current_wal_lsn()::text").fetchone()[0]
    taken = datetime.now(timezone.utc)
    folder = _base_folder(settings)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"base-{taken:%Y%m%dT%H%M%S%fZ}.tar.enc"
    proc = subprocess.Popen([tool("pg_basebackup", settings.pg_bin_dir), "-D", "-", "-Ft", "-X", "fetch",
                             "-c", "fast", "--no-sync"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env=libpq_env(dsn))
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with path.open("wb") as out:
            enc = Encryptor(key, write=out.write)
            while chunk := proc.stdout.read(1 << 20):
                enc.update(chunk)
            enc.close()
        errors = proc.stderr.read().decode(errors="replace")
        if proc.wait() != 0:
            raise CheckFailed(f"pg_basebackup failed (exit {proc.returncode}): {last_lines(errors)}")
    except BaseException:
        proc.kill()
        path.unlink(missing_ok=True)
        raise
    path.with_suffix(".key").write_text(wrapped)
    base = BaseBackup(path, wrapped, taken, str(lsn), enc.size, enc.sha256.hexdigest())
    base = replace(base, authentication=VaultSeal(vault, settings).sign(base.signed_bytes()))
    _manifest_path(path).write_text(base.manifest_json())  # last: a base backup without it is incomplete
    return base


def _manifest_path(tar: Path) -> Path:
    return tar.with_name(tar.name.removesuffix(".tar.enc") + ".json")


@sql_errors("switch WAL")
def force_wal_switch(dsn: str | SecretValue) -> str:
    """Close the current WAL segment so it is archived now (not at archive_timeout)."""
    from ...platform.database import connect

    with connect(dsn, autocommit=True) as conn:
        conn.execute("SELECT pg_logical_emit_message(false, 'veza-dr', 'switch')")  # never an empty segment
        return str(conn.execute("SELECT pg_walfile_name(pg_switch_wal())").fetchone()[0])


@sql_errors("read the archiver's progress")
def archived_up_to(dsn: str | SecretValue, segment: str, timeout_s: float = 30) -> None:
    """Wait until ``segment`` (or a later one) is archived; raises naming the archiver's last failure."""
    from ...platform.database import connect

    deadline = time.monotonic() + timeout_s
    while True:
        with connect(dsn, autocommit=True) as conn:
            last, failed = conn.execute("SELECT last_archived_wal, last_failed_wal FROM pg_stat_archiver").fetchone()
        if last and last[8:] >= segment[8:]:  # timeline-independent order of segment numbers
            return
        if time.monotonic() > deadline:
            raise RunbookTimeout(f"WAL segment {segment} not archived after {timeout_s:.0f} s "
                                 f"(last archived {last}, last failed {failed})")
        time.sleep(0.1)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listen_port(settings: "BackupSettings") -> int:
    """The port a recovered server listens on: ``backups.restore_port`` when the profile sets it
    (the region's network reaches the server there, so no other port will do), else a free one."""
    port = settings.restore_port
    if port is None:
        return _free_port()
    with socket.socket() as s:
        # As the server binds it: a port left in TIME_WAIT by an earlier drill's server is free.
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as e:
            raise CheckFailed(f"backups.restore_port {port} is taken on 127.0.0.1 ({e.strerror}): the recovered "
                              "database server must listen there, where the region's network reaches it; stop "
                              "what holds the port, or set backups.restore_port to a free one") from None
    return port


def _as_server_user(argv: list[str]) -> list[str]:
    return ["runuser", "-u", OS_USER, "--", *argv] if os.geteuid() == 0 else argv


@dataclass
class RecoveredInstance:
    """A scratch server recovered to a time; ``dsn`` reaches it until ``stop()``."""

    data_dir: Path
    port: int
    bin_dir: str | None
    replay_s: float = 0.0
    wal_files: int = 0  # archived WAL files unsealed for the replay
    wal_bytes: int = 0
    unseal_s: float = 0.0  # their decryption (unwrap included)

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/veza_db"

    def stop(self) -> None:
        subprocess.run(_as_server_user([tool("pg_ctl", self.bin_dir), "stop", "-D", str(self.data_dir), "-m",
                                        "immediate", "-w"]), capture_output=True, timeout=60)
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def _unpack(base: BaseBackup, key: bytes, into: Path) -> str:
    """Check, decrypt and unpack the base backup; returns the WAL segment its recovery starts at."""
    sealed = base.path.read_bytes()
    if base.sha256 and hashlib.sha256(sealed).hexdigest() != base.sha256:
        raise CheckFailed(f"base backup {base.path} fails the sha256 its manifest vouches for: corrupted or "
                          "replaced; not restored")
    try:
        plain = io.BytesIO(b"".join(decrypt_stream(io.BytesIO(sealed), key)))
    except EnvelopeError as e:
        raise CheckFailed(f"base backup {base.path}: {e}; not restored") from None
    with tarfile.open(fileobj=plain, mode="r:") as tar:
        tar.extractall(into, filter="fully_trusted")
    label = (into / "backup_label").read_text() if (into / "backup_label").is_file() else ""
    found = re.search(r"^START WAL LOCATION: \S+ \(file ([0-9A-F]{24})\)", label, re.M)
    if found is None:
        raise CheckFailed(f"base backup {base.path} holds no backup_label naming its first WAL segment")
    return found.group(1)


def _needed(name: str, start: str) -> bool:
    """Whether recovery from ``start`` may ask for this archived file: every timeline's history, and
    the segments from the start's number on (timelines aside: the server picks its own)."""
    if re.fullmatch(r"[0-9A-F]{8}\.history", name):
        return True
    return bool(re.fullmatch(r"[0-9A-F]{24}", name)) and name[8:] >= start[8:]


def unseal_wal(archive: Path, into: Path, start: str, vault: "Vault", settings: "BackupSettings") -> tuple[int, int]:
    """The archived WAL a recovery from segment ``start`` needs, decrypted into ``into`` (the
    instance's own folder, user postgres's, removed with it): (files, bytes). The data keys are
    unwrapped in one call; a file altered, cut or renamed is CheckFailed naming it."""
    files = sorted(p for p in archive.iterdir() if is_archived_file(p.name)
                   and _needed(p.name.removesuffix(WAL_SUFFIX), start))
    wrapped = []
    for path in files:
        try:
            with path.open("rb") as source:
                wrapped.append(read_header(source)[0])
        except WalArchiveError as e:
            raise CheckFailed(f"archived WAL {path}: {e}") from None
    keys = vault.unwrap_data_keys(wrapped, settings.transit_key, settings.transit_mount)
    into.mkdir(mode=0o700, exist_ok=True)
    total = 0
    for path, key in zip(files, keys):
        target = into / path.name.removesuffix(WAL_SUFFIX)
        try:
            with target.open("wb") as out:
                for plain in open_segment(path, key):
                    total += out.write(plain)
        except EnvelopeError as e:
            raise CheckFailed(f"archived WAL {path}: {e}; recovery abandoned") from None
    del keys
    return len(files), total


def _blocked_for_server_user(folder: Path) -> Path | None:
    """As root the server runs as user postgres: the first folder above ``folder`` it cannot
    traverse (a checkout in root's 0700 home), else None."""
    if os.geteuid() != 0:
        return None
    return next((p for p in reversed(folder.resolve().parents) if not p.stat().st_mode & stat.S_IXOTH), None)


def scratch_folder(settings: "BackupSettings", prefix: str) -> Path:
    """A new folder under ``backups.restore_dir`` (else the temporary folder) that user postgres
    can traverse: where a drill recovers a server or keeps the WAL it replays."""
    parent = Path(settings.restore_dir) if settings.restore_dir else None
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
        parent.chmod(0o755)
    blocked = _blocked_for_server_user(parent or Path(tempfile.gettempdir()))
    if blocked is not None:
        raise ParameterError(
            f"the database server runs as user {OS_USER}, who cannot traverse {blocked} "
            f"(mode {oct(blocked.stat().st_mode & 0o777)}): set backups.restore_dir to a folder it can reach")
    home = Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
    home.chmod(0o755)
    return home


def _prepare(base: BaseBackup, wal: Path, vault: "Vault", settings: "BackupSettings") -> tuple[Path, "RecoveredInstance"]:
    """A scratch folder with the base backup unpacked and the WAL it needs unsealed beside it;
    removed again (clear data in it) if any of that fails."""
    port = _listen_port(settings)  # before any work: a taken restore_port fails the recovery at once
    home = scratch_folder(settings, "veza-pitr-")
    try:
        data = home / "data"
        data.mkdir(mode=0o700)
        key = vault.unwrap_data_key(base.wrapped_key, settings.transit_key, settings.transit_mount)
        start = _unpack(base, key, data)
        del key
        began = time.monotonic()
        files, size = unseal_wal(wal, home / "wal", start, vault, settings)
        instance = RecoveredInstance(data, port, settings.pg_bin_dir, wal_files=files, wal_bytes=size,
                                     unseal_s=round(time.monotonic() - began, 3))
    except BaseException:
        shutil.rmtree(home, ignore_errors=True)
        raise
    return home, instance


def recover_to_time(base: BaseBackup, target: datetime | None, vault: "Vault", settings: "BackupSettings",
                    timeout_s: float = 300, *, wal_dir: Path | None = None) -> RecoveredInstance:
    """Restore ``base`` into a scratch instance and replay archived WAL up to ``target``
    (``None``: every segment there is, as a region's recovery does), from ``wal_dir`` or the
    profile's archive. The instance lives under ``backups.restore_dir`` (else a temporary folder)
    and listens on ``backups.restore_port`` (else a free port)."""
    wal = wal_dir or Path(str(settings.wal_archive_url).removeprefix("file://"))
    if target is not None and target < base.taken_at:
        raise ParameterError(f"target time {target.isoformat()} is before the base backup ({base.taken_at.isoformat()})")
    home, instance = _prepare(base, wal, vault, settings)
    data = instance.data_dir
    for stale in ("postmaster.pid", "standby.signal"):
        (data / stale).unlink(missing_ok=True)
    (data / "recovery.signal").write_text("")
    with (data / "postgresql.auto.conf").open("a") as conf:
        conf.write(f"\n# point-in-time recovery drill\nport = {instance.port}\nlisten_addresses = '127.0.0.1'\n"
                   f"unix_socket_directories = '{home}'\narchive_mode = off\nprimary_conninfo = ''\n"
                   f"restore_command = 'cp {home / 'wal'}/%f %p'\n"
                   + (f"recovery_target_time = '{target.isoformat()}'\n" if target is not None else "")
                   + "recovery_target_action = 'promote'\ncluster_name = 'veza-pitr'\n")
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{OS_USER}:{OS_USER}", str(home)], check=True)
    began = time.monotonic()
    result = subprocess.run(_as_server_user([tool("pg_ctl", settings.pg_bin_dir), "start", "-D", str(data), "-l",
                                             str(home / "server.log"), "-w", "-t", str(int(timeout_s))]),
                            capture_output=True, text=True, timeout=timeout_s + 10, cwd=home)
    if result.returncode != 0:
        log = (home / "server.log").read_text() if (home / "server.log").exists() else ""
        instance.stop()
        raise CheckFailed(f"point-in-time recovery did not start: {last_lines(log or result.stderr)}")
    try:
        _wait_promoted(instance, timeout_s)
    except BaseException:
        instance.stop()
        raise
    shutil.rmtree(home / "wal", ignore_errors=True)  # replayed: the clear WAL goes now, not at stop()
    instance.replay_s = round(time.monotonic() - began, 3)
    return instance


def latest_base_backup(settings: "BackupSettings", vault: "Vault") -> BaseBackup:
    """The newest authentic base backup beside the WAL archive (the region drill's starting point):
    its manifest vouched for by Vault's HMAC with the profile's transit key. Base backups whose
    manifest is missing, edited or renamed are passed over; none left is CheckFailed naming them."""
    folder = _base_folder(settings)
    read, refused = [], {}
    for manifest in sorted(folder.glob("base-*.json")) if folder.is_dir() else []:
        name = manifest.name.removesuffix(".json")
        try:
            read.append((name, _read_base(folder, name, json.loads(manifest.read_text()))))
        except (OSError, ValueError, KeyError, TypeError) as e:
            refused[name] = f"unreadable ({type(e).__name__})"
    refused.update(unauthentic(VaultSeal(vault, settings), read))
    usable = sorted((b for name, b in read if name not in refused), key=lambda b: b.taken_at)
    if not usable:
        why = "; ".join(f"{name}: {reason}" for name, reason in sorted(refused.items()))
        raise CheckFailed(f"no authentic base backup in {folder}: nothing to recover a database from"
                          + (f" (refused: {why})" if why else ""))
    return usable[-1]


def _read_base(folder: Path, name: str, fields: dict[str, Any]) -> BaseBackup:
    """A base backup as its manifest describes it. Its name (the one it was read under) and its
    wrapped key's sha256 (of the key file beside it) are what the HMAC is checked over, so a
    renamed base backup or a swapped key fails as an edited manifest does."""
    path = folder / f"{name}.tar.enc"
    return BaseBackup(path, path.with_suffix(".key").read_text(), datetime.fromisoformat(fields["taken_at"]),
                      str(fields["start_lsn"]), int(fields["size"]), str(fields["sha256"]),
                      str(fields.get("authentication") or ""))


def _wait_promoted(instance: RecoveredInstance, timeout_s: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with psycopg.connect(instance.dsn, connect_timeout=2, autocommit=True) as conn:
                if not conn.execute("SELECT pg_is_in_recovery()").fetchone()[0]:
                    return
        except psycopg.Error:
            pass
        time.sleep(0.1)
    raise RunbookTimeout(f"recovery did not reach its target and promote in {timeout_s:.0f} s")
