"""Free loopback ports, PID files and process shutdown for the sandbox's real servers.

The sandbox shares the machine with other work: every port is chosen free at start (or
checked free when the caller asks for one), every process we start is recorded in a PID
file in the state directory, and stopping kills only a PID we recorded *and* whose command
line still names the program we started (a PID may have been reused since a crash).
"""
from __future__ import annotations

import errno
import os
import secrets
import shutil
import signal
import socket
import time
from pathlib import Path

__all__ = [
    "ServerError",
    "PortInUse",
    "PackageMissing",
    "StaleState",
    "ServerStartFailed",
    "LOOPBACK",
    "is_port_free",
    "free_port",
    "free_port_pair",
    "claim_port",
    "wait_for_port",
    "wait_port_closed",
    "PidFile",
    "process_alive",
    "process_cmdline",
    "children_of",
    "terminate",
    "require_executable",
    "log_tail",
]

LOOPBACK = "127.0.0.1"


class ServerError(RuntimeError):
    """A sandbox server could not be started, queried or stopped. Messages say what to do."""


class PortInUse(ServerError):
    """The port asked for is held by another process."""

    def __init__(self, host: str, port: int, server: str) -> None:
        super().__init__(
            f"{server}: port {host}:{port} is already in use by another process; "
            f"choose another port or leave it unset to pick a free one "
            f"(see who holds it: ss -ltnp 'sport = :{port}')"
        )
        self.host, self.port = host, port


class PackageMissing(ServerError):
    """A program the sandbox needs is not installed."""

    def __init__(self, program: str, package: str) -> None:
        super().__init__(
            f"{program} not found: install the Debian package {package} "
            f"(as root: apt-get install -y --no-upgrade {package}, or run scripts/bootstrap-system.sh)"
        )
        self.program, self.package = program, package


class StaleState(ServerError):
    """A server from an earlier run still runs on this state directory."""


class ServerStartFailed(ServerError):
    """The server process exited or did not become ready in time."""


def is_port_free(port: int, host: str = LOOPBACK) -> bool:
    """True when nothing listens on ``host:port`` and we could bind it now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR as the servers themselves set it: a port left in TIME_WAIT by a
        # stopped server counts as free, only a listener makes it busy.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            if e.errno in (errno.EADDRINUSE, errno.EACCES):
                return False
            raise
    return True


# Where free ports are looked for: below the kernel's ephemeral range, from this port up.
LISTEN_PORTS_FROM = 10000
_EPHEMERAL_RANGE = Path("/proc/sys/net/ipv4/ip_local_port_range")


def _listen_range() -> range | None:
    """The ports from LISTEN_PORTS_FROM up to the kernel's ephemeral range, if there is room."""
    try:
        ephemeral_low = int(_EPHEMERAL_RANGE.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return range(LISTEN_PORTS_FROM, ephemeral_low) if ephemeral_low - LISTEN_PORTS_FROM >= 1000 else None


def free_port(host: str = LOOPBACK) -> int:
    """A port free on ``host`` right now, chosen below the kernel's ephemeral range.

    A port the kernel hands out for port 0 comes from the ephemeral range, which is also where
    every outgoing connection takes its local port: on a busy machine one of them can take it in
    the seconds before our server binds it (a sandbox's PostgreSQL standby, started some seconds
    after its port was chosen, once failed to start). Below that range only a listener can hold
    a port, and two sandboxes starting at once rarely draw the same one of some 20,000.
    """
    ports = _listen_range()
    if ports is not None:
        for _ in range(100):
            port = secrets.choice(ports)
            if is_port_free(port, host):
                return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def free_port_pair(host: str = LOOPBACK, attempts: int = 50) -> int:
    """A free port ``p`` such that ``p + 1`` is free too (OpenBao's cluster listener)."""
    for _ in range(attempts):
        port = free_port(host)
        if port < 65535 and is_port_free(port + 1, host):
            return port
    raise ServerError(f"no two consecutive free ports found on {host}")


def claim_port(requested: int | None, server: str, host: str = LOOPBACK) -> int:
    """The requested port if it is free (else :class:`PortInUse`), or a free one."""
    if requested is None:
        return free_port(host)
    if not is_port_free(requested, host):
        raise PortInUse(host, requested, server)
    return requested


def wait_for_port(port: int, host: str = LOOPBACK, timeout: float = 10.0) -> bool:
    """Wait until something accepts connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.2):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def wait_port_closed(port: int, host: str = LOOPBACK, timeout: float = 5.0) -> bool:
    """Wait until ``host:port`` is no longer listened on."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if is_port_free(port, host):
            return True
        time.sleep(0.02)
    return is_port_free(port, host)


def process_cmdline(pid: int) -> list[str]:
    """The command line of ``pid`` (empty when it is gone or a zombie)."""
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return []
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _is_zombie(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    # The state is the field after the parenthesised command name.
    return stat.rpartition(")")[2].split()[0] in ("Z", "X")


def process_alive(pid: int, expect: str | None = None) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, its command line contains ``expect``."""
    if pid <= 0 or _is_zombie(pid):
        return False
    if expect is None:
        return True
    return any(expect in part for part in process_cmdline(pid))


def children_of(pid: int) -> list[int]:
    """Direct children of ``pid`` (PostgreSQL backends of a postmaster, for instance)."""
    found: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rpartition(")")[2].split()
        if len(fields) > 1 and fields[1] == str(pid):
            found.append(int(entry.name))
    return found


def terminate(pid: int, expect: str | None = None, grace: float = 5.0) -> bool:
    """SIGTERM ``pid``, wait up to ``grace`` seconds, then SIGKILL it and its children.

    Only signals the process if it still is what we started (``expect`` in its command
    line). Returns True when the process is gone.
    """
    if not process_alive(pid, expect):
        return True
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid):
            return True
        time.sleep(0.02)
    for victim in [*children_of(pid), pid]:
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        _reap(pid)
        if not process_alive(pid):
            return True
        time.sleep(0.02)
    return not process_alive(pid)


def _reap(pid: int) -> None:
    """Collect the exit status if ``pid`` is our child, so it does not linger as a zombie."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


class PidFile:
    """A PID file in the state directory: the record of what we started and must stop."""

    def __init__(self, path: Path, program: str) -> None:
        self.path = Path(path)
        self.program = program  # a word of the command line, checked before any signal

    def write(self, pid: int) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(f"{pid}\n")

    def read(self) -> int | None:
        try:
            return int(self.path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def running_pid(self) -> int | None:
        """The recorded PID if that process still runs our program, else None."""
        pid = self.read()
        if pid is not None and process_alive(pid, self.program):
            return pid
        return None

    def remove(self) -> None:
        self.path.unlink(missing_ok=True)

    def stop(self, grace: float = 5.0) -> bool:
        """Terminate the recorded process (if still ours) and remove the file."""
        pid = self.read()
        gone = True if pid is None else terminate(pid, self.program, grace)
        if gone:
            self.remove()
        return gone


def require_executable(path_or_name: str, package: str) -> str:
    """The absolute path of a program, or :class:`PackageMissing` naming its Debian package."""
    if os.sep in path_or_name:
        if os.access(path_or_name, os.X_OK):
            return path_or_name
        raise PackageMissing(path_or_name, package)
    found = shutil.which(path_or_name)
    if found is None:
        raise PackageMissing(path_or_name, package)
    return found


def log_tail(path: Path, lines: int = 3) -> str:
    """A server log's last ``lines``, joined on one line: its own words on why it did not start,
    for the error a person reads first. Empty when there is no log (yet)."""
    try:
        return " | ".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return ""
