"""The faults a drill injects in front of kube-apiserver, and what each request meets (no HTTP here).

Decided by a proxy that cannot look inside the server:

- ``error_rate``: that fraction of requests is refused before it reaches the apiserver, with
  503 ``ServiceUnavailable``, a Kubernetes ``Status`` body and ``Retry-After: 1``, as an
  overloaded kube-apiserver answers (its max-in-flight filter). Nothing was applied, so a
  client may send it again: client-go does, 1 s apart, up to 10 times, so kubectl rides out a
  partial refusal rate and fails only at a total one (after ~10 s; measured with v1.37.2).
  Watches already open are left alone; new ones are refused like the rest.
- ``latency_ms``: added before every request is forwarded (refused ones too).
- ``fail_writes`` N [``resource``] [``no_answer``]: the next N writes (POST, PUT, PATCH,
  DELETE; only to ``resource`` when set) are forwarded and applied, then answered 500
  ``InternalError`` instead of the apiserver's answer (``no_answer``: the connection is closed
  without a word), as when etcd commits but the answer is lost on the way back. A client cannot
  tell whether its change happened. A dry run (``?dryRun=All``) writes nothing, so it never
  counts; neither does a write the apiserver itself refused (4xx/5xx): nothing was applied.
"""
from __future__ import annotations

import random
import threading
import time
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

__all__ = ["FaultSettings", "Faults", "WRITE_METHODS", "is_dry_run", "status_body"]

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: What happens to the answer of a write the apiserver applied.
LostAnswer = Literal["500", "close"]


@dataclass(frozen=True)
class FaultSettings:
    """The faults in force; the default is none."""

    error_rate: float = 0.0  # fraction of requests refused with 503 before they are forwarded
    latency_ms: float = 0.0  # added before every request is forwarded
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
        if "/" in self.resource:
            raise ValueError(f"resource is a plural resource name like deployments, not {self.resource!r}")

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> "FaultSettings":
        """From the admin endpoint's JSON: unknown keys are refused (a typo must not pass as no fault)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(doc) - known)
        if unknown:
            raise ValueError(f"unknown fault setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        try:
            return cls(error_rate=float(doc.get("error_rate", 0.0)), latency_ms=float(doc.get("latency_ms", 0.0)),
                       fail_writes=int(doc.get("fail_writes", 0)), resource=str(doc.get("resource", "")),
                       no_answer=bool(doc.get("no_answer", False)))
        except (TypeError, ValueError) as e:
            raise ValueError(f"bad fault settings {doc!r}: {e}") from e


def status_body(code: int, reason: str, message: str) -> dict[str, Any]:
    """The ``Status`` a Kubernetes API server answers an error with (the client raises its own exception)."""
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message,
            "reason": reason, "code": code}


def is_dry_run(target: str) -> bool:
    """True when the request target asks for a dry run (``dryRun=All``; any value: the apiserver
    refuses values other than All, and a refused request applies nothing either)."""
    return bool(parse_qs(urlsplit(target).query).get("dryRun"))


def _path(target: str) -> str:
    return urlsplit(target).path


class Faults:
    """The faults in force and their counters (thread-safe; one per proxy process)."""

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

    def set(self, settings: FaultSettings) -> dict[str, Any]:
        """Put ``settings`` in force (the write count starts again); returns :meth:`describe`."""
        with self._lock:
            self._settings = settings
            self._writes_left = settings.fail_writes
        return self.describe()

    def clear(self) -> dict[str, Any]:
        return self.set(FaultSettings())

    def describe(self) -> dict[str, Any]:
        """The settings in force and the counters since the proxy started."""
        with self._lock:
            return {**asdict(self._settings), "refused": self.refused, "writes_failed": self.writes_failed,
                    "writes_left": self._writes_left}

    def delay(self) -> None:
        """Wait the added latency (in the request's own thread: other requests are not held up)."""
        latency = self._settings.latency_ms
        if latency:
            time.sleep(latency / 1000)

    def refusal(self, method: str, target: str) -> dict[str, Any] | None:
        """The 503 Status to answer instead of forwarding, when this request is refused; else None."""
        rate = self._settings.error_rate
        if not rate:
            return None
        with self._lock:
            refused = self._random.random() < rate
            if refused:
                self.refused += 1
        if not refused:
            return None
        return status_body(503, "ServiceUnavailable",
                           f"the server is currently unable to handle the request ({method} {_path(target)}: "
                           f"sandbox fault, error rate {rate:g})")

    def lost_answer(self, method: str, target: str, code: int) -> LostAnswer | None:
        """Whether the apiserver's answer ``code`` to this request is to be lost (module doc):
        ``"500"``, ``"close"``, or None to pass it on. Counts the write when it is lost."""
        if method not in WRITE_METHODS or code >= 400 or is_dry_run(target):
            return None
        resource = self._settings.resource
        with self._lock:
            if self._writes_left <= 0 or (resource and f"/{resource}/" not in f"{_path(target)}/"):
                return None
            self._writes_left -= 1
            self.writes_failed += 1
            return "close" if self._settings.no_answer else "500"

    @staticmethod
    def lost_answer_status(method: str, target: str) -> dict[str, Any]:
        """The 500 Status that replaces a lost answer (etcd's own words for a commit whose reply timed out)."""
        return status_body(500, "InternalError",
                           f"etcdserver: request timed out ({method} {_path(target)}: sandbox fault, the write "
                           "was applied and its answer lost)")
