"""A real Redis 7 (Debian ``redis-server``) as the sandbox's cache, with a password and no disk.

The guide's platform keeps sessions and cached API answers in Redis; the sandbox's backend
pods read and write it through ``REDIS_URL`` (synced from OpenBao into ``veza-secrets``), so
stopping it shows up as failed requests in the golden signals. The password is written to
the server's config file (mode 0600), never to its command line. ``stop()`` and ``start()``
again keep the port and the password: that is how ``runbook sandbox fault redis --down`` and
``--clear`` take the cache away and give it back. :func:`redis_metrics` is a small exporter
(``redis_up``, memory, clients, commands, keyspace hits/misses) that the supervisor serves
to Prometheus.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .ports import (LOOPBACK, PidFile, ServerStartFailed, StaleState, claim_port, require_executable,
                    wait_port_closed)

__all__ = ["RedisServer", "redis_metrics"]


@dataclass
class RedisServer:
    """One redis-server on a loopback port; config, log and state under ``state_dir/redis``.

    ``port`` None picks a free one (a port asked for is checked free first). A fresh
    instance on the same state directory finds the running server's port and password.
    """

    state_dir: Path
    port: int | None = None
    host: str = LOOPBACK
    binary: str = "redis-server"
    start_timeout: float = 10.0
    max_memory: str = "64mb"  # a cache: evicts least-recently-used keys past this

    def __post_init__(self) -> None:
        self.state_dir = Path(self.state_dir)
        self.home = self.state_dir / "redis"
        self._pidfile = PidFile(self.home / "redis.pid", "redis-server")
        self._process: subprocess.Popen[bytes] | None = None
        self.password: str | None = None
        recorded = self._read_state()
        if recorded:
            self.port = self.port or int(recorded["port"])
            self.password = self._read_password()

    # -- files -----------------------------------------------------------------------
    @property
    def config_path(self) -> Path:
        return self.home / "redis.conf"

    @property
    def log_path(self) -> Path:
        return self.home / "redis.log"

    @property
    def _state_path(self) -> Path:
        return self.home / "server.json"

    def _read_state(self) -> dict[str, Any] | None:
        try:
            return json.loads(self._state_path.read_text())
        except (OSError, ValueError):
            return None

    def _read_password(self) -> str | None:
        try:
            for line in self.config_path.read_text().splitlines():
                if line.startswith("requirepass "):
                    return line.split(" ", 1)[1].strip().strip('"')
        except OSError:
            pass
        return None

    @property
    def url(self) -> str:
        """``redis://:<password>@host:port/0`` (holds the password: a secret)."""
        if self.port is None or self.password is None:
            raise ServerStartFailed("redis: not started, no URL yet")
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    def _write_config(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True)
        lines = [f"bind {self.host}", f"port {self.port}", "protected-mode yes", "daemonize no",
                 f'requirepass "{self.password}"', 'save ""', "appendonly no", f"dir {self.home}",
                 f"maxmemory {self.max_memory}", "maxmemory-policy allkeys-lru", "databases 4",
                 f"logfile {self.log_path}", "loglevel notice"]
        fd = os.open(self.config_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> "RedisServer":
        """Start redis-server (same port and password as before, if it ran here) and wait for PONG."""
        binary = require_executable(self.binary, "redis-server")
        pid = self._pidfile.running_pid()
        if pid is not None:
            raise StaleState(f"redis: a server (pid {pid}) still runs on {self.home}; stop it first "
                             f"(`runbook sandbox down`, or RedisServer(state_dir).stop())")
        self.port = claim_port(self.port, "redis", self.host)
        self.password = self.password or secrets.token_urlsafe(24)
        self._write_config()
        self._process = subprocess.Popen([binary, str(self.config_path)], stdin=subprocess.DEVNULL,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                         cwd=self.home, start_new_session=True)
        self._pidfile.write(self._process.pid)
        self._state_path.write_text(json.dumps({"pid": self._process.pid, "host": self.host, "port": self.port}))
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def client(self, timeout_s: float = 1.0) -> Any:
        """A client that fails at once when the server is down (no retries: a scrape must not stall)."""
        import redis
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        return redis.Redis(host=self.host, port=self.port or 0, password=self.password,
                           socket_timeout=timeout_s, socket_connect_timeout=timeout_s,
                           retry=Retry(NoBackoff(), 0))

    def _wait_ready(self) -> None:
        import redis

        deadline = time.monotonic() + self.start_timeout
        client = self.client(0.5)
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServerStartFailed(f"redis-server exited with code {self._process.returncode} at start; "
                                        f"see {self.log_path}")
            try:
                if client.ping():
                    return
            except redis.RedisError:
                time.sleep(0.02)
        raise ServerStartFailed(f"redis not ready after {self.start_timeout:.0f} s; see {self.log_path}")

    def stop(self, grace: float = 5.0) -> None:
        """Stop the server we started (by its recorded PID) and wait until its port is free."""
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

    def forget(self) -> None:
        """Remove the recorded port and password (after the sandbox's down)."""
        self._state_path.unlink(missing_ok=True)
        self.config_path.unlink(missing_ok=True)

    def status(self) -> dict[str, Any]:
        """``running``, ``pid``, ``port`` (no password)."""
        pid = self._pidfile.running_pid()
        return {"server": "redis", "running": pid is not None, "pid": pid, "port": self.port}


# -- the exporter's view --------------------------------------------------------------------

_INFO_GAUGES = {
    "connected_clients": ("redis_connected_clients", "Client connections"),
    "used_memory": ("redis_memory_used_bytes", "Memory used by Redis"),
    "keyspace_hits": ("redis_keyspace_hits_total", "Lookups that found their key"),
    "keyspace_misses": ("redis_keyspace_misses_total", "Lookups that found no key"),
    "total_commands_processed": ("redis_commands_processed_total", "Commands processed"),
    "evicted_keys": ("redis_evicted_keys_total", "Keys evicted by maxmemory"),
}


def redis_metrics(state_dir: Path) -> str:
    """Prometheus text for the sandbox's Redis, as redis_exporter names it; ``redis_up 0`` when down."""
    import redis

    server = RedisServer(state_dir)
    lines = ["# HELP redis_up Whether the Redis server answered", "# TYPE redis_up gauge"]
    info: dict[str, Any] = {}
    if server.port is not None and server.password is not None:
        try:
            info = server.client(0.5).info()
        except redis.RedisError:
            info = {}
    lines.append(f"redis_up {1 if info else 0}")
    for field, (name, help_text) in _INFO_GAUGES.items():
        if field in info:
            kind = "counter" if name.endswith("_total") else "gauge"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}", f"{name} {info[field]}"]
    keys = sum(int(v.get("keys", 0)) for k, v in info.items() if k.startswith("db") and isinstance(v, dict))
    if info:
        lines += ["# HELP redis_db_keys Keys in all databases", "# TYPE redis_db_keys gauge", f"redis_db_keys {keys}"]
    return "\n".join(lines) + "\n"
