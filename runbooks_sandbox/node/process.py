"""The node agent as a process of its own inside the cluster's network namespace.

``NodeAgentProcess(state_dir).start(nodes=2)`` runs ``ip netns exec <netns> python -m
runbooks_sandbox.node --state-dir=<state> ...`` (``ip`` execs Python in the same process, so the
PID file holds the agent's own PID), its log in ``<state>/node/agent.log``, and waits until the
agent has written ``<state>/node/agent.json`` (its nodes registered, their addresses). Its own
process, not a thread of the caller: the pods must outlive neither the agent nor a crash of
whoever started it, and a supervisor's GIL must not slow the heartbeats.

``stop()`` sends SIGTERM (the agent stops its pods: SIGTERM, a short grace, SIGKILL), then
SIGKILL after ``grace``. After a ``kill -9`` of the agent its pod processes are orphaned inside
the namespace; their output went to pipes the agent read, so a pod may end at its next log write
(seen within a second or two), or live on until
:meth:`~runbooks_sandbox.network.ClusterNetwork.delete` (from ``SandboxCluster.stop``) kills
whatever is left: nothing enters that namespace but the sandbox's. (A kubelet's containers
outlive it, their logs being files; an agent started again after a crash finds its pods' addresses
busy until such orphans are gone, and reports CreateContainerError meanwhile.)
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..network import ClusterNetwork
from ..servers.ports import PidFile, ServerStartFailed, StaleState, log_tail
from .settings import AgentSettings

__all__ = ["NodeAgentProcess", "AGENT_DIR"]

AGENT_DIR = "node"
MODULE = "runbooks_sandbox.node"


class NodeAgentProcess:
    """Start, find and stop the node agent of the sandbox in ``state_dir`` (module doc)."""

    def __init__(self, state_dir: str | Path, network: ClusterNetwork | None = None) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.network = network or ClusterNetwork(self.state_dir)
        self.dir = self.state_dir / AGENT_DIR
        self.mark = f"--state-dir={self.state_dir}"  # one word of its command line, checked before a signal
        self.pidfile = PidFile(self.dir / "agent.pid", self.mark)
        self.log_path = self.dir / "agent.log"
        self.ready_path = self.dir / "agent.json"

    def argv(self, settings: AgentSettings) -> list[str]:
        command = [sys.executable, "-m", MODULE, self.mark, f"--nodes={','.join(settings.nodes)}",
                   f"--time-scale={settings.time_scale:g}"]
        if settings.catalog:
            command.append(f"--catalog={settings.catalog}")
        return self.network.exec_argv(command)

    def start(self, settings: AgentSettings | None = None, timeout_s: float = 60.0) -> dict[str, Any]:
        """Start the agent and wait until its nodes are registered; returns what it wrote."""
        settings = settings or AgentSettings()
        if (pid := self.pidfile.running_pid()) is not None:
            raise StaleState(f"node agent: pid {pid} still runs for {self.state_dir}; stop it first "
                             f"(NodeAgentProcess({str(self.state_dir)!r}).stop())")
        self.dir.mkdir(parents=True, exist_ok=True)
        self.ready_path.unlink(missing_ok=True)
        log_fd = os.open(self.log_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            process = subprocess.Popen(self.argv(settings), stdin=subprocess.DEVNULL, stdout=log_fd,
                                       stderr=subprocess.STDOUT, cwd=self.dir, start_new_session=True,
                                       env={k: v for k, v in os.environ.items() if k != "KUBECONFIG"})
        finally:
            os.close(log_fd)
        self.pidfile.write(process.pid)
        deadline = time.monotonic() + timeout_s
        while not self.ready_path.exists():
            if process.poll() is not None:
                self.pidfile.remove()
                raise ServerStartFailed(f"node agent exited with code {process.returncode} at start: "
                                        f"{log_tail(self.log_path)} (see {self.log_path})")
            if time.monotonic() > deadline:
                self.stop()
                raise ServerStartFailed(f"node agent: nodes not registered after {timeout_s:.0f} s; "
                                        f"see {self.log_path}")
            time.sleep(0.1)
        return self.status()

    def stop(self, grace: float = 20.0) -> bool:
        """SIGTERM, then SIGKILL after ``grace`` s; True when the agent is gone."""
        gone = self.pidfile.stop(grace)
        if gone:
            self.ready_path.unlink(missing_ok=True)
        return gone

    def status(self) -> dict[str, Any]:
        try:
            written = json.loads(self.ready_path.read_text())
        except (OSError, ValueError):
            written = {}
        return {"pid": self.pidfile.running_pid(), "log": str(self.log_path), **written}
