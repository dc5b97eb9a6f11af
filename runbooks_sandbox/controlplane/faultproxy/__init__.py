"""A fault-injecting HTTPS reverse proxy in front of the real kube-apiserver, for drills.

The drills' faults (refused requests, added latency, writes applied then answered 500 or not
at all) stand in front of the real server. Modules:
:mod:`.faults` (what each request meets; no HTTP), :mod:`.identity` (how the caller's identity
reaches the apiserver: bearer tokens passed on, client-certificate users named through the
apiserver's front-proxy headers), :mod:`.upstream` (the TLS ways to the apiserver),
:mod:`.server` (the relay: plain, streamed and upgraded answers), :mod:`.admin` (the
token-guarded admin endpoint), :mod:`.proxy` (the process: start, stop, status, kubeconfig).
"""
from __future__ import annotations

from .faults import FaultSettings, Faults
from .proxy import FaultProxy
from .upstream import ProxyCredentials

__all__ = ["FaultProxy", "FaultSettings", "Faults", "ProxyCredentials"]
