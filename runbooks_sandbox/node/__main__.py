"""``python -m runbooks_sandbox.node --state-dir=<state> [--nodes=a,b] [--time-scale=0.1]``.

Runs the node agent (:class:`~.agent.NodeAgent`) until SIGTERM or SIGINT, then stops its pods.
Must be started inside the cluster's network namespace (:class:`~.process.NodeAgentProcess`
does that). Writes ``<state>/node/agent.json`` once every node is registered.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import threading
from pathlib import Path

from .agent import NodeAgent
from .process import AGENT_DIR
from .settings import AgentSettings, node_names


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbooks_sandbox.node", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path, help="the sandbox's state directory")
    parser.add_argument("--nodes", default=",".join(node_names(2)), help="comma-separated Node names")
    parser.add_argument("--time-scale", type=float, default=AgentSettings.time_scale,
                        help="multiplies pod-spec times and back-offs (0.1: the guide's 10 s is 1 s)")
    parser.add_argument("--catalog", default=None, help="sandbox profile holding the image catalog")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    settings = AgentSettings(nodes=tuple(n for n in args.nodes.split(",") if n), time_scale=args.time_scale,
                             catalog=args.catalog)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    agent = NodeAgent(args.state_dir, settings).start()
    try:
        ready = args.state_dir.resolve() / AGENT_DIR / "agent.json"
        tmp = ready.with_name(".agent.json.tmp")
        tmp.write_text(json.dumps({"agent_pid": os.getpid(), "nodes": {
            n.identity.name: {"address": n.identity.address, "kubelet_port": settings.kubelet_port}
            for n in agent.nodes}}, indent=1))
        os.replace(tmp, ready)
        stop.wait()
    finally:
        agent.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
