"""One control-plane process (etcd, kube-apiserver, ...), and where our own connections are made.

A :class:`Component` is a binary, its arguments, a log and a PID file under the state
directory. Before any signal, the recorded PID must still run that binary *with* an argument
naming this state directory (``mark``): a PID reused since a crash, or the same binary serving
another sandbox, is left alone.

With a network namespace, a component is started as ``ip netns exec <netns> <binary> ...``:
``ip`` enters the namespace and execs the binary in the same process (no fork), so the PID we
record is the binary's own. Our own connections to the components (readiness checks, RBAC) and
the free-port checks must happen in that namespace too: :class:`Network` runs them in a
short-lived thread that joined it (``setns(2)`` with CLONE_NEWNET changes only the calling
thread, and a socket stays in the namespace it was made in).
"""
from __future__ import annotations

import ctypes
import os
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from ..servers.ports import PidFile, ServerError, process_alive, process_cmdline, require_executable, terminate

__all__ = ["Component", "Network", "NETNS_DIR", "netns_exists", "rss_bytes"]

NETNS_DIR = Path("/run/netns")  # where `ip netns add` makes its namespaces
_CLONE_NEWNET = 0x40000000
T = TypeVar("T")

# Variables a component would read as configuration: etcd maps every ETCD_* to a flag, and a
# KUBECONFIG of the caller's shell must not leak into anything we start.
_DROPPED_ENV_PREFIXES = ("ETCD_", "KUBECONFIG")


def netns_exists(name: str) -> bool:
    return (NETNS_DIR / name).exists()


def rss_bytes(pid: int) -> int | None:
    """Resident memory of ``pid`` (VmRSS), None when it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        return None
    return None


def _enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name``."""
    libc = ctypes.CDLL(None, use_errno=True)
    try:
        fd = os.open(NETNS_DIR / name, os.O_RDONLY | os.O_CLOEXEC)
    except OSError as e:
        raise ServerError(f"network namespace {name!r} not found ({e}); make it first (ip netns add {name})") from e
    try:
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise ServerError(f"cannot enter network namespace {name!r}: {os.strerror(err)} "
                              f"(setns needs CAP_SYS_ADMIN: run as root)")
    finally:
        os.close(fd)


class Network:
    """Runs a function where the control plane listens: here, or in network namespace ``netns``."""

    def __init__(self, netns: str | None = None) -> None:
        self.netns = netns

    def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """``fn(*args, **kwargs)``, in a thread inside the namespace when there is one.

        A fresh thread per call: it never returns to a pool where other code would open
        sockets in the wrong namespace. Exceptions propagate to the caller.
        """
        if self.netns is None:
            return fn(*args, **kwargs)
        outcome: dict[str, Any] = {}

        def target() -> None:
            try:
                _enter_netns(self.netns)  # type: ignore[arg-type]
                outcome["value"] = fn(*args, **kwargs)
            except BaseException as e:  # handed to the caller's thread
                outcome["error"] = e

        thread = threading.Thread(target=target, name=f"netns-{self.netns}", daemon=True)
        thread.start()
        thread.join()
        if "error" in outcome:
            raise outcome["error"]
        return outcome["value"]  # type: ignore[no-any-return]

    def ensure_loopback(self) -> None:
        """Bring ``lo`` up in the namespace (``ip netns add`` leaves it down; every component
        talks to another over 127.0.0.1). Idempotent; nothing to do without a namespace."""
        if self.netns is None:
            return
        if not netns_exists(self.netns):
            raise ServerError(f"network namespace {self.netns!r} does not exist; make it first "
                              f"(ip netns add {self.netns})")
        ip = require_executable("ip", "iproute2")
        result = subprocess.run([ip, "-n", self.netns, "link", "set", "lo", "up"], capture_output=True,
                                text=True, stdin=subprocess.DEVNULL, timeout=10)
        if result.returncode != 0:
            raise ServerError(f"cannot bring up lo in network namespace {self.netns!r}: {result.stderr.strip()}")


@dataclass
class Component:
    """One process of the control plane: what to run, where it logs, how to recognise it."""

    name: str  # etcd, kube-apiserver, kube-controller-manager, kube-scheduler
    binary: str  # absolute path
    args: Sequence[str]
    log_path: Path
    pid_path: Path
    mark: str  # an argument naming this state directory, unique to this component
    netns: str | None = None
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    @property
    def pidfile(self) -> PidFile:
        return PidFile(self.pid_path, self.mark)

    def argv(self) -> list[str]:
        command = [self.binary, *self.args]
        if self.netns is not None:
            command = [require_executable("ip", "iproute2"), "netns", "exec", self.netns, *command]
        return command

    def spawn(self) -> int:
        """Start the process (own session, stdin closed, output to the log); record and return its PID."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_DROPPED_ENV_PREFIXES)}
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            self._process = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=log_fd,
                                             stderr=subprocess.STDOUT, env=env, cwd=self.log_path.parent,
                                             start_new_session=True)
        finally:
            os.close(log_fd)
        self.pidfile.write(self._process.pid)
        return self._process.pid

    def _is_ours(self, pid: int) -> bool:
        """``pid`` runs our binary with our mark (also while ``ip netns exec`` has not yet exec'd it)."""
        cmdline = process_cmdline(pid)
        return self.binary in cmdline and any(self.mark in part for part in cmdline)

    def running_pid(self) -> int | None:
        """The recorded PID when it still runs this component of this state directory, else None."""
        pid = self.pidfile.read()
        if pid is not None and process_alive(pid) and self._is_ours(pid):
            return pid
        return None

    def exit_code(self) -> int | None:
        """The exit code when the process we spawned (in this Python process) has exited."""
        return None if self._process is None else self._process.poll()

    def stop(self, grace: float) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` s; True when gone. Only a process that is ours."""
        pid = self.pidfile.read()
        gone = True
        if pid is not None and self._is_ours(pid):
            gone = terminate(pid, self.mark, grace)
        if self._process is not None:
            try:
                self._process.wait(timeout=0 if gone else grace)
            except subprocess.TimeoutExpired:
                pass
            else:
                self._process = None
        if gone:
            self.pidfile.remove()
        return gone
