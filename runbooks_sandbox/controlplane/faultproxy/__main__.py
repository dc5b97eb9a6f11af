"""The fault proxy process: ``python -m runbooks_sandbox.controlplane.faultproxy --state-dir=DIR``.

Reads ``DIR/config.json`` and ``DIR/admin-token`` (written by :meth:`.FaultProxy.start`), binds
the HTTPS proxy and the admin endpoint on 127.0.0.1, reports ``ready`` in ``DIR/status.json``
and serves until SIGTERM or SIGINT. Open watches and streams end with the process.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from .admin import AdminServer
from .faults import Faults
from .server import ProxyServer
from .upstream import ProxyCredentials, Upstream, serving_context


def _write_status(path: Path, doc: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, path)  # the starting process never reads half a report


def serve(directory: Path) -> int:
    config = json.loads((directory / "config.json").read_text())
    token = (directory / "admin-token").read_text().strip()
    credentials = ProxyCredentials(**{name: Path(value) for name, value in config["credentials"].items()})
    faults = Faults()
    host = config["host"]
    proxy = ProxyServer((host, int(config["port"])), tls=serving_context(credentials),
                        upstream=Upstream(config["upstream"], credentials), faults=faults)
    admin = AdminServer((host, int(config["admin_port"])), faults=faults, token=token)
    stopping = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stopping.set())
    threads = [threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True,
                                name=name) for server, name in ((proxy, "proxy"), (admin, "admin"))]
    for thread in threads:
        thread.start()
    status_path = directory / "status.json"
    _write_status(status_path, {"pid": os.getpid(), "ready": True, "host": host, "port": proxy.server_address[1],
                                "admin_port": admin.server_address[1], "upstream": config["upstream"]})
    print(f"fault proxy: https://{host}:{proxy.server_address[1]} -> {config['upstream']}, "
          f"admin http://{host}:{admin.server_address[1]}", flush=True)
    stopping.wait()
    for server in (proxy, admin):
        server.shutdown()
        server.server_close()  # the listeners close now; open streams end with the process
    status_path.unlink(missing_ok=True)
    print("fault proxy: stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m runbooks_sandbox.controlplane.faultproxy",
                                     description="The sandbox's fault-injecting proxy in front of kube-apiserver "
                                                 "(started by FaultProxy.start, not by hand).")
    parser.add_argument("--state-dir", required=True, type=Path,
                        help="the proxy's folder: config.json and admin-token in, status.json out")
    args = parser.parse_args(argv)
    return serve(args.state_dir)


if __name__ == "__main__":
    sys.exit(main())
