"""The fault proxy as a process of the sandbox: start, stop, status, and its admin client.

``FaultProxy(state_dir).start(upstream_url, credentials)`` chooses its two ports (or checks
the ones asked for are free), makes a fresh admin token, writes what the process needs into
``<state>/faultproxy/config.json`` and starts ``python -m runbooks_sandbox.controlplane.faultproxy
--state-dir=<state>/faultproxy`` in its own session, output to ``faultproxy.log``. It is ready
when the process reports so in ``status.json`` (both listeners bound). Like the control
plane's components, the PID file is trusted only while that PID still runs with this argument
(a PID reused after a crash is left alone), and every method works from a fresh instance in
another process: ``stop()`` after the starting process died, for one.

:meth:`FaultProxy.for_control_plane` (or :meth:`~FaultProxy.for_cluster` with a
:class:`~runbooks_sandbox.cluster.SandboxCluster`) starts it in front of a running control
plane, with a serving cert of the cluster CA and a front-proxy client cert of its own
(:mod:`.identity`), and writes a kubeconfig of the people's and admin's contexts whose server
is the proxy: runbooks and kubectl given that file go through the faults.
"""
from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from ...servers.ports import (
    LOOPBACK,
    PidFile,
    ServerError,
    ServerStartFailed,
    StaleState,
    claim_port,
    log_tail,
    wait_port_closed,
)
from ...tokens import make_token
from .faults import FaultSettings
from .upstream import ProxyCredentials

if TYPE_CHECKING:
    from ..cluster import ControlPlane

__all__ = ["FaultProxy", "PROXY_MODULE"]

PROXY_MODULE = "runbooks_sandbox.controlplane.faultproxy"
ADMIN_TOKEN = "admin-token"
SERVING_CERT_STEM = "faultproxy"  # <pki>/faultproxy.crt: 127.0.0.1 and localhost
FRONT_PROXY_CERT_STEM = "faultproxy-front-proxy-client"


class FaultProxy:
    """The fault proxy of the sandbox in ``state_dir`` (module doc).

    ``port``/``admin_port``: where the HTTPS proxy and the admin endpoint listen on 127.0.0.1;
    None picks free ones, a number must be free (else :class:`~..servers.ports.PortInUse`).
    """

    def __init__(self, state_dir: str | Path, *, port: int | None = None, admin_port: int | None = None) -> None:
        if port is not None and port == admin_port:
            raise ValueError(f"the proxy and its admin endpoint need two ports, not both {port}")
        self.state_dir = Path(state_dir).resolve()
        self.dir = self.state_dir / "faultproxy"
        self.port, self.admin_port = port, admin_port
        self.config_path = self.dir / "config.json"
        self.status_path = self.dir / "status.json"
        self.log_path = self.dir / "faultproxy.log"
        self.token_path = self.dir / ADMIN_TOKEN
        self.kubeconfig = self.dir / "kubeconfig"

    @property
    def mark(self) -> str:
        """The argument of the process's command line that names this state directory."""
        return f"--state-dir={self.dir}"

    @property
    def pid_file(self) -> PidFile:
        return PidFile(self.dir / "faultproxy.pid", self.mark)

    def running_pid(self) -> int | None:
        return self.pid_file.running_pid()

    # -- start --------------------------------------------------------------------------------
    def start(self, upstream_url: str, credentials: ProxyCredentials, *, timeout: float = 15.0) -> "FaultProxy":
        """Start the proxy in front of ``upstream_url`` (``https://host:port`` of the apiserver,
        reachable from here); returns self once both listeners are bound. On failure nothing is
        left running and the reason (the process's own words) is raised."""
        self._refuse_stale()
        for path in (credentials.cluster_ca, credentials.serving_cert, credentials.serving_key,
                     credentials.front_proxy_cert, credentials.front_proxy_key):
            if not Path(path).is_file():
                raise ServerError(f"fault proxy: {path} does not exist (is the control plane running?)")
        self.dir.mkdir(parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)  # its token and config name the keys
        port = claim_port(self.port, "fault proxy")
        admin_port = claim_port(self.admin_port, "fault proxy admin")
        if admin_port == port:
            admin_port = claim_port(None, "fault proxy admin")
        make_token(self.dir, ADMIN_TOKEN)
        self.status_path.unlink(missing_ok=True)
        _write_json_private(self.config_path, {
            "upstream": upstream_url, "host": LOOPBACK, "port": port, "admin_port": admin_port,
            "credentials": {name: str(getattr(credentials, name)) for name in ProxyCredentials.__dataclass_fields__},
        })
        argv = [sys.executable, "-m", PROXY_MODULE, self.mark]
        with open(self.log_path, "ab") as log:
            process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       start_new_session=True)
        self.pid_file.write(process.pid)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status = self.status()
            if status.get("pid") == process.pid and status.get("ready"):
                return self
            if process.poll() is not None:
                self.pid_file.remove()
                raise ServerStartFailed(f"fault proxy exited ({process.returncode}) at start: "
                                        f"{log_tail(self.log_path)} (see {self.log_path})")
            time.sleep(0.02)
        self.stop()
        raise ServerStartFailed(f"fault proxy: not ready after {timeout:.0f} s; see {self.log_path}")

    def _refuse_stale(self) -> None:
        if (pid := self.running_pid()) is not None:
            raise StaleState(f"fault proxy: pid {pid} from an earlier start still runs on {self.dir}; stop it "
                             f"first (FaultProxy({str(self.state_dir)!r}).stop())")

    @classmethod
    def for_control_plane(cls, plane: "ControlPlane", *, api_url: str | None = None, port: int | None = None,
                          admin_port: int | None = None, kubeconfig: str | Path | None = None) -> "FaultProxy":
        """Start a proxy in front of ``plane``'s apiserver and write a kubeconfig through it.

        ``api_url``: where the apiserver is reached from here (default ``plane.api_url``; for a
        control plane in a network namespace, the forwarder's ``https://127.0.0.1:Q``).
        ``kubeconfig``: where to write the people's and admin's contexts with the proxy as server
        (default ``<state>/faultproxy/kubeconfig``); :attr:`kubeconfig` names it afterwards.
        """
        proxy = cls(plane.state_dir, port=port, admin_port=admin_port)
        proxy._refuse_stale()  # before its certs are made anew under the running one
        pki = plane.pki
        serving = pki.issue_serving_cert(SERVING_CERT_STEM, "veza-sandbox-fault-proxy", [LOOPBACK], ["localhost"])
        front = pki.issue_front_proxy_client_cert(FRONT_PROXY_CERT_STEM)
        proxy.start(api_url or plane.api_url, ProxyCredentials(
            cluster_ca=pki.ca.cert, serving_cert=serving.cert, serving_key=serving.key,
            front_proxy_cert=front.cert, front_proxy_key=front.key))
        if kubeconfig is not None:
            proxy.kubeconfig = Path(kubeconfig)
        try:
            plane.write_kubeconfig(proxy.kubeconfig, server=proxy.url)
        except BaseException:
            proxy.stop()
            raise
        return proxy

    @classmethod
    def for_cluster(cls, cluster: Any, **options: Any) -> "FaultProxy":
        """:meth:`for_control_plane` for a started :class:`~runbooks_sandbox.cluster.SandboxCluster`:
        upstream is the host's way in (the server of its kubeconfig), contexts and namespaces its own."""
        doc = yaml.safe_load(Path(cluster.kubeconfig).read_text())
        api_url = doc["clusters"][0]["cluster"]["server"]
        return cls.for_control_plane(cluster.control_plane(), api_url=api_url, **options)

    # -- stop ---------------------------------------------------------------------------------
    def stop(self, grace: float = 5.0) -> bool:
        """SIGTERM the proxy (if it is still ours), wait for its ports, remove its token, config and
        kubeconfig (the log stays). Idempotent; True when it was running."""
        was_running = self.running_pid() is not None
        status = self.status()
        if not self.pid_file.stop(grace=grace):
            raise ServerError(f"fault proxy: pid {self.pid_file.read()} would not stop; see {self.log_path}")
        bound = [int(p) for p in (status.get("port"), status.get("admin_port")) if p]
        still = [p for p in bound if not wait_port_closed(p, LOOPBACK, timeout=5.0)]
        if still:
            raise ServerError(f"fault proxy: stopped, but 127.0.0.1:{still[0]} is still bound")
        for path in (self.status_path, self.config_path, self.token_path, self.kubeconfig):
            path.unlink(missing_ok=True)
        return was_running

    # -- status and addresses -----------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """The process's report: pid, ready, port, admin_port, upstream (no secrets)."""
        try:
            return dict(json.loads(self.status_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _recorded(self, key: str) -> int:
        value = self.status().get(key)
        if not value:
            raise ServerError(f"fault proxy of {self.state_dir} is not running (no {key} recorded)")
        return int(value)

    @property
    def url(self) -> str:
        """``https://127.0.0.1:<port>``: the server to give kubectl and the runbooks."""
        return f"https://{LOOPBACK}:{self._recorded('port')}"

    @property
    def admin_url(self) -> str:
        return f"http://{LOOPBACK}:{self._recorded('admin_port')}"

    # -- faults (through the admin endpoint) ----------------------------------------------------
    def faults(self) -> dict[str, Any]:
        """The faults in force and the counters: refused, writes_failed, writes_left."""
        return self._admin("GET")

    def set_faults(self, settings: FaultSettings | None = None, **fields: Any) -> dict[str, Any]:
        """Put faults in force (``settings``, or its fields by name: ``error_rate=1.0``); an omitted
        field is no fault. Returns what is in force."""
        settings = settings or FaultSettings(**fields)
        return self._admin("PUT", asdict(settings))

    def clear_faults(self) -> dict[str, Any]:
        return self._admin("DELETE")

    def _admin(self, method: str, doc: dict[str, Any] | None = None) -> dict[str, Any]:
        port = self._recorded("admin_port")  # "not running" before "no token"
        try:
            token = self.token_path.read_text().strip()
        except OSError as e:
            raise ServerError(f"fault proxy: no admin token in {self.dir} (is it running?)") from e
        body = json.dumps(doc).encode() if doc is not None else None
        # http.client, not urllib: a proxy set in the environment must not see the token.
        connection = http.client.HTTPConnection(LOOPBACK, port, timeout=10)
        try:
            connection.request(method, "/faults", body=body, headers={
                "Authorization": f"Bearer {token}", "Content-Type": "application/json"})
            response = connection.getresponse()
            answer = response.read()
        except OSError as e:
            raise ServerError(f"fault proxy admin at {self.admin_url}: {e}") from e
        finally:
            connection.close()
        if response.status != 200:
            raise ServerError(f"fault proxy admin: {method} /faults answered {response.status}: "
                              f"{answer.decode(errors='replace')}")
        return dict(json.loads(answer))


def _write_json_private(path: Path, doc: dict[str, Any]) -> None:
    """0600 from the first byte, through a rename (the process never reads half a file)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        json.dump(doc, out, indent=1)
    os.replace(tmp, path)
