"""Runtime faults for incident drills, passed to a running workload through a small JSON file.

The orchestrator writes the file with :func:`inject_fault` and removes it with
:func:`clear_fault`; each workload process polls the file it was given (``--fault-file``) a few
times a second. Fields, all optional:

- ``error_rate`` (0..1) and ``extra_latency_ms``: replace the image's own values;
- ``health_fail``: /health answers 500 (the liveness probe fails, the kubelet restarts it);
- ``ready_fail``: /ready answers 503 (the pod leaves the Service's endpoints);
- ``crash_now``: a Unix time; a process started before it exits at once with status 1, so one
  injection crashes the running container once and its restart comes up healthy;
- ``crash_on_start``: every start (and the running process) exits with status 1: a crash loop.
"""
from __future__ import annotations

import json
import os
import tempfile
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Callable

__all__ = ["Fault", "FaultWatcher", "clear_fault", "inject_fault", "read_fault"]


@dataclass(frozen=True)
class Fault:
    """The faults in force; None/False means the image's own behaviour."""

    error_rate: float | None = None
    extra_latency_ms: float | None = None
    health_fail: bool = False
    ready_fail: bool = False
    crash_now: float | None = None
    crash_on_start: bool = False

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> "Fault":
        """Validate a fault document; unknown fields and bad values raise ValueError."""
        unknown = set(data) - FAULT_FIELDS
        if unknown:
            raise ValueError(f"unknown fault fields: {', '.join(sorted(unknown))}; known: {', '.join(sorted(FAULT_FIELDS))}")
        rate = data.get("error_rate")
        if rate is not None and not (isinstance(rate, (int, float)) and 0 <= rate <= 1):
            raise ValueError(f"error_rate must be between 0 and 1, not {rate!r}")
        latency = data.get("extra_latency_ms")
        if latency is not None and not (isinstance(latency, (int, float)) and latency >= 0):
            raise ValueError(f"extra_latency_ms must be a number >= 0, not {latency!r}")
        crash_now = data.get("crash_now")
        if crash_now is not None and not isinstance(crash_now, (int, float)):
            raise ValueError(f"crash_now must be a Unix time, not {crash_now!r}")
        return cls(
            error_rate=None if rate is None else float(rate),
            extra_latency_ms=None if latency is None else float(latency),
            health_fail=bool(data.get("health_fail", False)),
            ready_fail=bool(data.get("ready_fail", False)),
            crash_now=None if crash_now is None else float(crash_now),
            crash_on_start=bool(data.get("crash_on_start", False)),
        )


FAULT_FIELDS = frozenset(f.name for f in fields(Fault))


def read_fault(fault_file: str | Path) -> dict[str, Any]:
    """The fault document in force (``{}`` when there is no file)."""
    try:
        data = json.loads(Path(fault_file).read_text() or "{}")
    except FileNotFoundError:
        return {}
    if not isinstance(data, dict):
        raise ValueError(f"{fault_file}: a fault file holds a JSON object")
    return data


def _write_atomically(path: Path, data: dict[str, Any]) -> None:
    # A rename is atomic: a polling workload never reads a half-written file.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".fault-", dir=path.parent)
    with os.fdopen(fd, "w") as out:
        json.dump(data, out)
    os.replace(tmp, path)


def inject_fault(fault_file: str | Path, **faults: Any) -> dict[str, Any]:
    """Add faults to a workload's fault file (merged with those already in force).

    ``crash_now=True`` is recorded as the current time. Returns the document now in force.
    """
    if faults.get("crash_now") is True:
        faults["crash_now"] = time.time()
    path = Path(fault_file)
    merged = {**read_fault(path), **faults}
    Fault.from_mapping(merged)  # refuse a document the workload would reject
    _write_atomically(path, merged)
    return merged


def clear_fault(fault_file: str | Path, *names: str) -> dict[str, Any]:
    """Remove the named faults, or all of them (the file) when no name is given."""
    path = Path(fault_file)
    if not names:
        path.unlink(missing_ok=True)
        return {}
    remaining = {k: v for k, v in read_fault(path).items() if k not in names}
    _write_atomically(path, remaining)
    return remaining


class FaultWatcher:
    """Polls a fault file in a daemon thread and keeps the parsed :class:`Fault` current.

    A file that cannot be parsed leaves the previous faults in force and is reported once
    through ``on_error`` (the workload logs it), as a config reload failure would be.
    """

    def __init__(
        self,
        fault_file: str | Path | None,
        on_change: Callable[[Fault], None],
        on_error: Callable[[str], None],
        interval_s: float = 0.2,
    ) -> None:
        self.path = Path(fault_file) if fault_file else None
        self.current = Fault()
        self._on_change = on_change
        self._on_error = on_error
        self._interval_s = interval_s
        self._stamp: tuple[int, int, int] | None = None
        self._stop = threading.Event()

    def poll(self) -> None:
        """Reload the file if it changed since the last poll."""
        if self.path is None:
            return
        try:
            st = self.path.stat()
            stamp: tuple[int, int, int] | None = (st.st_ino, st.st_mtime_ns, st.st_size)
        except FileNotFoundError:
            stamp = None
        if stamp == self._stamp:
            return
        self._stamp = stamp
        try:
            fault = Fault.from_mapping(read_fault(self.path)) if stamp else Fault()
        except (ValueError, OSError) as e:
            self._on_error(f"fault file {self.path} ignored: {e}")
            return
        if fault != self.current:
            self.current = fault
            self._on_change(fault)

    def start(self) -> None:
        self.poll()
        threading.Thread(target=self._run, name="fault-watcher", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.poll()
