"""The cluster network's address book: who holds which address, shared by every process through one file.

The node agent allocates a pod's address in one process, the Service proxy, the forwarder or a
``down`` after a crash read it in others; so the book is a JSON file in the state directory,
changed only under an exclusive flock (two agents never hand out one address) and written through
a rename (a reader never sees half a file). Addresses are handed out in turn through a range and
reused only after a wrap-around, as :mod:`runbooks_sandbox.runtime.ipam` does on loopback, so a new
pod never inherits a just-deleted pod's address while clients still hold connections to it.
"""
from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import threading
from pathlib import Path
from typing import Any, Iterator

from .errors import AddressesExhausted, NetworkError

__all__ = ["AddressBook", "allocate_in", "parse_network", "write_json_atomically"]


def write_json_atomically(path: Path, data: dict[str, Any]) -> None:
    """Write JSON through a rename. The temporary name is per process and thread, so two writers
    (which the flock serialises anyway) can never interleave in one temporary file."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    with open(tmp, "w") as out:
        json.dump(data, out, indent=2, sort_keys=True)
        out.write("\n")
    os.replace(tmp, path)


def parse_network(cidr: str, what: str) -> ipaddress.IPv4Network:
    """An IPv4 network from ``cidr``, or a NetworkError naming the setting."""
    try:
        net = ipaddress.ip_network(cidr, strict=True)
    except ValueError as e:
        raise NetworkError(f"{what} {cidr!r} is not a network in CIDR form (like 10.244.0.0/16): {e}") from None
    if not isinstance(net, ipaddress.IPv4Network):
        raise NetworkError(f"{what} {cidr}: only IPv4 is supported")
    if net.prefixlen > 30:
        raise NetworkError(f"{what} {cidr}: too small, give at least a /30")
    if net.subnet_of(ipaddress.IPv4Network("127.0.0.0/8")):
        raise NetworkError(f"{what} {cidr} is loopback, which the kube-apiserver refuses in Endpoints; "
                           "use a private range such as 10.244.0.0/16 (it exists only inside the sandbox's namespace)")
    return net


def allocate_in(book: dict[str, Any], key: str, net: ipaddress.IPv4Network, owner: str,
                reserved: set[str] = frozenset()) -> str:  # type: ignore[assignment]
    """Give ``owner`` the next free address of ``net`` (changes ``book``; call inside a transaction).

    The network and broadcast addresses and the first address (a gateway's, by convention, as
    CNI's host-local IPAM does) are never handed out. An owner that already holds an address of
    ``net`` gets it again: a node agent retrying after a crash does not leak one.
    """
    taken: dict[str, str] = book.setdefault("allocations", {})
    for ip, holder in taken.items():
        if holder == owner and ipaddress.IPv4Address(ip) in net:
            return ip
    first, last = int(net.network_address) + 2, int(net.broadcast_address) - 1
    cursors: dict[str, int] = book.setdefault("cursors", {})
    start = cursors.get(key, first)
    if not first <= start <= last:
        start = first
    candidate = start
    for _ in range(last - first + 1):
        ip = str(ipaddress.IPv4Address(candidate))
        candidate = first if candidate >= last else candidate + 1
        if ip not in taken and ip not in reserved:
            taken[ip] = owner
            cursors[key] = candidate
            return ip
    raise AddressesExhausted(f"every address of {net} is allocated ({len(taken)} in use); release some "
                             f"(pods deleted without their address released?) or choose a larger range")


class AddressBook:
    """One JSON document, read and changed under an flock (see the module doc)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.lock_path = self.path.with_name(f".{self.path.name}.lock")

    def read(self) -> dict[str, Any]:
        """The current document ({} when there is none yet); no lock needed (writes are renames)."""
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as e:
            raise NetworkError(f"{self.path} is unreadable ({e}); the cluster network's record is damaged: "
                               "delete the network (runbook sandbox down) and create it again") from e
        return data if isinstance(data, dict) else {}

    @contextlib.contextmanager
    def transaction(self) -> Iterator[dict[str, Any]]:
        """The document to change in place; written back (if changed) when the block ends without error."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self.read()
            before = json.dumps(data, sort_keys=True)
            yield data
            if json.dumps(data, sort_keys=True) != before:
                write_json_atomically(self.path, data)

    def remove(self) -> None:
        """Forget everything (the network is deleted)."""
        if not self.path.parent.is_dir():
            return
        with open(self.lock_path, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            self.path.unlink(missing_ok=True)
        self.lock_path.unlink(missing_ok=True)
