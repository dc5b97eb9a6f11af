"""Loopback addresses: the sandbox's pods and Services each listen on their own 127.x.y.z."""
from __future__ import annotations

import errno
import socket

__all__ = ["can_bind"]


def can_bind(ip: str, port: int) -> bool:
    """Whether ip:port is free to listen on now (something on 0.0.0.0:port makes it not)."""
    probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        # The workload's server sets SO_REUSEADDR too, so a TIME_WAIT left by an earlier pod
        # is no obstacle for it, and must not be one for this check either.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((ip, port))
        return True
    except OSError as e:
        if e.errno in (errno.EADDRINUSE, errno.EADDRNOTAVAIL, errno.EACCES):
            return False
        raise
    finally:
        probe.close()
