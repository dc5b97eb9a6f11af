"""Faults of the API server itself, for drills: refused requests and slow answers.

``runbook sandbox fault apiserver --error-rate 0.2 --latency-ms 300`` sets them through the
supervisor's control endpoint; ``--clear`` removes them. A refused request is answered before it
is handled, as an overloaded API server answers (kube-apiserver's max-in-flight filter): 503
and a Status whose reason is ``ServiceUnavailable``. Nothing was applied, so a client may send
it again. Watches that are already open are left alone; new ones are refused like the rest.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass

from ..models.errors import ServiceUnavailable
from .responses import Response

__all__ = ["ApiFaults", "FaultSettings"]


@dataclass(frozen=True)
class FaultSettings:
    error_rate: float = 0.0  # fraction of requests refused with 503
    latency_ms: float = 0.0  # added before every answer

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, not {self.error_rate}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be 0 or more, not {self.latency_ms}")


class ApiFaults:
    """The faults in force, and how many requests they refused (thread-safe)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._random = random.Random(seed)
        self.refused = 0

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def set(self, settings: FaultSettings) -> dict[str, float | int]:
        with self._lock:
            self._settings = settings
        return self.describe()

    def clear(self) -> dict[str, float | int]:
        return self.set(FaultSettings())

    def describe(self) -> dict[str, float | int]:
        return {**asdict(self._settings), "refused": self.refused}

    def before(self, method: str, path: str) -> Response | None:
        """Wait the added latency; the refusal to send instead of handling, if this one is refused."""
        settings = self._settings
        if settings.latency_ms:
            time.sleep(settings.latency_ms / 1000)
        if not settings.error_rate:
            return None
        with self._lock:
            refused = self._random.random() < settings.error_rate
            if refused:
                self.refused += 1
        if not refused:
            return None
        error = ServiceUnavailable(f"the server is currently unable to handle the request ({method} {path}: "
                                   f"sandbox fault, error rate {settings.error_rate:g})")
        return Response(error.code, error.status())
