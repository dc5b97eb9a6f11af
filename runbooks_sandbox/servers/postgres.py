"""A real PostgreSQL 15 primary and streaming standby for the sandbox, holding ``veza_db``.

Debian's server binaries live in /usr/lib/postgresql/15/bin. initdb refuses to run as
root, so when we are root every server command runs as user ``postgres`` through
``runuser``, and the data directories are chowned to it: they then live where that user can
reach them, whatever the checkout's permissions (:mod:`.datadir`). Each start makes a fresh cluster (initdb takes ~0.4 s): the
sandbox is disposable, and a drill that breaks the database must not break the next one.

Authentication is ``trust`` on loopback and the private socket directory only; the
DSNs carry no password.

WAL is archived sealed, never in clear (:mod:`runbooks_lib.procedures.dr.walcrypt`): given a
:class:`WalArchiver` (the sandbox's OpenBao and a token allowed only new data keys and HMACs),
``start()`` installs the archiver program where the server's user can run it and sets
``archive_command`` to it. Without one, WAL is not archived at all.
"""
from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .ports import (
    LOOPBACK,
    PackageMissing,
    PidFile,
    ServerError,
    ServerStartFailed,
    StaleState,
    claim_port,
    log_tail,
    process_alive,
    wait_port_closed,
)
from .datadir import server_data_dir
from .veza_schema import SEED_SQL

__all__ = ["PostgresCluster", "ReplicationLag", "WalArchiver", "PG_BIN_DIR", "DATABASE"]

PG_BIN_DIR = Path("/usr/lib/postgresql/15/bin")
DATABASE = "veza_db"
SUPERUSER = "postgres"
OS_USER = "postgres"

# Appended to postgresql.conf. fsync off: a killed server keeps its data in the page
# cache, only a host crash could lose it, and the sandbox is disposable.
_PRIMARY_CONF = """
# --- veza sandbox ---
listen_addresses = '{host}'
port = {port}
unix_socket_directories = '{sockets}'
cluster_name = 'veza-primary'
wal_level = replica
max_wal_senders = 5
wal_keep_size = '128MB'
hot_standby = on
fsync = off
shared_buffers = '32MB'
max_connections = 60
log_min_messages = warning
{archiving}
"""

# WAL archiving to the sandbox's stand-in for off-site storage: base backup + archived WAL is
# what point-in-time recovery and a region rebuild replay. A segment is switched at least
# every archive_timeout, which bounds the RPO of a region loss. Each file is sealed (a data key
# from Vault's transit engine, the name bound in): the archive holds no row in clear. A file is
# never overwritten, but one already there with the same plaintext counts as archived
# (PostgreSQL's own advice): a promoted standby offers old segments again, and failing them
# would stall the archiver for good.
_ARCHIVING = """archive_mode = on
archive_command = '{command}'
archive_timeout = '30s'"""
_NOT_ARCHIVING = "archive_mode = off  # no WAL archiver given: WAL never leaves this host"

_HBA = """# veza sandbox: trust on loopback and the private socket directory only
local   all          all                 trust
local   replication  all                 trust
host    all          all   127.0.0.1/32  trust
host    replication  all   127.0.0.1/32  trust
"""


@dataclass(frozen=True)
class WalArchiver:
    """Where the archive_command gets its data keys: a Vault, a token allowed only
    ``datakey/plaintext``, ``hmac`` and ``verify`` on ``key``, the transit mount."""

    vault_addr: str
    token: str = field(repr=False)
    key: str = "veza"
    mount: str = "transit"


@dataclass(frozen=True)
class ReplicationLag:
    """How far the standby is behind: WAL bytes not yet replayed, and seconds."""

    bytes: int | None  # from the primary's pg_stat_replication (None: primary unreachable)
    seconds: float | None  # from the standby: 0 when caught up, else age of the last replayed commit
    state: str | None  # the walsender state, 'streaming' when healthy


@dataclass
class PostgresCluster:
    """A PostgreSQL 15 primary and (optionally) a streaming standby on loopback ports.

    Files live under ``<server data dir>/postgres`` (the state directory, or as root a folder
    user postgres can reach: :func:`.datadir.server_data_dir`): ``primary/`` and ``standby/``
    data directories, ``sockets/``, and one log per server; the WAL archive is
    ``<server data dir>/offsite/wal``. ``stop()`` from a fresh instance on the same state
    directory stops servers an earlier process started.
    """

    state_dir: Path
    primary_port: int | None = None
    standby_port: int | None = None
    host: str = LOOPBACK
    with_standby: bool = True
    seed: bool = True
    bin_dir: Path = PG_BIN_DIR
    start_timeout: float = 30.0
    wal_archiver: WalArchiver | None = None

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.data_root = server_data_dir(self.state_dir)
        self.home = self.data_root / "postgres"
        self.sockets = self.home / "sockets"
        self.wal_archive = self.data_root / "offsite" / "wal"
        # Which data directory plays which role: swapped when a failover promotes the standby
        # and the old primary is rebuilt as the new standby.
        self.dirs = {"primary": "primary", "standby": "standby"}
        recorded = self._read_state()
        if recorded:
            self.primary_port = self.primary_port or recorded.get("primary_port")
            self.standby_port = self.standby_port or recorded.get("standby_port")
            self.dirs = dict(recorded.get("dirs") or self.dirs)

    # -- addresses -----------------------------------------------------------------------
    def dsn(self, role: str = "primary", dbname: str = DATABASE) -> str:
        """libpq URI for ``role`` ('primary' or 'standby'), e.g. postgresql://postgres@127.0.0.1:5433/veza_db."""
        port = self.primary_port if role == "primary" else self.standby_port
        if port is None:
            raise ServerError(f"postgres: no {role} port (not started?)")
        return f"postgresql://{SUPERUSER}@{self.host}:{port}/{dbname}"

    @property
    def primary_dsn(self) -> str:
        return self.dsn("primary")

    @property
    def standby_dsn(self) -> str:
        return self.dsn("standby")

    @property
    def _pidfiles(self) -> dict[str, PidFile]:
        return {role: PidFile(self.home / f"{folder}.pid", "postgres") for role, folder in self.dirs.items()}

    def data_dir(self, role: str) -> Path:
        return self.home / self.dirs[role]

    def log_path(self, role: str) -> Path:
        return self.home / f"{self.dirs[role]}.log"

    # -- lifecycle -----------------------------------------------------------------------
    def start(self) -> "PostgresCluster":
        """initdb, start the primary, create and fill veza_db, clone and start the standby."""
        initdb = self._binary("initdb")
        self._refuse_stale()
        self.primary_port = claim_port(self.primary_port, "postgres primary", self.host)
        if self.with_standby:
            self.standby_port = claim_port(self.standby_port, "postgres standby", self.host)
            if self.standby_port == self.primary_port:
                self.standby_port = claim_port(None, "postgres standby", self.host)
        self._prepare_home()
        self._write_state()
        try:
            archiving = self._install_archiver() if self.wal_archiver else _NOT_ARCHIVING
            self._run([initdb, "-D", str(self.data_dir("primary")), "-U", SUPERUSER, "-A", "trust",
                       "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"])
            primary = self.data_dir("primary")
            with (primary / "postgresql.conf").open("a") as conf:
                conf.write(_PRIMARY_CONF.format(host=self.host, port=self.primary_port, sockets=self.sockets,
                                                archiving=archiving))
            (primary / "pg_hba.conf").write_text(_HBA)
            self._pg_ctl_start("primary")
            if self.seed:
                self._seed()
            if self.with_standby:
                self._start_standby()
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def archiver_home(self) -> Path:
        return self.home / "wal-archiver"

    def _install_archiver(self) -> str:
        """Copy the archiver program (walcrypt.py and the envelope it seals with: standard library
        and cryptography only) and its 0600 configuration where the server's user reads them, as
        wal-g is installed on a database host; returns the archiving settings."""
        from runbooks_lib.procedures.dr import envelope, walcrypt

        assert self.wal_archiver is not None
        home = self.archiver_home
        home.mkdir(mode=0o700, exist_ok=True)
        for module in (envelope, walcrypt):
            shutil.copyfile(str(module.__file__), home / Path(str(module.__file__)).name)
        config = home / "config.json"
        fd = os.open(config, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            json.dump({"vault_addr": self.wal_archiver.vault_addr, "token": self.wal_archiver.token,
                       "mount": self.wal_archiver.mount, "key": self.wal_archiver.key,
                       "archive": str(self.wal_archive)}, out)
        if os.geteuid() == 0:
            for path in (home, *home.iterdir()):
                shutil.chown(path, OS_USER, OS_USER)
        # -E -s: the server's environment (a PYTHONPATH of whoever started it) loads nothing.
        argv = [self._archiver_python(), "-E", "-s", str(home / "walcrypt.py"), "push", "%p", "%f",
                "--config", str(config)]
        command = " ".join(arg if arg in ("%p", "%f") else shlex.quote(arg) for arg in argv)
        return _ARCHIVING.format(command=command.replace("'", "''"))

    def _archiver_python(self) -> str:
        """An interpreter with cryptography the server's user can run: this one (a checkout in
        root's home is out of its reach), else the system's (Debian's python3-cryptography)."""
        for candidate in dict.fromkeys((sys.executable, "/usr/bin/python3")):
            argv = [candidate, "-E", "-s", "-c", "import cryptography.hazmat.primitives.ciphers.aead"]
            if os.geteuid() == 0:
                argv = ["runuser", "-u", OS_USER, "--", *argv]
            try:
                if subprocess.run(argv, capture_output=True, timeout=30, cwd="/").returncode == 0:
                    return candidate
            except (OSError, subprocess.TimeoutExpired):
                continue
        raise PackageMissing(f"a Python with cryptography that user {OS_USER} can run (for the WAL archiver)",
                             "python3-cryptography")

    def _binary(self, name: str) -> str:
        path = Path(self.bin_dir) / name
        if not os.access(path, os.X_OK):
            raise PackageMissing(str(path), "postgresql-15")
        return str(path)

    def _refuse_stale(self) -> None:
        for role, pidfile in self._pidfiles.items():
            pid = pidfile.running_pid() or self._postmaster_pid(role)
            if pid is not None:
                raise StaleState(
                    f"postgres: the {role} from an earlier run (pid {pid}) still runs on "
                    f"{self.data_dir(role)}; stop it first (`runbook sandbox down`, or "
                    f"PostgresCluster(state_dir).stop())"
                )
            pidfile.remove()
        # Nothing runs: whatever data an earlier (maybe crashed) run left is discarded, its WAL
        # archive too (a new cluster's segments have the same names, and the archiver refuses
        # to overwrite a segment with other bytes: it would stall for good).
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.wal_archive, ignore_errors=True)

    def _postmaster_pid(self, role: str) -> int | None:
        try:
            pid = int((self.data_dir(role) / "postmaster.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None
        return pid if process_alive(pid, "postgres") else None

    def _prepare_home(self) -> None:
        server_data_dir(self.state_dir, create=True)  # as root: made where user postgres can reach it
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.wal_archive.mkdir(parents=True, exist_ok=True)
        socket_path = self.sockets / f".s.PGSQL.{self.primary_port}"
        if len(str(socket_path)) > 100:  # sun_path is 108 bytes
            raise ServerError(f"postgres: state directory path too long for a unix socket: {self.sockets}")
        if os.geteuid() != 0:
            return
        for folder in (self.home, self.sockets, self.wal_archive.parent, self.wal_archive):
            shutil.chown(folder, OS_USER, OS_USER)

    def _state_path(self) -> Path:
        return self.state_dir / "postgres.json"

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_path().read_text())
        except (OSError, ValueError):
            return None

    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._state_path().write_text(json.dumps(
            {"host": self.host, "primary_port": self.primary_port, "standby_port": self.standby_port,
             "dirs": self.dirs}))

    def _run(self, argv: list[str], timeout: float | None = None) -> subprocess.CompletedProcess[str]:
        """Run a server command, as user postgres when we are root."""
        program = Path(argv[0]).name
        if os.geteuid() == 0:
            argv = ["runuser", "-u", OS_USER, "--", *argv]
        # PG* variables of the caller's shell must not redirect our tools to another server.
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        result = subprocess.run(argv, capture_output=True, text=True, env=env, cwd=self.home,
                                timeout=timeout or self.start_timeout, stdin=subprocess.DEVNULL)
        if result.returncode != 0:
            tail = (result.stderr or result.stdout).strip().splitlines()[-3:]
            raise ServerStartFailed(f"postgres: {program} failed (exit {result.returncode}): {' | '.join(tail)}")
        return result

    def _pg_ctl_start(self, role: str) -> None:
        data = self.data_dir(role)
        try:
            self._run([self._binary("pg_ctl"), "start", "-D", str(data), "-l", str(self.log_path(role)),
                       "-w", "-t", str(int(self.start_timeout))])
        except ServerStartFailed as e:
            raise ServerStartFailed(f"{e}; its log ends: {log_tail(self.log_path(role)) or '(no log)'}; see {self.log_path(role)}") from e
        pid = self._postmaster_pid(role)
        if pid is None:
            raise ServerStartFailed(f"postgres {role} did not stay up; see {self.log_path(role)}")
        self._pidfiles[role].write(pid)

    def _start_standby(self) -> None:
        standby = self.data_dir("standby")
        shutil.rmtree(standby, ignore_errors=True)
        self._run([self._binary("pg_basebackup"), "-h", self.host, "-p", str(self.primary_port),
                   "-U", SUPERUSER, "-D", str(standby), "-R", "-X", "stream", "-c", "fast", "--no-sync"])
        with (standby / "postgresql.conf").open("a") as conf:
            conf.write(f"port = {self.standby_port}\ncluster_name = 'veza-standby'\n")
        self._pg_ctl_start("standby")
        self._wait_streaming()

    def _wait_streaming(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.replication_lag().state == "streaming":
                return
            time.sleep(0.02)
        raise ServerStartFailed(f"postgres standby is not streaming; see {self.log_path('standby')}")

    def _seed(self) -> None:
        import psycopg

        with psycopg.connect(self.dsn("primary", "postgres"), autocommit=True) as conn:
            # FILE_COPY: a checkpoint and a directory copy, faster than WAL-logging a small
            # template (PG15's default) and cheap with fsync off.
            conn.execute(f"CREATE DATABASE {DATABASE} STRATEGY = FILE_COPY")
        with psycopg.connect(self.primary_dsn, autocommit=True) as conn:
            conn.execute(SEED_SQL)

    def stop(self, grace: float = 10.0) -> None:
        """Stop the standby, then the primary (fast shutdown), killing what does not stop."""
        for role in ("standby", "primary"):
            data = self.data_dir(role)
            if self._postmaster_pid(role) is not None:
                try:
                    self._run([self._binary("pg_ctl"), "stop", "-D", str(data), "-m", "fast", "-w",
                               "-t", str(int(grace))], timeout=grace + 5)
                except (ServerError, subprocess.TimeoutExpired):
                    pass  # the PID file below kills it
            self._pidfiles[role].stop(grace=1.0)
        for port in (self.primary_port, self.standby_port):
            if port is not None:
                wait_port_closed(port, self.host)
        self._state_path().unlink(missing_ok=True)
        self._discard_files()

    def _discard_files(self) -> None:
        """A stopped cluster's files go (the next start makes a fresh one anyway); a server data
        folder outside the state directory goes too once nothing else is in it."""
        shutil.rmtree(self.home, ignore_errors=True)
        shutil.rmtree(self.wal_archive, ignore_errors=True)
        if self.data_root != self.state_dir.resolve():
            for folder in (self.wal_archive.parent, self.data_root):
                with contextlib.suppress(OSError):
                    folder.rmdir()  # only when empty

    def status(self) -> dict[str, Any]:
        """What runs where: per role running/pid/port/dsn, and replication lag."""
        info: dict[str, Any] = {"server": "postgres"}
        for role in ("primary", "standby"):
            pid = self._pidfiles[role].running_pid() or self._postmaster_pid(role)
            port = self.primary_port if role == "primary" else self.standby_port
            info[role] = {"running": pid is not None, "pid": pid, "port": port,
                          "dsn": self.dsn(role) if port else None}
        if info["primary"]["running"] and info["standby"]["running"]:
            lag = self.replication_lag()
            info["replication"] = {"bytes": lag.bytes, "seconds": lag.seconds, "state": lag.state}
        return info

    # -- replication -------------------------------------------------------------------
    def promote_standby(self, timeout: float = 30.0) -> None:
        """Promote the standby to a primary (``pg_ctl promote -w``), as a failover does."""
        if self._postmaster_pid("standby") is None:
            raise ServerError("postgres: no standby runs, nothing to promote")
        self._run([self._binary("pg_ctl"), "promote", "-D", str(self.data_dir("standby")), "-w",
                   "-t", str(int(timeout))], timeout=timeout + 5)

    def kill_primary(self) -> None:
        """Crash the primary as a lost host would: immediate shutdown, no checkpoint, clients cut."""
        if self._postmaster_pid("primary") is None:
            raise ServerError("postgres: the primary does not run, nothing to kill")
        self._run([self._binary("pg_ctl"), "stop", "-D", str(self.data_dir("primary")), "-m", "immediate", "-w"])
        self._pidfiles["primary"].remove()

    def _in_recovery(self, role: str) -> bool | None:
        import psycopg

        try:
            with psycopg.connect(self.dsn(role, "postgres"), connect_timeout=2) as conn:
                return bool(conn.execute("SELECT pg_is_in_recovery()").fetchone()[0])
        except psycopg.Error:
            return None

    def rebuild_standby(self) -> dict[str, Any]:
        """After a failover: make the promoted node the primary and rebuild a standby from it.

        Whichever node runs out of recovery is the primary: when it is the old standby, the
        roles (data directory and port) swap. The other node is stopped if it still runs,
        its data discarded, cloned from the primary with pg_basebackup and started streaming.
        Returns the new topology.
        """
        if self._in_recovery("standby") is False:
            if self._postmaster_pid("primary") is not None:
                # Two primaries (split brain): the promoted one wins, the old one is fenced.
                self._run([self._binary("pg_ctl"), "stop", "-D", str(self.data_dir("primary")), "-m", "fast", "-w"])
            self._pidfiles["primary"].remove()
            self.dirs = {"primary": self.dirs["standby"], "standby": self.dirs["primary"]}
            self.primary_port, self.standby_port = self.standby_port, self.primary_port
        elif self._in_recovery("primary") is not False:
            raise ServerError("postgres: no node runs as a primary; promote the standby first")
        elif self._postmaster_pid("standby") is not None:
            self._run([self._binary("pg_ctl"), "stop", "-D", str(self.data_dir("standby")), "-m", "fast", "-w"])
        self._pidfiles["standby"].remove()
        self._write_state()
        self._start_standby()
        return {"primary_port": self.primary_port, "standby_port": self.standby_port, "dirs": dict(self.dirs)}

    def replication_lag(self) -> ReplicationLag:
        """Lag of the standby: bytes (pg_stat_replication) and seconds (replay timestamp).

        Queries go to the ``postgres`` database: replication is cluster-wide, and a drill may
        have dropped or be restoring veza_db.
        """
        import psycopg

        lag_bytes: int | None = None
        state: str | None = None
        try:
            with psycopg.connect(self.dsn("primary", "postgres"), connect_timeout=2) as conn:
                row = conn.execute(
                    "SELECT state, pg_wal_lsn_diff(pg_current_wal_lsn(), replay_lsn)::bigint "
                    "FROM pg_stat_replication WHERE application_name = 'veza-standby'"
                ).fetchone()
                if row:
                    state, lag_bytes = row[0], (int(row[1]) if row[1] is not None else None)
        except psycopg.Error:
            pass
        seconds: float | None = None
        if self.standby_port is not None:
            try:
                with psycopg.connect(self.dsn("standby", "postgres"), connect_timeout=2) as conn:
                    # Idle primary: replay timestamp ages although nothing is missing, so
                    # "all received WAL replayed" counts as zero lag.
                    row = conn.execute(
                        "SELECT CASE WHEN pg_last_wal_receive_lsn() = pg_last_wal_replay_lsn() THEN 0 "
                        "ELSE extract(epoch FROM now() - pg_last_xact_replay_timestamp()) END"
                    ).fetchone()
                    seconds = float(row[0]) if row and row[0] is not None else None
            except psycopg.Error:
                pass
        return ReplicationLag(bytes=lag_bytes, seconds=seconds, state=state)
