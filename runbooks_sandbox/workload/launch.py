"""Start a workload process outside the pod runtime (tests, bench, ad-hoc drills).

The pod runtime builds its own processes from :func:`workload_command`; this module adds the
small conveniences a caller needs when it is not a runtime: wait for the listening line, read
the bound URL, stop gracefully and fall back to SIGKILL.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WorkloadProcess", "start_workload", "workload_command"]

_LISTENING = re.compile(r"listening on (http://\S+)")


def workload_command(
    image: str,
    host: str,
    port: int,
    *,
    fault_file: str | Path | None = None,
    catalog: str | Path | None = None,
    access_log: bool = True,
) -> list[str]:
    """The argv that runs one workload with this interpreter."""
    argv = [sys.executable, "-m", "runbooks_sandbox.workload", "--image", image, "--host", host, "--port", str(port)]
    if fault_file:
        argv += ["--fault-file", str(fault_file)]
    if catalog:
        argv += ["--catalog", str(catalog)]
    if not access_log:
        argv.append("--no-access-log")
    return argv


@dataclass
class WorkloadProcess:
    """A running workload: its process, the URL it listens on and its log file."""

    process: subprocess.Popen
    url: str
    log_path: Path

    @property
    def pid(self) -> int:
        return self.process.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, grace_s: float = 5.0) -> int:
        """SIGTERM, wait up to grace_s, then SIGKILL (as the kubelet does). Returns the exit status."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(grace_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()


def start_workload(
    image: str,
    log_path: str | Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    fault_file: str | Path | None = None,
    catalog: str | Path | None = None,
    access_log: bool = True,
    env: dict[str, str] | None = None,
    wait_s: float = 10.0,
) -> WorkloadProcess:
    """Start a workload and wait until it listens; RuntimeError (with its log) if it exits first."""
    log_path = Path(log_path)
    command = workload_command(image, host, port, fault_file=fault_file, catalog=catalog, access_log=access_log)
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env={**os.environ, **(env or {})},
        )
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if match := _LISTENING.search(log_path.read_text(errors="replace")):
            return WorkloadProcess(process, match.group(1), log_path)
        if process.poll() is not None:
            raise RuntimeError(f"workload {image} exited with {process.returncode}: {log_path.read_text()[-2000:]}")
        time.sleep(0.01)
    process.kill()
    process.wait()
    raise RuntimeError(f"workload {image} did not listen within {wait_s} s: {log_path.read_text()[-2000:]}")
