"""The command lines of etcd, kube-apiserver, kube-controller-manager and kube-scheduler.

These are the flags a smoke test on this machine proved, with the paths of one state directory
(:class:`Layout`) and the ports chosen at start. Each unusual one says why it is there. Flags
use the ``--flag=value`` form, so that the argument naming this state directory (the *mark* a
PID is checked against before any signal) is one word of the command line.
"""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from .pki import Pki

__all__ = ["Layout", "component_args", "marks"]


@dataclass(frozen=True)
class Layout:
    """Where one control plane's files are, under ``home`` (``<state>/controlplane``)."""

    home: Path

    @property
    def pki(self) -> Pki:
        return Pki(self.home / "pki")

    @property
    def etcd_dir(self) -> Path:
        return self.home / "etcd"

    @property
    def token_file(self) -> Path:
        return self.home / "tokens.csv"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    def component_kubeconfig(self, name: str) -> Path:
        """``controller-manager`` or ``scheduler``: its client-cert kubeconfig."""
        return self.home / "components" / f"{name}.kubeconfig"

    @property
    def flexvolume_dir(self) -> Path:
        return self.home / "flexvolume"

    @property
    def private_dirs(self) -> tuple[Path, ...]:
        """The folders start() makes (0700) and stop() removes, with everything in them."""
        return (self.etcd_dir, self.home / "pki", self.home / "components", self.home / "run", self.flexvolume_dir)

    def log_path(self, component: str) -> Path:
        return self.home / "logs" / f"{component}.log"

    def pid_path(self, component: str) -> Path:
        return self.home / "run" / f"{component}.pid"


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def marks(layout: Layout) -> dict[str, str]:
    """Per component, an argument of its command line that names this state directory."""
    return {
        "etcd": f"--data-dir={layout.etcd_dir}",
        "kube-apiserver": f"--tls-cert-file={layout.pki.apiserver.cert}",
        "kube-controller-manager": f"--kubeconfig={layout.component_kubeconfig('controller-manager')}",
        "kube-scheduler": f"--kubeconfig={layout.component_kubeconfig('scheduler')}",
    }


def _etcd(layout: Layout, ports: Mapping[str, int]) -> list[str]:
    client = f"http://127.0.0.1:{ports['etcd_client']}"
    peer = f"http://127.0.0.1:{ports['etcd_peer']}"
    return ["--name=sandbox", f"--data-dir={layout.etcd_dir}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=sandbox={peer}", "--initial-cluster-state=new", "--log-level=warn"]


def _apiserver(layout: Layout, ports: Mapping[str, int], host: str, service_cidr: str) -> list[str]:
    pki = layout.pki
    loopback = ipaddress.ip_address(host).is_loopback
    return [
        f"--tls-cert-file={pki.apiserver.cert}", f"--tls-private-key-file={pki.apiserver.key}",
        f"--bind-address={host}", f"--secure-port={ports['apiserver']}", f"--advertise-address={host}",
        f"--etcd-servers=http://127.0.0.1:{ports['etcd_client']}",
        f"--client-ca-file={pki.ca.cert}", f"--token-auth-file={layout.token_file}",
        "--service-account-issuer=https://kubernetes.default.svc",
        f"--service-account-key-file={pki.sa_pub}", f"--service-account-signing-key-file={pki.sa_key}",
        "--authorization-mode=RBAC,Node", "--enable-admission-plugins=NodeRestriction",
        f"--service-cluster-ip-range={service_cidr}",
        # The `kubernetes` Service's endpoints: the apiserver's address, which it refuses (and
        # exits) when that is loopback; the Service then has none.
        f"--endpoint-reconciler-type={'none' if loopback else 'lease'}",
        # The aggregation layer's front proxy: without these the other components log errors
        # every few seconds (they read extension-apiserver-authentication).
        f"--requestheader-client-ca-file={pki.front_proxy_ca.cert}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
        f"--proxy-client-key-file={pki.front_proxy_client.key}",
        # Towards the node agent: who we are, whom we trust, which of its addresses we dial.
        f"--kubelet-client-certificate={pki.apiserver_kubelet_client.cert}",
        f"--kubelet-client-key={pki.apiserver_kubelet_client.key}",
        f"--kubelet-certificate-authority={pki.ca.cert}",
        "--kubelet-preferred-address-types=InternalIP,Hostname",
        # On SIGTERM, close open watches after 2 s: by default it waits for every client
        # connection to go idle, which a client's watch never does (60 s, its request timeout).
        "--shutdown-watch-termination-grace-period=2s",
    ]


def _controller_manager(layout: Layout, ports: Mapping[str, int], service_cidr: str,
                        per_controller_credentials: bool) -> list[str]:
    pki, config = layout.pki, layout.component_kubeconfig("controller-manager")
    return [
        f"--kubeconfig={config}", f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
        "--bind-address=127.0.0.1", f"--secure-port={ports['controller_manager']}", "--leader-elect=false",
        f"--use-service-account-credentials={str(per_controller_credentials).lower()}",
        f"--service-account-private-key-file={pki.sa_key}", f"--root-ca-file={pki.ca.cert}",
        f"--cluster-signing-cert-file={pki.ca.cert}", f"--cluster-signing-key-file={pki.ca.key}",
        f"--service-cluster-ip-range={service_cidr}",
        # Its default is /usr/libexec/kubernetes/kubelet-plugins/volume/exec/, which it creates.
        f"--flex-volume-plugin-dir={layout.flexvolume_dir}",
    ]


def _scheduler(layout: Layout, ports: Mapping[str, int]) -> list[str]:
    config = layout.component_kubeconfig("scheduler")
    return [f"--kubeconfig={config}", f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1", f"--secure-port={ports['scheduler']}", "--leader-elect=false"]


def component_args(layout: Layout, ports: Mapping[str, int], *, host: str, service_cidr: str,
                   per_controller_credentials: bool = True) -> dict[str, list[str]]:
    """Every component's arguments (without the binary), in start order."""
    return {
        "etcd": _etcd(layout, ports),
        "kube-apiserver": _apiserver(layout, ports, host, service_cidr),
        "kube-controller-manager": _controller_manager(layout, ports, service_cidr, per_controller_credentials),
        "kube-scheduler": _scheduler(layout, ports),
    }
