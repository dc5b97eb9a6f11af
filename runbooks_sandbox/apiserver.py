"""The sandbox Kubernetes API server: store + controllers + pod runtime behind HTTP.

``python -m runbooks_sandbox.apiserver --port 0 --kubeconfig .sandbox/kubeconfig`` serves on
127.0.0.1 until interrupted. In code::

    with ApiServer(port=0, kubeconfig=path) as server:
        ...  # server.url, server.store

``controllers`` is a factory ``store -> Controllers`` (default: the sandbox's Deployment,
ReplicaSet and Endpoints controllers when that package is present; ``None`` for none) and
``runtime`` a ``PodRuntime`` (default: the instant runtime; ``None`` for none).
"""
from __future__ import annotations

import argparse
import errno
import logging
import signal
import socket
import threading
from pathlib import Path
from typing import Any, Callable

import yaml

from .http.faults import ApiFaults
from .http.server import ApiHTTPServer
from .models.api import Controllers, PodRuntime
from .models.instant_runtime import InstantRuntime
from .models.resources import ResourceRegistry, builtin_registry
from .models.store import MemoryStore

DEFAULT: Any = object()  # "use the built-in default" (distinct from None = "none at all")
ControllersFactory = Callable[[MemoryStore], Controllers]


def default_controllers() -> ControllersFactory:
    """The built-in controllers (Deployment, ReplicaSet, Endpoints). Pass ``controllers=None``
    to ApiServer for an API server without any; a broken controllers package is an error."""
    from .models.controllers import start_controllers

    return start_controllers


def check_port_free(host: str, port: int) -> None:
    """Fail clearly when a fixed port is taken (other processes share this machine)."""
    if port == 0:
        return
    with socket.socket() as probe:
        try:
            probe.bind((host, port))
        except OSError as e:
            if e.errno == errno.EADDRINUSE:
                raise RuntimeError(f"port {port} on {host} is in use; choose another (or 0 for any)") from e
            raise


def write_kubeconfig(path: Path, url: str, namespace: str = "default") -> None:
    config = {
        "apiVersion": "v1", "kind": "Config", "preferences": {},
        "clusters": [{"name": "sandbox", "cluster": {"server": url}}],
        "users": [{"name": "sandbox", "user": {}}],
        "contexts": [{"name": "sandbox", "context": {"cluster": "sandbox", "user": "sandbox",
                                                     "namespace": namespace}}],
        "current-context": "sandbox",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))


class ApiServer:
    """An API server on 127.0.0.1 with start/stop/reset, moto-style."""

    def __init__(
        self, port: int = 0, host: str = "127.0.0.1", *, kubeconfig: str | Path | None = None,
        controllers: ControllersFactory | None = DEFAULT, runtime: PodRuntime | None = DEFAULT,
        registry: ResourceRegistry | None = None, event_history: int = 1000,
        bookmark_interval_s: float = 5.0,
    ) -> None:
        self.host, self.port = host, port
        self.kubeconfig = Path(kubeconfig) if kubeconfig else None
        self.controllers_factory = default_controllers() if controllers is DEFAULT else controllers
        self.runtime = InstantRuntime(ready_after=0.2) if runtime is DEFAULT else runtime
        self.registry = registry or builtin_registry()
        self.event_history = event_history
        self.bookmark_interval_s = bookmark_interval_s
        self.store = MemoryStore(self.registry, event_history=event_history)
        self.faults = ApiFaults()  # none until a drill sets some (`runbook sandbox fault apiserver`)
        self.controllers: Controllers | None = None
        self._http: ApiHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def server_address_text(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> ApiServer:
        check_port_free(self.host, self.port)
        self._http = ApiHTTPServer((self.host, self.port), self)
        self.port = self._http.server_address[1]
        self._start_cluster()
        self._thread = threading.Thread(target=self._http.serve_forever, name="apiserver", daemon=True)
        self._thread.start()
        if self.kubeconfig:
            write_kubeconfig(self.kubeconfig, self.url)
        return self

    def stop(self) -> None:
        self._stop_cluster()
        if self._http:
            self._http.shutdown()
            self._http.server_close()
            self._http = None
        if self._thread:
            self._thread.join(timeout=5)

    def reset(self) -> None:
        """A new, empty cluster on the same port (a new cluster identity); watches end."""
        self._stop_cluster()
        self.store = MemoryStore(self.registry, event_history=self.event_history)
        self._start_cluster()

    def _start_cluster(self) -> None:
        if self.runtime is not None:
            self.runtime.start(self.store)
        if self.controllers_factory is not None:
            self.controllers = self.controllers_factory(self.store)

    def _stop_cluster(self) -> None:
        if self.controllers is not None:
            self.controllers.stop()
            self.controllers = None
        if self.runtime is not None:
            self.runtime.stop()
        self.store.close()

    def __enter__(self) -> ApiServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Serve the sandbox Kubernetes API on loopback.")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to listen on")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server here")
    parser.add_argument("--ready-after", type=float, default=0.2,
                        help="seconds before the built-in runtime marks a pod Ready")
    parser.add_argument("--no-controllers", action="store_true", help="serve the API only")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    server = ApiServer(args.port, args.host, kubeconfig=args.kubeconfig,
                       runtime=InstantRuntime(ready_after=args.ready_after),
                       controllers=None if args.no_controllers else DEFAULT)
    try:
        server.start()
    except RuntimeError as e:
        raise SystemExit(f"error: {e}") from None
    print(f"sandbox API server at {server.url}" + (f"; kubeconfig {server.kubeconfig}" if server.kubeconfig else ""),
          flush=True)
    done = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: done.set())
    try:
        done.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()


if __name__ == "__main__":
    main()
