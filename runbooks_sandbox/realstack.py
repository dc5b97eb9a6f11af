"""``runbook sandbox up``: the sandbox's platform on the real Kubernetes of :class:`~.cluster.SandboxCluster`.

1. the host ports of OpenBao, Redis and PostgreSQL primary/standby are chosen first, so the
   cluster's forwarder mirrors them inside the network namespace before anything listens there
   (a pod reaches them at the same ``127.0.0.1:P`` as the host);
2. the cluster (network namespace, forwarder, etcd, apiserver, controller manager, scheduler, the
   Istio CRDs), then the fault proxy in front of the apiserver (users' KUBECONFIG is its
   kubeconfig), then the node agent (:mod:`.node`, 2 nodes, inside the namespace);
3. the supervisor (:mod:`.supervisor`) inside the namespace: Service proxy on ClusterIPs,
   pod discovery, load generator, control endpoint, webhook sink, on the cluster's
   ``services_address``, each exposed on the host's 127.0.0.1 by an inward forwarder rule;
   Prometheus inside too (it scrapes pod IPs), exposed the same way;
4. the Veza manifests through the fault proxy, then the wait for available Deployments and
   Prometheus' ``up == 1`` for every pod; ``<state>/env`` (:meth:`.stack.Sandbox.env_values`), with
   ``CLUSTER_REACH=apiserver`` (checks reach pods through the API server's proxy: pod IPs are
   inside the namespace).

A DR region (``sandbox up --dr-region-of``) is the same minus the
database and the manifests (:meth:`RealKubernetes.start_dr_region`): a cluster of its own,
OpenBao replicated from the primary's, and the port its recovered database will listen on
chosen and mirrored at step 1 (RESTORE_PORT in its env).

``stop()`` (from ``sandbox down``, after the supervisor and the servers) stops the node agent (its
pods), then the cluster: fault proxy, control plane, forwarder, namespace.
"""
from __future__ import annotations

import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterable

from .manifests import NAMESPACE, expected_pods

__all__ = ["RealKubernetes"]

NODES = 2
RESTORED_DATABASE = "restored-database"  # a DR region's: the server the region drill recovers there


class RealKubernetes:
    """The real-Kubernetes parts of the sandbox ``box`` (module doc)."""

    def __init__(self, box: Any) -> None:  # a stack.Sandbox (not imported: stack imports this module)
        from .cluster import SandboxCluster

        self.box = box
        self.state_dir = box.state_dir
        self.cluster = SandboxCluster(self.state_dir)
        self.timings: dict[str, float] = {}

    # -- up --------------------------------------------------------------------------------------
    def choose_ports(self, names: tuple[str, ...] = ("redis", "postgres-primary", "postgres-standby"),
                     ) -> dict[str, int]:
        """The host servers' ports (OpenBao's and ``names``'), chosen before the cluster so its
        forwarder mirrors them."""
        from .servers.ports import free_port, free_port_pair

        ports: dict[str, int] = {"openbao": free_port_pair()}
        for name in names:
            port = free_port()
            while port in ports.values() or port == ports["openbao"] + 1:
                port = free_port()
            ports[name] = port
        return ports

    def start_cluster(self, host_ports: dict[str, int], say: Callable[[str], None]) -> dict[str, Any]:
        """Cluster, fault proxy, node agent, supervisor inside; returns the supervisor's status (host view)."""
        from .controlplane.faultproxy import FaultProxy
        from .node import AgentSettings, NodeAgentProcess, node_names

        t = time.monotonic()
        info = self.cluster.start(host_ports)
        self.timings.update({f"cluster_{k}": v for k, v in info["start_seconds"].items()})
        self.timings["cluster"] = round(time.monotonic() - t, 2)
        versions = self.cluster.control_plane_recorded().status().get("versions")
        say(f"control plane {versions} in {self.timings['cluster']:.1f} s (inside {info['netns']})")
        t = time.monotonic()
        proxy = FaultProxy.for_cluster(self.cluster)
        self.timings["fault_proxy"] = round(time.monotonic() - t, 2)
        self.box._record(faultproxy={"pid": proxy.status().get("pid"), "url": proxy.url})
        t = time.monotonic()
        agent = NodeAgentProcess(self.state_dir).start(AgentSettings(nodes=tuple(node_names(NODES))))
        self.timings["node_agent"] = round(time.monotonic() - t, 2)
        self.box._record(node_agent={"pid": agent.get("pid"), "log": agent.get("log")})
        say(f"fault proxy {proxy.url}; node agent (pid {agent.get('pid')}): {', '.join(agent.get('nodes', {}))}")
        t = time.monotonic()
        supervisor = self._start_supervisor(info["inside_kubeconfig"])
        self.timings["supervisor"] = round(time.monotonic() - t, 2)
        return {**supervisor, "kubeconfig": str(proxy.kubeconfig), "api_url": proxy.url,
                "versions": versions, "netns": info["netns"]}

    def _start_supervisor(self, inside_kubeconfig: str) -> dict[str, Any]:
        """The supervisor inside the namespace; its endpoints exposed on the host's 127.0.0.1."""
        argv = self.cluster.network.exec_argv(
            [sys.executable, "-m", "runbooks_sandbox.stack", "serve", "--state-dir", str(self.state_dir),
             "--load-rate", f"{self.box.load_rate:g}", "--kubeconfig", inside_kubeconfig,
             *(["--entry-point-off"] if self.box.dr_region_of else [])])  # a DR region: no users yet
        status = self.box._start_supervisor(argv=argv)
        inside = self.cluster.services_address
        host = {}
        for name in ("sd", "traffic", "control", "notify"):
            host[name] = self.cluster.expose(f"supervisor-{name}", inside, int(status[f"{name}_port"]))
        view = {**status, "inside": {k: status[k] for k in ("sd_url", "control_url", "traffic_url",
                                                            "notify_base_url")},
                "traffic_url": f"http://127.0.0.1:{host['traffic']}/traffic", "traffic_port": host["traffic"],
                "control_url": f"http://127.0.0.1:{host['control']}", "control_port": host["control"],
                "notify_base_url": f"http://127.0.0.1:{host['notify']}", "notify_port": host["notify"],
                "sd_url": f"http://127.0.0.1:{host['sd']}/", "sd_port": host["sd"]}
        return view

    def prometheus(self, supervisor: dict[str, Any], port: int | None) -> Any:
        """Prometheus as it runs here: inside the namespace on the services address, reached from
        the host at ``127.0.0.1:port`` (the forwarder's rule on the same port)."""
        from .servers import PrometheusServer
        from .tokens import CONTROL_TOKEN, token_path

        inside = supervisor["inside"]
        return PrometheusServer(self.state_dir, sd_url=inside["sd_url"], port=port,
                                static_jobs={"redis": f"{inside['control_url']}/redis/metrics"},
                                static_jobs_token_file=str(token_path(self.state_dir, CONTROL_TOKEN)),
                                exec_prefix=tuple(self.cluster.network.exec_argv([])),
                                listen_host=self.cluster.services_address)

    def start_prometheus(self, supervisor: dict[str, Any]) -> Any:
        """Prometheus inside the namespace (it scrapes pod IPs), on the host at the same port."""
        from .network.forward import Rule
        from .servers.ports import free_port

        t = time.monotonic()
        port = free_port()  # the same number on the host (the forwarder's rule) and inside (Prometheus)
        self.cluster.forwarder.add(Rule.inward("prometheus", self.cluster.services_address, port, host_port=port))
        server = self.prometheus(supervisor, port).start()
        self.timings["prometheus"] = round(time.monotonic() - t, 2)
        self.box._record(prometheus={"pid": server.status()["pid"], "port": server.port, "url": server.url})
        return server

    def start_all(self, wait: bool, progress: Any, timeout_s: float, say: Callable[[str], None]) -> dict[str, str]:
        """Everything of the real-Kubernetes sandbox (module doc); returns the env values."""
        from .manifests import apply_veza, wait_available
        from .servers.people import seed_people

        box = self.box
        box.ports = ports = self.choose_ports()
        mirrored = {"openbao": ports["openbao"], "redis": ports["redis"],
                    "postgres-primary": ports["postgres-primary"], "postgres-standby": ports["postgres-standby"]}
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="sandbox-up") as pool:
            cluster_f = pool.submit(self.start_cluster, mirrored, say)
            openbao_f = pool.submit(box._start_openbao)
            postgres_f = pool.submit(lambda: box._start_postgres(openbao_f.result()))
            redis = pool.submit(box._start_redis).result()
            postgres, openbao = postgres_f.result(), openbao_f.result()
            say(f"PostgreSQL primary :{postgres.primary_port}, standby :{postgres.standby_port}; "
                f"Redis :{redis.port}; OpenBao {openbao.address}")
            openbao.seed(("sandbox", "staging", "production"), database_urls={"sandbox": postgres.primary_dsn},
                         redis_urls={"sandbox": redis.url})
            seed_people(openbao.client(), self.state_dir)
            supervisor = cluster_f.result()
        box._record(supervisor={**supervisor, "log": str(box.supervisor_log)})
        box.write_supervisor_status(supervisor)
        prometheus_f = ThreadPoolExecutor(max_workers=1).submit(self.start_prometheus, supervisor)
        t = time.monotonic()
        apply_veza(supervisor["kubeconfig"], box.home, openbao.address, openbao.root_token or "")
        say(f"applied the Veza manifests to namespace {NAMESPACE} (through the fault proxy)")
        prometheus = prometheus_f.result()
        say(f"Prometheus {prometheus.url} (inside {self.cluster.services_address})")
        values = box.env_values(supervisor, openbao, prometheus, redis, postgres)
        values.update(CLUSTER_REACH="apiserver")
        self.mirror_env_endpoints([*values.values(), supervisor["api_url"]], already=set(mirrored.values()))
        if wait:
            deadline = time.monotonic() + timeout_s
            wait_available(supervisor["kubeconfig"], NAMESPACE, deadline, progress)
            self.timings["deployments_available"] = round(time.monotonic() - t, 2)
            say("every deployment available")
            pods = expected_pods(box.home)
            prometheus.wait_for_targets_up(min_targets=pods, timeout=max(5.0, deadline - time.monotonic()))
            self.timings["prometheus_targets_up"] = round(time.monotonic() - t, 2)
            say(f"Prometheus scrapes all {pods} pods (up == 1)")
        box._record_meta(kubernetes_timings=dict(self.timings), versions=supervisor.get("versions"))
        box._write_env(values)
        return values

    def mirror_env_endpoints(self, urls: Iterable[str], already: set[int]) -> list[int]:
        """Every host endpoint of ``urls`` (the env file's values and the fault proxy the
        kubeconfig points at: Prometheus, the traffic report, the webhook sink) answers inside the
        namespace at the same ``127.0.0.1:P`` too: a scheduled runbook (a CronJob's pod, run by the
        node agent inside) reads the same env file as the operator's shell and must reach the same
        addresses. Nothing inside listens on the namespace's 127.0.0.1 but these mirrors (cluster.py)."""
        from urllib.parse import urlsplit

        ports = []
        for url in urls:
            parts = urlsplit(url) if "://" in url else None
            if parts and parts.hostname == "127.0.0.1" and parts.port and parts.port not in already | set(ports):
                ports.append(parts.port)
        for port in ports:
            self.cluster.mirror(f"env-{port}", port)
        return ports

    def start_dr_region(self, primary_dir: Path, source: dict[str, str], say: Callable[[str], None]) -> dict[str, str]:
        """A DR region (``stack.Sandbox._start_dr_region`` says what it holds) on a cluster of its own.

        The region's own network namespace and control plane (empty of Veza objects), fault
        proxy, node agent, supervisor with the entry point off, Prometheus inside; OpenBao and
        Redis on the host, mirrored inside, OpenBao replicated from the primary's. The database
        the drill will recover here listens on the host too, so its port is chosen now and
        mirrored before the cluster starts, like the others (a pod then reaches it at
        ``127.0.0.1:P``): RESTORE_PORT in the env, which the sandbox-dr profile hands the
        library as ``backups.restore_port``. Returns the env values.
        """
        box = self.box
        box.ports = ports = self.choose_ports(("redis", RESTORED_DATABASE))
        box._record_meta(restore_port=ports[RESTORED_DATABASE])  # `down` waits for it to be free
        with ThreadPoolExecutor(max_workers=3, thread_name_prefix="sandbox-dr-up") as pool:
            cluster_f = pool.submit(self.start_cluster, ports, say)
            openbao_f = pool.submit(box._start_openbao)
            redis = pool.submit(box._start_redis).result()
            openbao = openbao_f.result()
            box.replicate_vault(openbao, redis, primary_dir, source, say)
            supervisor = cluster_f.result()
        box._record(supervisor={**supervisor, "log": str(box.supervisor_log)})
        box.write_supervisor_status(supervisor)
        prometheus = self.start_prometheus(supervisor)
        say(f"Prometheus {prometheus.url} (inside {self.cluster.services_address}); the recovered database "
            f"will listen on :{ports[RESTORED_DATABASE]} (mirrored inside)")
        values = box.dr_env_values(supervisor, openbao, prometheus, redis, primary_dir, source)
        values.update(CLUSTER_REACH="apiserver", RESTORE_PORT=str(ports[RESTORED_DATABASE]))
        box._record_meta(kubernetes_timings=dict(self.timings), versions=supervisor.get("versions"))
        box._write_env(values)
        return values

    # -- down ------------------------------------------------------------------------------------
    def stop(self, say: Callable[[str], None]) -> list[str]:
        """The node agent (its pods), then the cluster (fault proxy, control plane, forwarder, namespace)."""
        from .node import NodeAgentProcess

        stopped: list[str] = []
        agent = NodeAgentProcess(self.state_dir)
        running = agent.status().get("pid")  # `stop` is True when none runs: say only what was stopped
        if agent.stop() and running:
            stopped.append("node agent")
        say("stopping the cluster (fault proxy, control plane, forwarder, network namespace)")
        stopped += self.cluster.stop()
        return stopped

    # -- status ------------------------------------------------------------------------------------
    def control_plane_pids(self) -> dict[str, int]:
        """etcd, kube-apiserver, ... and the forwarder -> PID, for the memory report."""
        status = self.cluster.status()
        pids = {name: part["pid"] for name, part in (status["control_plane"].get("components") or {}).items()
                if part.get("pid")}
        if (status.get("forwarder") or {}).get("pid"):
            pids["forwarder"] = status["forwarder"]["pid"]
        return pids

    def summary(self) -> dict[str, Any]:
        """Versions and components of the real Kubernetes (for ``sandbox status``)."""
        from .controlplane.faultproxy import FaultProxy
        from .node import NodeAgentProcess

        cluster = self.cluster.status()
        control = cluster["control_plane"]
        components: dict[str, Any] = {
            name: {"pid": part.get("pid"), "where": f":{part['port']} (inside)" if part.get("port") else "",
                   "rss_mb": round((part.get("rss_bytes") or 0) / 2**20, 1)}
            for name, part in (control.get("components") or {}).items()}
        proxy = FaultProxy(self.state_dir).status()
        components["fault-proxy"] = {"pid": proxy.get("pid"),
                                     "where": f"https://127.0.0.1:{proxy['port']}" if proxy.get("port") else ""}
        agent = NodeAgentProcess(self.state_dir).status()
        components["node-agent"] = {"pid": agent.get("pid"), "where": ", ".join(agent.get("nodes") or {})}
        forwarder = cluster.get("forwarder") or {}
        components["forwarder"] = {"pid": forwarder.get("pid"), "where": ""}
        return {"versions": control.get("versions") or self.box.state().get("versions"),
                "netns": self.cluster.network.name if self.cluster.network.exists() else None,
                "components": components, "timings": self.box.state().get("kubernetes_timings")}

