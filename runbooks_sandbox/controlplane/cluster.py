"""The real Kubernetes control plane for the sandbox: etcd, kube-apiserver, controller manager, scheduler.

``ControlPlane(state_dir).start()`` checks the binaries ``make controlplane`` built (before
anything else), makes a fresh PKI, token file and kubeconfigs under ``<state>/controlplane``,
then starts, each on a free port with its log and PID file there (flags: :mod:`.flags`):

1. etcd (client and peer URLs on 127.0.0.1), ready when ``/health`` says so;
2. kube-apiserver (secure port only, on ``host``), ready when ``/readyz`` answers 200: its
   RBAC bootstrap roles exist from then on;
3. kube-controller-manager and kube-scheduler, then the Veza namespaces and RBAC (:mod:`.people`)
   are applied; ready when the scheduler's /healthz answers and the ``default`` ServiceAccount
   exists in ``default`` and in every Veza namespace (the controller manager's /healthz is green
   ~5 s before its controllers run, and no pod can be created in a namespace before its
   ``default`` ServiceAccount exists).

``stop()`` stops the apiserver first, then the controller manager and scheduler, then etcd (an
apiserver whose etcd is gone hangs instead of exiting), waits until every port is free, and
removes etcd's data, the PKI, tokens and kubeconfigs (the logs stay, for a post-mortem). It
works from a fresh instance on the same state directory, after the creating process died, and
after ``kill -9`` of everything.

There are no nodes: a Deployment gets its ReplicaSet and Pods, which stay Pending
(Unschedulable). The node agent that will run them must, besides registering its Node, renew a
Lease named after the node in ``kube-node-lease`` every few seconds: without it the node
lifecycle controller marks the Node NotReady and taints it (``node.kubernetes.io/unreachable``)
about 50 s after the last renewal, and evicts its pods. It must serve the kubelet API over HTTPS
with a cert from :meth:`ControlPlane.issue_kubelet_serving_cert` naming the IP it reports as its
InternalIP, on the port it reports in ``status.daemonEndpoints.kubeletEndpoint``: the apiserver
connects there (``kubectl logs``) as ``kube-apiserver-kubelet-client`` and verifies the cert.
Log noise that means nothing: "The manifest file is empty, ignoring." (controller manager,
scheduler).
"""
from __future__ import annotations

import ipaddress
import json
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from ..servers.ports import (
    LOOPBACK,
    ServerError,
    ServerStartFailed,
    StaleState,
    claim_port,
    log_tail,
    wait_port_closed,
)
from .flags import Layout, component_args, marks
from .people import (
    ADMIN_CONTEXT,
    DEFAULT_NAMESPACES,
    PEOPLE,
    read_token_file,
    rbac_manifests,
    write_component_kubeconfig,
    write_kubeconfig,
    write_token_file,
)
from .pki import CONTROLLER_MANAGER_USER, KUBELET_CLIENT_USER, SCHEDULER_USER, CertPair, Pki, service_ip
from .probes import AdminApi, etcd_healthy, healthz_ok
from .process import Component, Network, netns_exists, rss_bytes
from .versions import binaries, bin_dir as default_bin_dir, read_versions

__all__ = ["ControlPlane", "COMPONENTS", "bootstrap_manifests"]

#: The processes, in start order.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
_STOP_ORDER: tuple[tuple[str, ...], ...] = (
    ("kube-apiserver",), ("kube-controller-manager", "kube-scheduler"), ("etcd",))
STATE_FILE = "controlplane.json"
_PORT_NAMES = ("etcd_client", "etcd_peer", "apiserver", "controller_manager", "scheduler")


def bootstrap_manifests(namespaces: Sequence[str] = DEFAULT_NAMESPACES) -> list[dict[str, Any]]:
    """What ``start()`` applies once the apiserver is ready: the people's namespaces and RBAC,
    and the apiserver's rights at kubelets (its client cert is a plain user, bound to the
    built-in ``system:kubelet-api-admin`` rather than made a system:masters member)."""
    return [*rbac_manifests(namespaces), {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRoleBinding",
        "metadata": {"name": "veza:kube-apiserver-kubelet-client"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                    "name": "system:kubelet-api-admin"},
        "subjects": [{"kind": "User", "apiGroup": "rbac.authorization.k8s.io", "name": KUBELET_CLIENT_USER}],
    }]


def _url(host: str, port: int) -> str:
    return f"https://[{host}]:{port}" if ":" in host else f"https://{host}:{port}"


def _is_ip(value: str) -> bool:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        return False
    return True


class ControlPlane:
    """The control plane whose files live in ``<state_dir>/controlplane``.

    ``host``: the apiserver's bind and advertise address (an IP; inside ``netns`` when given).
    Not loopback: the ``kubernetes`` Service then gets it as its endpoint (the apiserver refuses
    a loopback one). ``apiserver_port`` None picks a free one, else it must be free. The other
    ports (etcd's two, the controller manager's and scheduler's secure ports) are always picked
    free on 127.0.0.1.
    ``netns``: the name of a network namespace (``ip netns add``) every process runs in; our own
    readiness and port checks run there too. The kubeconfig's server is then reachable only from
    inside it: :meth:`write_kubeconfig` writes one for another address (a forwarder's).
    ``namespaces``: the Veza namespaces made at start and bound to the people's roles.
    ``bin_dir`` None: the folder ``make controlplane`` builds into.
    ``extra_sans``: more IPs or names for the apiserver's serving cert.
    ``current_context``: the kubeconfig's (alice, bob, carol or sandbox-admin).
    ``per_controller_credentials``: each controller acts as its own ServiceAccount in kube-system
    (``--use-service-account-credentials``, as kubeadm clusters run: the pods of a ReplicaSet are
    created by ``system:serviceaccount:kube-system:replicaset-controller``). Its cost is the
    controller manager's start: it makes each controller's ServiceAccount and token one after the
    other, ~6 s until its controllers run here against ~2 s with False (one identity for all).
    """

    def __init__(self, state_dir: Path | str, *, host: str = LOOPBACK, apiserver_port: int | None = None,
                 service_cidr: str = "10.96.0.0/16", netns: str | None = None,
                 namespaces: Sequence[str] = DEFAULT_NAMESPACES, bin_dir: Path | str | None = None,
                 extra_sans: Iterable[str] = (), current_context: str = ADMIN_CONTEXT,
                 per_controller_credentials: bool = True, start_timeout: float = 120.0) -> None:
        if not _is_ip(host):
            raise ValueError(f"host must be an IP address (the apiserver binds and advertises it), not {host!r}")
        ipaddress.ip_network(service_cidr, strict=False)  # ValueError now for a typo
        contexts = [person.name for person in PEOPLE] + [ADMIN_CONTEXT]
        if current_context not in contexts:
            raise ValueError(f"current_context must be one of {', '.join(contexts)}, not {current_context!r}")
        self.state_dir = Path(state_dir).resolve()  # marks in command lines are absolute paths
        self.home = self.state_dir / "controlplane"
        self.layout = Layout(self.home)
        self.host, self.apiserver_port, self.service_cidr, self.netns = host, apiserver_port, service_cidr, netns
        self.namespaces = tuple(namespaces)
        self.bin_dir = Path(bin_dir) if bin_dir is not None else None
        self.extra_sans = tuple(extra_sans)
        self.current_context = current_context
        self.per_controller_credentials = per_controller_credentials
        self.start_timeout = start_timeout
        self.pki: Pki = self.layout.pki
        self._components: dict[str, Component] = {}
        # What an earlier start recorded (maybe by another process): stop() and status() use it.
        recorded = self._read_state()
        self.ports: dict[str, int] = dict(recorded.get("ports") or {})
        self.timings: dict[str, float] = dict(recorded.get("start_seconds") or {})

    # -- paths and addresses -----------------------------------------------------------------
    @property
    def kubeconfig(self) -> Path:
        """The people's and the admin's kubeconfig (0600): contexts alice, bob, carol, sandbox-admin."""
        return self.layout.kubeconfig

    @property
    def token_file(self) -> Path:
        return self.layout.token_file

    @property
    def api_url(self) -> str:
        """``https://<host>:<port>`` of the apiserver (ServerError before a start recorded a port)."""
        recorded = self._read_state()
        port = (recorded.get("ports") or self.ports).get("apiserver")
        if port is None:
            raise ServerError("control plane: not started, no apiserver address yet")
        return _url(recorded.get("host", self.host), port)

    def log_path(self, component: str) -> Path:
        return self.layout.log_path(component)

    def tokens(self) -> dict[str, str]:
        """Person -> bearer token (for a caller that writes its own credentials; never log them)."""
        return read_token_file(self.token_file)

    @property
    def _state_path(self) -> Path:
        return self.home / STATE_FILE

    def _read_state(self) -> dict[str, Any]:
        try:
            return dict(json.loads(self._state_path.read_text()))
        except (OSError, ValueError):
            return {}

    def _write_state(self, **changes: Any) -> None:
        state = {**self._read_state(), **changes}
        tmp = self._state_path.with_name(f".{STATE_FILE}.tmp")
        tmp.write_text(json.dumps(state, indent=1))
        os.replace(tmp, self._state_path)

    def _component(self, name: str, binary: str, netns: str | None, args: Sequence[str] = ()) -> Component:
        return Component(name=name, binary=binary, args=list(args), log_path=self.layout.log_path(name),
                         pid_path=self.layout.pid_path(name), mark=marks(self.layout)[name], netns=netns)

    def _recorded_components(self) -> dict[str, Component]:
        """The components as this instance started them, or as the state file recorded them."""
        if self._components:
            return self._components
        state = self._read_state()
        folder = Path(state.get("bin_dir") or self.bin_dir or default_bin_dir(read_versions()))
        netns = state.get("netns", self.netns)
        return {name: self._component(name, str(folder / name), netns) for name in COMPONENTS}

    # -- start --------------------------------------------------------------------------------
    def start(self) -> "ControlPlane":
        """Start everything (module doc) and return self; on any failure stop what started and raise."""
        bins = binaries(self.bin_dir)  # ControlPlaneNotBuilt before anything is touched
        network = Network(self.netns)
        self._refuse_stale()
        begun = time.monotonic()
        timings: dict[str, float] = {}
        try:
            self._prepare_home()
            network.ensure_loopback()
            self.ports = network.run(self._claim_ports)
            t = time.monotonic()
            self._write_credentials()
            timings["credentials"] = time.monotonic() - t
            args = component_args(self.layout, self.ports, host=self.host, service_cidr=self.service_cidr,
                                  per_controller_credentials=self.per_controller_credentials)
            self._components = {name: self._component(name, bins.path(name), self.netns, argv)
                                for name, argv in args.items()}
            self._write_state(host=self.host, netns=self.netns, ports=self.ports, bin_dir=str(bins.bin_dir),
                              versions={"kubernetes": bins.versions.kubernetes, "etcd": bins.versions.etcd},
                              namespaces=list(self.namespaces), service_cidr=self.service_cidr,
                              kubernetes_service_ip=service_ip(self.service_cidr),
                              bound=self._bound_ports(), started_at=time.time(), start_seconds={})
            network.run(self._start_processes, timings, begun + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        timings["total"] = time.monotonic() - begun
        self.timings = {name: round(seconds, 2) for name, seconds in timings.items()}
        self._write_state(start_seconds=self.timings)
        return self

    def _refuse_stale(self) -> None:
        running = {name: pid for name, c in self._recorded_components().items() if (pid := c.running_pid())}
        if running:
            listed = ", ".join(f"{name} (pid {pid})" for name, pid in running.items())
            raise StaleState(
                f"control plane: {listed} from an earlier run still run on {self.home}; stop them first "
                f"(`runbook sandbox down`, or ControlPlane({str(self.state_dir)!r}).stop())")
        self._components = {}

    def _prepare_home(self) -> None:
        """A clean home (0700): whatever a crashed run left, but its logs, is discarded."""
        self._remove_files()
        for folder in (self.home, self.home / "logs", *self.layout.private_dirs):
            folder.mkdir(parents=True, exist_ok=True)
            os.chmod(folder, 0o700)  # etcd insists on 0700 for its data dir
        for name in COMPONENTS:
            self.log_path(name).unlink(missing_ok=True)

    def _claim_ports(self) -> dict[str, int]:
        """Five distinct free ports (run inside the namespace: that is where they must be free)."""
        ports = {"apiserver": claim_port(self.apiserver_port, "kube-apiserver", self.host)}
        for name in _PORT_NAMES:
            for _ in range(50):
                if name in ports:
                    break
                port = claim_port(None, name, LOOPBACK)
                if port not in ports.values():
                    ports[name] = port
            if name not in ports:
                raise ServerError(f"control plane: no free port for {name}")
        return {name: ports[name] for name in _PORT_NAMES}

    def _bound_ports(self) -> list[tuple[str, int]]:
        return [(self.host if name == "apiserver" else LOOPBACK, port) for name, port in self.ports.items()]

    def _write_credentials(self) -> None:
        self.pki = Pki.create(self.layout.pki.dir, service_cidr=self.service_cidr, host=self.host,
                              extra_ips=[s for s in self.extra_sans if _is_ip(s)],
                              extra_hosts=[s for s in self.extra_sans if not _is_ip(s)])
        write_token_file(self.token_file, PEOPLE)
        server = _url(self.host, self.ports["apiserver"])
        self.write_kubeconfig(self.kubeconfig, server=server)
        # The components reach the apiserver on the same address (they share its namespace).
        for name, pair, user in (("controller-manager", self.pki.controller_manager, CONTROLLER_MANAGER_USER),
                                 ("scheduler", self.pki.scheduler, SCHEDULER_USER)):
            write_component_kubeconfig(self.layout.component_kubeconfig(name), server=server,
                                       ca_cert=self.pki.ca.cert, client_cert=pair.cert, client_key=pair.key,
                                       user=user)

    def _start_processes(self, timings: dict[str, float], deadline: float) -> None:
        """etcd, apiserver, then controller manager and scheduler with RBAC (in the namespace's thread)."""
        c = self._components
        api = AdminApi(_url(self.host, self.ports["apiserver"]), self.pki.ca.cert, self.pki.admin)
        try:
            t = time.monotonic()
            c["etcd"].spawn()
            self._wait([c["etcd"]], lambda: etcd_healthy(self.ports["etcd_client"]), "etcd /health", deadline)
            timings["etcd"] = time.monotonic() - t
            t = time.monotonic()
            c["kube-apiserver"].spawn()
            self._wait([c["etcd"], c["kube-apiserver"]], lambda: api.ok("/readyz"), "kube-apiserver /readyz",
                       deadline)
            timings["kube-apiserver"] = time.monotonic() - t
            t = time.monotonic()
            c["kube-controller-manager"].spawn()
            c["kube-scheduler"].spawn()
            t_rbac = time.monotonic()
            for obj in bootstrap_manifests(self.namespaces):
                api.create_or_replace(obj)
            timings["rbac"] = time.monotonic() - t_rbac
            everyone = list(c.values())
            self._wait(everyone, lambda: healthz_ok(self.ports["scheduler"]), "kube-scheduler /healthz", deadline)
            timings["kube-scheduler"] = time.monotonic() - t
            accounts = [f"/api/v1/namespaces/{ns}/serviceaccounts/default" for ns in ("default", *self.namespaces)]
            self._wait(everyone, lambda: all(api.ok(path) for path in accounts),
                       "the controller manager's first ServiceAccounts (default/default and the Veza namespaces')",
                       deadline)
            timings["kube-controller-manager"] = time.monotonic() - t
        finally:
            api.close()

    def _wait(self, watched: list[Component], ready: Callable[[], bool], what: str, deadline: float) -> None:
        """Poll ``ready`` until True; fail at once when a watched process exits, or at the deadline."""
        last_error: Exception | None = None
        while True:
            for component in watched:
                code = component.exit_code()
                if code is not None:
                    raise ServerStartFailed(
                        f"{component.name} exited with code {code} at start: {log_tail(component.log_path)} "
                        f"(see {component.log_path})")
            try:
                if ready():
                    return
            except Exception as e:  # refused while it binds, 403/500 while it bootstraps
                last_error = e
            if time.monotonic() > deadline:
                tails = "; ".join(f"{c.name}: {log_tail(c.log_path, 2)}" for c in watched[-2:])
                raise ServerStartFailed(
                    f"control plane: waited {self.start_timeout:.0f} s for {what}"
                    f"{f' ({type(last_error).__name__}: {last_error})' if last_error else ''}; {tails}; "
                    f"logs in {self.home / 'logs'}")
            time.sleep(0.1)

    def apply_rbac(self) -> None:
        """Apply :func:`bootstrap_manifests` again (start() does): after a namespace was deleted and
        made anew, say (its RoleBindings went with it)."""
        def apply() -> None:
            api = AdminApi(self.api_url, self.pki.ca.cert, self.pki.admin)
            try:
                for obj in bootstrap_manifests(self.namespaces):
                    api.create_or_replace(obj)
            finally:
                api.close()

        Network(self._read_state().get("netns", self.netns)).run(apply)

    # -- stop ---------------------------------------------------------------------------------
    def stop(self, grace: float = 10.0) -> list[str]:
        """Stop what a start recorded on this state directory; wait for its ports; remove its files.

        Idempotent. Returns the components that were running. Raises ServerError when a process
        cannot be stopped or a port stays bound (the files are then kept, so that a second
        stop() can try again).
        """
        state = self._read_state()
        components = self._recorded_components()
        stopped = [name for name, c in components.items() if c.running_pid() is not None]
        failed: list[str] = []
        for group in _STOP_ORDER:
            members = [components[name] for name in group]
            with ThreadPoolExecutor(max_workers=len(members)) as pool:
                results = list(pool.map(lambda c: c.stop(grace), members))
            failed += [f"{c.name} (pid {c.pidfile.read()})" for c, gone in zip(members, results) if not gone]
        bound = self._still_bound(state)
        if failed or bound:
            raise ServerError(
                f"control plane: could not stop {', '.join(failed) or 'every process'}"
                f"{'; still bound: ' + ', '.join(f'{h}:{p}' for h, p in bound) if bound else ''}; "
                f"see {self.home / 'logs'}")
        self._components = {}
        self._remove_files()
        return stopped

    def _still_bound(self, state: dict[str, Any]) -> list[tuple[str, int]]:
        pairs = [(str(h), int(p)) for h, p in state.get("bound") or []]
        netns = state.get("netns")
        if not pairs or (netns and not netns_exists(netns)):
            return []  # a deleted namespace's sockets went with its last process
        return Network(netns).run(lambda: [(h, p) for h, p in pairs if not wait_port_closed(p, h, timeout=10.0)])

    def _remove_files(self) -> None:
        """Everything but the logs: etcd's data, PKI, tokens, kubeconfigs, PID and state files."""
        for folder in self.layout.private_dirs:
            shutil.rmtree(folder, ignore_errors=True)
        for path in (self.token_file, self.kubeconfig, self._state_path):
            path.unlink(missing_ok=True)

    # -- status -------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """What runs where (no secrets): per component pid, running, port, RSS, log; start timings."""
        state = self._read_state()
        ports = state.get("ports") or {}
        port_of = {"etcd": ports.get("etcd_client"), "kube-apiserver": ports.get("apiserver"),
                   "kube-controller-manager": ports.get("controller_manager"), "kube-scheduler": ports.get("scheduler")}
        components: dict[str, Any] = {}
        for name, component in self._recorded_components().items():
            pid = component.running_pid()
            components[name] = {"pid": pid, "running": pid is not None, "port": port_of.get(name),
                                "rss_bytes": rss_bytes(pid) if pid else None, "log": str(component.log_path)}
        return {
            "server": "controlplane",
            "running": bool(state) and all(c["running"] for c in components.values()),
            "api_url": self.api_url if ports.get("apiserver") else None,
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig.exists() else None,
            "host": state.get("host"),
            "netns": state.get("netns"),
            "ports": ports,
            "bound": [tuple(pair) for pair in state.get("bound") or []],
            "versions": state.get("versions"),
            "bin_dir": state.get("bin_dir"),
            "namespaces": state.get("namespaces"),
            "kubernetes_service_ip": state.get("kubernetes_service_ip"),
            "components": components,
            "rss_bytes": sum(c["rss_bytes"] or 0 for c in components.values()),
            "start_seconds": state.get("start_seconds") or {},
        }

    # -- credentials for others ----------------------------------------------------------------
    def write_kubeconfig(self, path: Path | str, *, server: str | None = None,
                         current_context: str | None = None) -> Path:
        """The people's and admin's contexts in a file (0600), maybe for another address of the
        apiserver: the host side of a forwarder into the network namespace, say
        (``https://127.0.0.1:Q``; the serving cert names 127.0.0.1, ``host`` and ``extra_sans``)."""
        return write_kubeconfig(Path(path), server=server or self.api_url, ca_cert=self.pki.ca.cert,
                                tokens=self.tokens(), admin_cert=self.pki.admin.cert, admin_key=self.pki.admin.key,
                                namespace=self.namespaces[0] if self.namespaces else None,
                                current_context=current_context or self.current_context)

    def issue_kubelet_serving_cert(self, node_name: str, ips: Iterable[str],
                                   hostnames: Iterable[str] = ()) -> CertPair:
        """A kubelet serving cert of this cluster's CA (see :meth:`.Pki.issue_kubelet_serving_cert`)."""
        return self.pki.issue_kubelet_serving_cert(node_name, ips, hostnames)
