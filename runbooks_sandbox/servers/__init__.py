"""The real servers behind the sandbox: OpenBao (Vault API), PostgreSQL 15, Prometheus, Redis.

Each is a small class with ``start()``, ``stop()`` and ``status()``: it picks free loopback
ports (or checks the ones asked for), keeps its files under a state directory (the
sandbox uses ``<project>/.sandbox/``), records the PIDs it started so that ``stop()`` —
even from another process — ends only those, and fails with a message that says what to
do (package to install, port taken, a server left running by an earlier run).
"""
from __future__ import annotations

from .openbao import OpenBaoServer
from .ports import PackageMissing, PortInUse, ServerError, ServerStartFailed, StaleState
from .postgres import PostgresCluster, ReplicationLag
from .prometheus import PrometheusServer
from .redis import RedisServer

__all__ = [
    "OpenBaoServer",
    "PostgresCluster",
    "ReplicationLag",
    "PrometheusServer",
    "RedisServer",
    "ServerError",
    "PortInUse",
    "PackageMissing",
    "StaleState",
    "ServerStartFailed",
]
