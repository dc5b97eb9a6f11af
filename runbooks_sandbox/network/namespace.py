"""The sandbox's cluster network: one network namespace of its own, every cluster address on its ``lo``.

Why one namespace with every address on its loopback interface (rather than a namespace per pod
joined by veth pairs to a bridge, as a CNI plugin does):

- binding is all a pod needs: with its address (a /32) on the namespace's ``lo``, a process
  started through :meth:`ClusterNetwork.exec_argv` listens on ``POD_IP:8080``, and any number of
  pods use the same port, each on its own address; a ClusterIP or a node address is one more /32;
- it has one moving part: no link, bridge, veth, route or ARP entry per pod to create and clean
  up after a crash (this machine's kernel has no ``dummy`` links, veth and bridges it has), and
  ``delete`` is one ``ip netns del``;
- what it does not give, and the sandbox does not need: isolation between pods (a pod could bind
  another's address, and pods share the namespace's 127.0.0.1), a pod's own source address on
  its outgoing connections (the kernel picks the destination's, so a server sees the peer as
  itself), NetworkPolicy. The node agent must make pods bind their own pod IP, never 0.0.0.0.

The name is derived from the state directory (``veza-<hash>``), so ``down`` finds the namespace
from the state directory alone, also after the process that created it was killed. The record
of allocations is ``<state>/network/network.json`` (see :mod:`.ipam`): the node agent, the Service
proxy and the forwarder, in different processes, all read the same one.

Nothing of this touches the host's own namespace: no address, link or route is added there (the
machines' rule: private ranges only inside namespaces the project creates).
"""
from __future__ import annotations

import gc
import hashlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, Callable, TypeVar

from ..servers.ports import PidFile, process_alive, process_cmdline
from .errors import NamespaceBusy, NamespacesNotPermitted, NetworkError
from .ipam import AddressBook, allocate_in, parse_network
from .netns import NETNS_RUN_DIR, namespace_id, process_namespace_id, run_in_namespace, thread_namespace_ids

__all__ = ["ClusterNetwork", "namespace_name", "find_ip", "FORWARDER_MODULE", "NETWORK_DIR"]

NETWORK_DIR = "network"  # under the state directory: the address book, the forwarder's rules, PID and log
FORWARDER_MODULE = "runbooks_sandbox.network.forward"  # in the forwarder's command line, checked before a signal
NAME_PREFIX = "veza-"
T = TypeVar("T")


def find_ip(program: str = "ip") -> str:
    """An iproute2 program (``ip``, ``ss``), also where PATH lacks /usr/sbin; or a message naming the package."""
    found = shutil.which(program) or next((p for d in ("/usr/sbin", "/sbin", "/usr/bin", "/bin")
                                           if os.access(p := f"{d}/{program}", os.X_OK)), None)
    if found is None:
        raise NetworkError(f"{program} not found: install the Debian package iproute2 "
                           "(as root: apt-get install -y iproute2)")
    return found


def namespace_name(state_dir: str | Path) -> str:
    """``veza-<hash of the state directory's absolute path>``: found again from the directory alone."""
    digest = hashlib.sha256(str(Path(state_dir).resolve()).encode()).hexdigest()[:10]
    return f"{NAME_PREFIX}{digest}"


class ClusterNetwork:
    """The network namespace of the sandbox in ``state_dir`` and the addresses in it (see the module doc).

    Every method may be called from a fresh instance in another process: the state lives in the
    kernel (the namespace, its addresses) and in ``<state>/network/network.json``.
    """

    def __init__(self, state_dir: str | Path, *, name: str | None = None, pod_cidr: str = "10.244.0.0/16",
                 service_cidr: str = "10.96.0.0/16", node_cidr: str = "172.18.0.0/24") -> None:
        self.state_dir = Path(state_dir).resolve()
        self.name = name or namespace_name(self.state_dir)
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}", self.name):
            raise NetworkError(f"network namespace name {self.name!r}: use letters, digits, '.', '_' and '-'")
        self.pod_cidr = parse_network(pod_cidr, "pod_cidr")
        self.service_cidr = parse_network(service_cidr, "service_cidr")
        self.node_cidr = parse_network(node_cidr, "node_cidr")
        nets = {"pod_cidr": self.pod_cidr, "service_cidr": self.service_cidr, "node_cidr": self.node_cidr}
        for a, net_a in nets.items():
            for b, net_b in nets.items():
                if a < b and net_a.overlaps(net_b):
                    raise NetworkError(f"{a} {net_a} overlaps {b} {net_b}: give each its own range")
        self.dir = self.state_dir / NETWORK_DIR
        self.book = AddressBook(self.dir / "network.json")
        self.netns_path = NETNS_RUN_DIR / self.name
        self.forwarder_pid = PidFile(self.dir / "forwarder.pid", FORWARDER_MODULE)

    # -- addresses everyone needs to know ----------------------------------------------------
    @property
    def host_address(self) -> str:
        """The host's side as pods see it: the node range's first address (kind's docker gateway is
        also the host). Outward forwarders may listen here when a cluster object must name a
        non-loopback address for a host server (the Endpoints of a selector-less Service)."""
        return str(self.node_cidr.network_address + 1)

    def _config(self) -> dict[str, str]:
        return {"name": self.name, "pod_cidr": str(self.pod_cidr), "service_cidr": str(self.service_cidr),
                "node_cidr": str(self.node_cidr), "host_address": self.host_address}

    def _check_config(self, book: dict[str, Any]) -> None:
        recorded = book.get("config")
        if recorded and recorded != self._config():
            diff = ", ".join(f"{k} {recorded.get(k)} (asked: {v})" for k, v in self._config().items()
                             if recorded.get(k) != v)
            raise NetworkError(f"the cluster network of {self.state_dir} was created with {diff}; pass the same "
                               "settings, or delete it first (runbook sandbox down)")

    # -- life cycle --------------------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the namespace is there (pinned under /var/run/netns)."""
        return namespace_id(self.netns_path) is not None

    def create(self) -> ClusterNetwork:
        """Create the namespace (if it is not there yet), bring ``lo`` up, put every recorded address on it.

        Idempotent: on an existing namespace it only puts back what is missing (the namespace of a
        state directory whose machine rebooted is recreated with the addresses still allocated).
        """
        with self.book.transaction() as book:
            self._check_config(book)
            book["config"] = self._config()
            book.setdefault("allocations", {})
            book.setdefault("addresses", [])
            wanted = sorted({self.host_address, *book["allocations"], *book["addresses"]},
                            key=ipaddress.IPv4Address)
        if not self.exists():
            self._ip_netns_add()
        lines = ["link set lo up"] + [f"address replace {ip}/32 dev lo" for ip in wanted]
        self._ip("-n", self.name, "-batch", "-", input="\n".join(lines) + "\n")
        return self

    def _ip_netns_add(self) -> None:
        result = subprocess.run([find_ip(), "netns", "add", self.name], capture_output=True, text=True, timeout=30)
        if result.returncode == 0 or self.exists():
            return
        error = result.stderr.strip()
        if "ermission denied" in error or "not permitted" in error:
            raise NamespacesNotPermitted(
                f"cannot create network namespace {self.name}: {error}. The sandbox gives pods addresses "
                "inside a network namespace of its own: run it as root (or with CAP_SYS_ADMIN and CAP_NET_ADMIN)")
        raise NetworkError(f"ip netns add {self.name} failed: {error}")

    def delete(self, *, kill: bool = False, grace: float = 5.0) -> list[str]:
        """Remove the namespace, every address in it and the record; idempotent; returns what was done.

        Processes still inside the namespace: by default it refuses, before touching anything
        (:class:`NamespaceBusy` lists them), because stopping pods is the node agent's job and it
        stops them gracefully; with ``kill=True`` (``down`` after a crash, when nobody else will)
        each is sent SIGTERM, then SIGKILL after ``grace`` seconds, by PID, each PID checked to
        still be inside this namespace right before the signal (a PID reused since is left alone).
        Only a process whose network namespace is this one qualifies: nothing enters it but what
        the sandbox starts there. It also stops the forwarder process it started (by its PID file:
        PID and command line). Processes outside that hold a socket or a thread inside (an
        embedded :class:`~.forward.Forwarder` not stopped) are never killed: the deletion is
        refused, naming them, because they would keep the namespace alive unseen.
        """
        done: list[str] = []
        inside = self.processes()
        if inside and not kill:  # refused before anything is touched
            raise NamespaceBusy(
                f"network namespace {self.name} still has {len(inside)} process(es) inside: "
                f"{_describe(inside)}; stop them first (the node agent stops its pods), or delete with "
                f"kill=True to terminate them", inside)
        if self.forwarder_pid.read() is not None:
            if self.forwarder_pid.running_pid() is not None:
                done.append(f"stopped the forwarder (pid {self.forwarder_pid.read()})")
            self.forwarder_pid.stop(grace=grace)
        if self.exists():
            if inside:
                done += [f"terminated pid {pid}" for pid in self._terminate_inside(inside, grace)]
            holders = self.holders()
            if os.getpid() in holders:
                # Our own process can hold a socket inside only through garbage: a connection
                # to the apiserver from the control plane's start stays open (CLOSE-WAIT), kept by
                # an exception's reference cycle, until the collector runs (seen in a process that
                # started and then stopped a SandboxCluster). Collect, then look again.
                gc.collect()
                holders = self.holders()
            if holders:
                raise NamespaceBusy(
                    f"network namespace {self.name} is held by process(es) outside it with sockets or threads "
                    f"inside: {_describe(holders)}; stop them first (an embedded Forwarder: call its stop()), "
                    "or the namespace would live on after its deletion", holders)
            self._ip("-n", self.name, "-4", "address", "flush", "dev", "lo", "scope", "global", check=False)
            result = subprocess.run([find_ip(), "netns", "del", self.name], capture_output=True, text=True,
                                    timeout=30)
            if result.returncode != 0 and self.exists():
                raise NetworkError(f"ip netns del {self.name} failed: {result.stderr.strip()}")
            done.append(f"deleted network namespace {self.name}")
        for name in ("forwards.json", ".forwards.json.lock", "forwarder.json"):  # the log is kept, as servers' are
            (self.dir / name).unlink(missing_ok=True)
        self.book.remove()
        return done

    def _terminate_inside(self, pids: dict[int, list[str]], grace: float) -> list[int]:
        """SIGTERM every process inside, then SIGKILL what is left; forked children are found again."""
        ours = namespace_id(self.netns_path)
        signalled: list[int] = []

        def send(pid: int, sig: int) -> None:
            if process_namespace_id(pid) == ours and process_alive(pid):  # checked right before the signal
                try:
                    os.kill(pid, sig)
                except ProcessLookupError:
                    return
                if pid not in signalled:
                    signalled.append(pid)

        for pid in pids:
            send(pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and self.processes():
            _reap(signalled)
            time.sleep(0.05)
        for _ in range(5):
            left = self.processes()
            if not left:
                break
            for pid in left:
                send(pid, signal.SIGKILL)
            time.sleep(0.1)
            _reap(signalled)
        if self.processes():
            raise NetworkError(f"processes inside {self.name} survived SIGKILL: {_describe(self.processes())}")
        return signalled

    # -- who is inside -------------------------------------------------------------------------
    def processes(self) -> dict[int, list[str]]:
        """PID -> command line of every process inside the namespace (what ``ip netns pids`` lists)."""
        ours = namespace_id(self.netns_path)
        if ours is None:
            return {}
        found = {}
        for entry in os.listdir("/proc"):
            if entry.isdigit() and process_namespace_id(int(entry)) == ours and process_alive(int(entry)):
                found[int(entry)] = process_cmdline(int(entry))
        return found

    def holders(self) -> dict[int, list[str]]:
        """Processes outside the namespace that keep it alive: a thread entered it, or a socket was made in it."""
        ours = namespace_id(self.netns_path)
        if ours is None:
            return {}
        found: dict[int, list[str]] = {}
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            pid = int(entry)
            if process_namespace_id(pid) != ours and ours in thread_namespace_ids(pid):
                found[pid] = process_cmdline(pid)
        result = subprocess.run([find_ip("ss"), "-N", self.name, "-tuanpH"], capture_output=True, text=True,
                                timeout=30)
        for pid in {int(p) for p in re.findall(r"pid=(\d+)", result.stdout)}:
            if process_namespace_id(pid) != ours and process_alive(pid):
                found[pid] = process_cmdline(pid)
        return found

    # -- addresses -----------------------------------------------------------------------------
    def allocate_pod_ip(self, owner: str, within: str | None = None) -> str:
        """A pod address for ``owner`` (``namespace/pod``), put on the namespace's ``lo`` at once.

        ``within`` narrows the range to a node's pod CIDR (``node.spec.podCIDR``) when the control
        plane allocates those. The same owner asking again gets the same address.
        """
        net = self.pod_cidr if within is None else parse_network(within, "within")
        if not net.subnet_of(self.pod_cidr):
            raise NetworkError(f"within={within} is not inside the pod network {self.pod_cidr}")
        with self.book.transaction() as book:
            self._check_config(book)
            ip = allocate_in(book, f"pod:{net}", net, owner)
        self._put(ip)
        return ip

    def allocate_node_ip(self, node: str) -> str:
        """The address of node ``node`` (its InternalIP; where its kubelet-like agent or the API server listens)."""
        with self.book.transaction() as book:
            self._check_config(book)
            ip = allocate_in(book, "node", self.node_cidr, f"node/{node}", reserved={self.host_address})
        self._put(ip)
        return ip

    def release_pod_ip(self, ip: str) -> str | None:
        """Free a pod address (and take it off ``lo``); returns its owner, None when it was not allocated."""
        return self._release(ip)

    def release_node_ip(self, node_or_ip: str) -> str | None:
        """Free a node's address, named by node or by address."""
        allocations = self.allocations()
        ip = node_or_ip if node_or_ip in allocations else next(
            (a for a, owner in allocations.items() if owner == f"node/{node_or_ip}"), None)
        return self._release(ip) if ip else None

    def _release(self, ip: str) -> str | None:
        with self.book.transaction() as book:
            owner = book.get("allocations", {}).pop(ip, None)
        if owner is not None:
            self._take_off(ip)
        return owner

    def allocations(self) -> dict[str, str]:
        """Address -> owner (``namespace/pod`` or ``node/<name>``) of every allocated address."""
        return dict(self.book.read().get("allocations", {}))

    def owner_of(self, ip: str) -> str | None:
        return self.allocations().get(ip)

    def add_address(self, ip: str) -> None:
        """Put ``ip`` (a ClusterIP, an in-cluster server's address) on the namespace's ``lo``, and record it.

        It must lie in the pod, Service or node range: an address outside them is a mistake (and
        would shadow, for pods, a real host of that address)."""
        address = self._validated(ip)
        with self.book.transaction() as book:
            self._check_config(book)
            recorded = book.setdefault("addresses", [])
            if address not in recorded:
                recorded.append(address)
        self._put(address)

    def remove_address(self, ip: str) -> None:
        """Take ``ip`` off ``lo`` and out of the record (an allocated pod or node address is released too)."""
        address = self._validated(ip)
        with self.book.transaction() as book:
            if address in book.get("addresses", []):
                book["addresses"].remove(address)
            book.get("allocations", {}).pop(address, None)
        self._take_off(address)

    def addresses(self) -> list[str]:
        """The addresses on the namespace's ``lo`` now, as the kernel has them (127.0.0.1 left out)."""
        if not self.exists():
            return []
        out = self._ip("-n", self.name, "-j", "-4", "address", "show", "dev", "lo")
        links = json.loads(out or "[]")
        return [a["local"] for link in links for a in link.get("addr_info", []) if a.get("scope") != "host"]

    def _validated(self, ip: str) -> str:
        try:
            address = ipaddress.IPv4Address(ip)
        except ValueError:
            raise NetworkError(f"{ip!r} is not an IPv4 address") from None
        if not any(address in net for net in (self.pod_cidr, self.service_cidr, self.node_cidr)):
            raise NetworkError(f"{ip} is in none of the cluster's ranges (pods {self.pod_cidr}, Services "
                               f"{self.service_cidr}, nodes {self.node_cidr}); only those live in the namespace")
        return str(address)

    def _put(self, ip: str) -> None:
        if not self.exists():
            raise NetworkError(f"network namespace {self.name} does not exist: create it first "
                               f"(ClusterNetwork({str(self.state_dir)!r}).create(), done by `runbook sandbox up`)")
        self._ip("-n", self.name, "address", "replace", f"{ip}/32", "dev", "lo")

    def _take_off(self, ip: str) -> None:
        if self.exists():
            self._ip("-n", self.name, "address", "del", f"{ip}/32", "dev", "lo", check=False)

    # -- running things inside -------------------------------------------------------------------
    def exec_argv(self, argv: list[str]) -> list[str]:
        """The command line running ``argv`` inside the namespace: ``ip netns exec NAME argv...``.

        ``ip`` execs the program itself, so the PID of the started process is the program's (a
        PID file records the program, not a wrapper). The program also gets a mount namespace of
        its own with /sys remounted, and /etc/netns/NAME/* bind-mounted over /etc (unused here).
        """
        return [find_ip(), "netns", "exec", self.name, *argv]

    def call(self, fn: Callable[..., T], *args: Any, timeout: float | None = 30.0) -> T:
        """``fn(*args)`` run on a thread inside the namespace: a probe of a pod's port, say
        ``network.call(wait_for_port, 8080, pod_ip)``."""
        if not self.exists():
            raise NetworkError(f"network namespace {self.name} does not exist: create it first")
        return run_in_namespace(self.netns_path, fn, *args, timeout=timeout)

    def status(self) -> dict[str, Any]:
        """What a person checking the sandbox wants to see."""
        return {"name": self.name, "exists": self.exists(), **self._config(),
                "allocations": self.allocations(), "addresses": self.addresses(),
                "processes": len(self.processes()) if self.exists() else 0}

    def _ip(self, *args: str, input: str | None = None, check: bool = True) -> str:
        result = subprocess.run([find_ip(), *args], input=input, capture_output=True, text=True, timeout=30)
        if check and result.returncode != 0:
            raise NetworkError(f"ip {' '.join(args)} failed: {result.stderr.strip() or result.returncode}")
        return result.stdout


def _describe(pids: dict[int, list[str]], limit: int = 5) -> str:
    parts = [f"pid {pid} ({' '.join(' '.join(args).split())[:80] or '?'})" for pid, args in sorted(pids.items())[:limit]]
    more = f" and {len(pids) - limit} more" if len(pids) > limit else ""
    return ", ".join(parts) + more


def _reap(pids: list[int]) -> None:
    """Collect the exit status of those signalled processes that are our children (started by this
    process), so they do not linger as zombies; other children of ours are left to their owners."""
    for pid in pids:
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
