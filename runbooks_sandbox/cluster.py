"""The sandbox's Kubernetes: its network namespace, forwarder and the real control plane, as one thing.

``SandboxCluster(state_dir).start(host_ports)`` makes, in order:

1. the cluster network (:class:`~.network.ClusterNetwork`: one network namespace, pod and
   Service addresses on its ``lo``) and its forwarder process (:class:`~.network.ForwarderProcess`);
2. an outward *mirror* rule for each port of ``host_ports`` (the host's PostgreSQL, Redis and
   OpenBao), so a pod reaches them at the same ``127.0.0.1:P`` URL as the host does. They are put
   in place before anything else listens inside, so no process inside can take their port first;
3. the control plane (:class:`~.controlplane.ControlPlane`) inside the namespace, its apiserver
   on an address of the node range (not loopback: the ``kubernetes`` Service's endpoint is the
   apiserver's address, and loopback is refused there), reached from the host through an inward
   rule at ``https://127.0.0.1:Q``;
4. ``<state>/kubeconfig``: the people's contexts (alice, bob, carol) and ``sandbox-admin``,
   server ``https://127.0.0.1:Q``;
5. the Istio CRDs the Service proxy honours (:func:`~.manifests.istio_crds`), established.

Servers of the sandbox that live inside (the supervisor's endpoints, Prometheus) listen on
:attr:`services_address`, an address of the node range kept for them, never on the namespace's
127.0.0.1 where the mirror rules are; :meth:`expose` gives each an inward rule on the host.

A fault proxy in front of the apiserver (:mod:`.controlplane.faultproxy`, started with
``FaultProxy.for_cluster(cluster)``) lives in the same state directory.

``stop()`` undoes it all, from a fresh instance too (after a crash): a fault proxy, the control
plane, the forwarder, then the namespace, killing by PID whatever is still inside it (only the sandbox's
own processes can be in it).
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

from .controlplane import ADMIN_CONTEXT, ControlPlane
from .manifests import NAMESPACE
from .network import ClusterNetwork
from .network.forward import ForwarderProcess, Rule
from .servers.ports import LOOPBACK

__all__ = ["SandboxCluster", "APISERVER_NODE", "SERVICES_NODE"]

if TYPE_CHECKING:
    from .kube.store import ClusterStore

APISERVER_NODE = "control-plane"  # the apiserver's address in the node range
SERVICES_NODE = "sandbox-services"  # the address the sandbox's own servers listen on inside
APISERVER_RULE = "apiserver"


class SandboxCluster:
    """The Kubernetes of the sandbox in ``state_dir`` (module doc)."""

    def __init__(self, state_dir: str | Path, *, namespaces: Iterable[str] = (NAMESPACE,),
                 current_context: str = ADMIN_CONTEXT) -> None:
        self.state_dir = Path(state_dir).resolve()
        self.network = ClusterNetwork(self.state_dir)
        self.forwarder = ForwarderProcess(self.state_dir)
        self.namespaces = tuple(namespaces)
        self.current_context = current_context
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.timings: dict[str, float] = {}

    # -- addresses ------------------------------------------------------------------------------
    @property
    def apiserver_address(self) -> str:
        return self.network.allocate_node_ip(APISERVER_NODE)  # the same address every time it is asked

    @property
    def services_address(self) -> str:
        """Where the sandbox's servers inside the namespace listen (module doc)."""
        return self.network.allocate_node_ip(SERVICES_NODE)

    def control_plane(self) -> ControlPlane:
        return ControlPlane(self.state_dir, host=self.apiserver_address, netns=self.network.name,
                            namespaces=self.namespaces, extra_sans=(LOOPBACK, "localhost"),
                            current_context=self.current_context)

    # -- start ----------------------------------------------------------------------------------
    def start(self, host_ports: dict[str, int]) -> dict[str, Any]:
        """Network, forwarder, mirrors of ``host_ports`` (name -> port), control plane, kubeconfig.

        Returns what the supervisor and ``sandbox status`` need (no secret). On failure, stops
        what it started and raises.
        """
        began = time.monotonic()
        try:
            self.network.create()
            self.forwarder.start()
            for name, port in host_ports.items():
                self.mirror(name, port)
            self.timings["network"] = round(time.monotonic() - began, 2)
            t = time.monotonic()
            control_plane = self.control_plane().start()
            self.timings["control_plane"] = round(time.monotonic() - t, 2)
            inside_url = control_plane.api_url
            host_port = self.expose(APISERVER_RULE, self.apiserver_address, control_plane.ports["apiserver"])
            api_url = f"https://{LOOPBACK}:{host_port}"
            control_plane.write_kubeconfig(self.kubeconfig, server=api_url)
            t = time.monotonic()
            self._establish_crds()
            self.timings["crds"] = round(time.monotonic() - t, 2)
        except BaseException:
            self.stop()
            raise
        return {"api_url": api_url, "inside_api_url": inside_url, "kubeconfig": str(self.kubeconfig),
                "inside_kubeconfig": str(control_plane.kubeconfig), "netns": self.network.name,
                "services_address": self.services_address, "start_seconds": dict(self.timings)}

    def admin_store(self) -> "ClusterStore":
        """The cluster as its admin, from the host (close it after use)."""
        from .kube.store import ClusterStore

        return ClusterStore.from_kubeconfig(self.kubeconfig, context=ADMIN_CONTEXT)

    def _establish_crds(self, timeout_s: float = 30.0) -> None:
        from .kube.errors import AlreadyExists
        from .kube.resources import CUSTOMRESOURCEDEFINITIONS
        from .manifests import istio_crds

        store = self.admin_store()
        try:
            names = []
            for crd in istio_crds():
                try:
                    store.create(CUSTOMRESOURCEDEFINITIONS, None, crd)
                except AlreadyExists:
                    pass
                names.append(crd["metadata"]["name"])
            deadline = time.monotonic() + timeout_s
            while True:
                waiting = [n for n in names if not _established(store.get(CUSTOMRESOURCEDEFINITIONS, None, n))]
                if not waiting:
                    return
                if time.monotonic() > deadline:
                    from .servers.ports import ServerError

                    raise ServerError(f"CRDs not established after {timeout_s:.0f} s: {', '.join(waiting)}")
                time.sleep(0.1)
        finally:
            store.close()

    def mirror(self, name: str, port: int) -> None:
        """Pods reach the host's ``127.0.0.1:port`` at their own ``127.0.0.1:port`` (module doc)."""
        self.forwarder.add(Rule.outward(f"host-{name}", port))

    def expose(self, name: str, inside_ip: str, inside_port: int) -> int:
        """The host's ``127.0.0.1:Q`` relays to ``inside_ip:inside_port``; returns Q."""
        _, port = self.forwarder.add(Rule.inward(name, inside_ip, inside_port))
        return port

    # -- stop -----------------------------------------------------------------------------------
    def stop(self) -> list[str]:
        """A fault proxy, the control plane, the forwarder, the namespace (and what is left in it). Idempotent."""
        from .controlplane.faultproxy import FaultProxy

        stopped: list[str] = []
        errors: list[str] = []
        try:
            if FaultProxy(self.state_dir).stop():
                stopped.append("fault proxy")
        except Exception as e:  # keep stopping the rest; say what stayed
            errors.append(f"fault proxy: {e}")
        try:
            stopped += self.control_plane_recorded().stop()
        except Exception as e:  # keep stopping the rest; say what stayed
            errors.append(f"control plane: {e}")
        running = self.forwarder.running_pid()  # `stop` is True when none runs: say only what was stopped
        if self.forwarder.stop() and running:
            stopped.append("forwarder")
        if self.network.exists():
            killed = self.network.delete(kill=True)
            stopped += [f"left in the namespace: {line}" for line in killed]
        if errors:
            from .servers.ports import ServerError

            raise ServerError("; ".join(errors))
        return stopped

    def control_plane_recorded(self) -> ControlPlane:
        """The control plane as a start recorded it (stop and status need no address)."""
        return ControlPlane(self.state_dir, netns=self.network.name)

    # -- status ---------------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        control = self.control_plane_recorded().status()
        return {"network": self.network.status() if self.network.exists() else {"exists": False},
                "forwarder": self.forwarder.status(), "control_plane": control,
                "versions": control.get("versions")}


def _established(crd: dict[str, Any]) -> bool:
    conditions = (crd.get("status") or {}).get("conditions") or []
    return any(c.get("type") == "Established" and c.get("status") == "True" for c in conditions)
