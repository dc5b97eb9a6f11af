"""Loopback pod addresses: one 127.x.y.z per pod, so every pod can listen on its own :8080.

Linux routes the whole of 127.0.0.0/8 to the loopback interface, so binding 127.10.0.7:8080 needs
no interface configuration. Addresses are handed out in turn through the range and only reused
after a wrap-around, so a new pod never inherits a just-deleted pod's address while clients
still hold connections to it.
"""
from __future__ import annotations

import ipaddress
import threading

from ..loopback import can_bind

__all__ = ["AddressPool", "PoolExhausted", "can_bind"]


class PoolExhausted(RuntimeError):
    """Every address of the pod network is taken (or unbindable on the ports asked for)."""


class AddressPool:
    """Allocates addresses of a loopback network to pods (thread-safe)."""

    def __init__(self, network: str = "127.10.0.0/16") -> None:
        net = ipaddress.ip_network(network)
        if not net.subnet_of(ipaddress.ip_network("127.0.0.0/8")):  # type: ignore[arg-type]
            raise ValueError(f"pod network {network} must lie inside 127.0.0.0/8 (loopback only)")
        # .0 and .1 of the range are left out: .1 reads like a gateway, and 127.x.0.1 addresses
        # are the ones other local tools pick first.
        self._first = int(net.network_address) + 2
        self._last = int(net.broadcast_address) - 1
        self._next = self._first
        self._taken: dict[str, str] = {}  # ip -> owner (namespace/name)
        self._lock = threading.Lock()

    def allocate(self, owner: str, ports: list[int]) -> str:
        """A free address on which every port in ``ports`` is bindable now."""
        with self._lock:
            for _ in range(self._last - self._first + 1):
                ip = str(ipaddress.ip_address(self._next))
                self._next = self._first if self._next >= self._last else self._next + 1
                if ip in self._taken:
                    continue
                if all(can_bind(ip, port) for port in ports):
                    self._taken[ip] = owner
                    return ip
            raise PoolExhausted(f"no free pod address with ports {ports} bindable")

    def release(self, ip: str | None) -> None:
        if ip:
            with self._lock:
                self._taken.pop(ip, None)

    def in_use(self) -> dict[str, str]:
        with self._lock:
            return dict(self._taken)
