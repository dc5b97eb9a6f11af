"""Faults of the API server itself, for drills: refused requests, slow answers, lost writes.

``runbook sandbox fault apiserver --error-rate 0.2 --latency-ms 300`` sets them through the
supervisor's control endpoint; ``--clear`` removes them. A refused request is answered before it
is handled, as an overloaded API server answers (kube-apiserver's max-in-flight filter): 503
and a Status whose reason is ``ServiceUnavailable``. Nothing was applied, so a client may send
it again. Watches that are already open are left alone; new ones are refused like the rest.

``--fail-writes N [--resource deployments] [--no-answer]`` is the treacherous case: the next N
writes (to that resource) are applied, then answered 500 InternalError, as when etcd commits but
the answer is lost on the way back (``--no-answer``: the connection is closed instead, as after a
client's timeout or a load balancer's failure). A client cannot tell whether its change happened.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass

from ..models.errors import ApiError, ServiceUnavailable
from .responses import Response

__all__ = ["ApiFaults", "FaultSettings"]


@dataclass(frozen=True)
class FaultSettings:
    error_rate: float = 0.0  # fraction of requests refused with 503
    latency_ms: float = 0.0  # added before every answer
    fail_writes: int = 0  # the next N writes are applied, then answered 500
    resource: str = ""  # ... only writes to this resource (e.g. deployments); "" = any
    no_answer: bool = False  # ... and the connection closed instead of the 500 (a timeout, a dead proxy)

    def __post_init__(self) -> None:
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError(f"error_rate must be between 0 and 1, not {self.error_rate}")
        if self.latency_ms < 0:
            raise ValueError(f"latency_ms must be 0 or more, not {self.latency_ms}")
        if self.fail_writes < 0:
            raise ValueError(f"fail_writes must be 0 or more, not {self.fail_writes}")


class ApiFaults:
    """The faults in force, and how many requests they refused (thread-safe)."""

    def __init__(self, seed: int | None = None) -> None:
        self._lock = threading.Lock()
        self._settings = FaultSettings()
        self._random = random.Random(seed)
        self.refused = 0
        self.writes_failed = 0
        self._writes_left = 0

    @property
    def settings(self) -> FaultSettings:
        return self._settings

    def set(self, settings: FaultSettings) -> dict[str, float | int | str]:
        with self._lock:
            self._settings = settings
            self._writes_left = settings.fail_writes
        return self.describe()

    def clear(self) -> dict[str, float | int | str]:
        return self.set(FaultSettings())

    def describe(self) -> dict[str, float | int | str]:
        return {**asdict(self._settings), "refused": self.refused, "writes_failed": self.writes_failed,
                "writes_left": self._writes_left}

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

    def after(self, method: str, path: str, response: Response, *, dry_run: bool = False) -> Response:
        """The answer to send once a request was handled: a 500 in place of a successful write's
        answer while ``fail_writes`` lasts (the change stays applied). A dry run is left alone:
        it writes nothing to storage, so there is no commit whose answer could be lost."""
        if method not in _WRITES or dry_run or response.code >= 400 or response.stream is not None:
            return response
        resource = self._settings.resource
        with self._lock:
            if self._writes_left <= 0 or (resource and f"/{resource}/" not in f"{path}/"):
                return response
            self._writes_left -= 1
            self.writes_failed += 1
        if self._settings.no_answer:
            return Response(0, None)  # code 0: the server closes the connection without a word
        error = ApiError(f"etcdserver: request timed out ({method} {path}: sandbox fault, the write was applied "
                         "and its answer lost)")
        return Response(500, error.status())


_WRITES = frozenset({"POST", "PUT", "PATCH", "DELETE"})
