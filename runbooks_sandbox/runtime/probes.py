"""Readiness and liveness probes as the kubelet runs them: real HTTP (or TCP) calls on the pod IP.

Times come from the pod spec and are multiplied by the runtime's ``time_scale`` (0.1 turns the
guide's ``initialDelaySeconds: 10`` into 1 s), so drills keep the guide's manifests unchanged
and still run quickly. Timeouts are scaled too but never below ``min_timeout_s``: a loaded
two-core machine must not fail probes that a real node would pass.
"""
from __future__ import annotations

import http.client
import socket
from dataclasses import dataclass
from typing import Any

__all__ = ["Probe", "ProbeResult", "ProbeState", "resolve_port"]

Obj = dict[str, Any]
_USER_AGENT = "kube-probe/1.32"


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    message: str = ""  # why it failed, worded as the kubelet words it


def resolve_port(port: int | str | None, container: Obj) -> int | None:
    """A probe or targetPort value: a number, a numeric string or a container port's name."""
    if port is None:
        return None
    if isinstance(port, int):
        return port
    if port.isdigit():
        return int(port)
    for declared in container.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    return None


@dataclass(frozen=True)
class Probe:
    """One probe of a container spec, with its times already scaled (seconds)."""

    kind: str  # "httpGet", "tcpSocket" or "unsupported"
    port: int | None
    path: str
    scheme: str
    headers: tuple[tuple[str, str], ...]
    initial_delay_s: float
    period_s: float
    timeout_s: float
    failure_threshold: int
    success_threshold: int

    @classmethod
    def from_spec(cls, spec: Obj | None, container: Obj, time_scale: float, min_timeout_s: float = 1.0) -> Probe | None:
        """The probe described by ``spec`` (a container's readinessProbe/livenessProbe), or None."""
        if not spec:
            return None
        if "httpGet" in spec:
            kind, action = "httpGet", spec["httpGet"]
        elif "tcpSocket" in spec:
            kind, action = "tcpSocket", spec["tcpSocket"]
        else:  # exec and grpc need a container filesystem or gRPC health service we do not emulate
            kind, action = "unsupported", {}
        headers = tuple((h.get("name", ""), h.get("value", "")) for h in action.get("httpHeaders") or [])
        return cls(
            kind=kind,
            port=resolve_port(action.get("port"), container),
            path=action.get("path") or "/",
            scheme=(action.get("scheme") or "HTTP").upper(),
            headers=headers,
            initial_delay_s=float(spec.get("initialDelaySeconds", 0)) * time_scale,
            period_s=max(float(spec.get("periodSeconds", 10)) * time_scale, 0.05),
            timeout_s=max(float(spec.get("timeoutSeconds", 1)) * time_scale, min_timeout_s),
            failure_threshold=int(spec.get("failureThreshold", 3)),
            success_threshold=int(spec.get("successThreshold", 1)),
        )

    def run(self, ip: str) -> ProbeResult:
        """Probe the container once (blocking up to timeout_s)."""
        if self.kind == "unsupported":
            return ProbeResult(True)
        if self.port is None:
            return ProbeResult(False, "probe port is not a number or a named container port")
        if self.kind == "tcpSocket":
            return self._tcp(ip)
        return self._http(ip)

    def _tcp(self, ip: str) -> ProbeResult:
        try:
            socket.create_connection((ip, self.port), timeout=self.timeout_s).close()  # type: ignore[arg-type]
            return ProbeResult(True)
        except OSError as e:
            return ProbeResult(False, f"dial tcp {ip}:{self.port}: {_describe(e)}")

    def _http(self, ip: str) -> ProbeResult:
        url = f"{self.scheme.lower()}://{ip}:{self.port}{self.path}"
        connection = http.client.HTTPConnection(ip, self.port, timeout=self.timeout_s)
        try:
            headers = {"User-Agent": _USER_AGENT, "Accept": "*/*", "Connection": "close", **dict(self.headers)}
            connection.request("GET", self.path, headers=headers)
            response = connection.getresponse()
            response.read()
        except (OSError, http.client.HTTPException) as e:
            return ProbeResult(False, f'Get "{url}": {_describe(e)}')
        finally:
            connection.close()
        if 200 <= response.status < 400:
            return ProbeResult(True)
        return ProbeResult(False, f"HTTP probe failed with statuscode: {response.status}")


def _describe(error: BaseException) -> str:
    if isinstance(error, ConnectionRefusedError):
        return "connect: connection refused"
    if isinstance(error, (socket.timeout, TimeoutError)):
        return "context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
    return str(error) or type(error).__name__


class ProbeState:
    """Consecutive results of one probe and the verdict they give (kubelet's prober worker)."""

    def __init__(self, probe: Probe, initially_ok: bool) -> None:
        self.probe = probe
        self.ok = initially_ok
        self._successes = 0
        self._failures = 0

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success (a startup probe gives up at its failureThreshold)."""
        return self._failures

    def record(self, result: ProbeResult) -> bool:
        """Count a result; returns True when the verdict changed."""
        if result.ok:
            self._successes, self._failures = self._successes + 1, 0
            if not self.ok and self._successes >= self.probe.success_threshold:
                self.ok = True
                return True
        else:
            self._successes, self._failures = 0, self._failures + 1
            if self.ok and self._failures >= self.probe.failure_threshold:
                self.ok = False
                return True
        return False
