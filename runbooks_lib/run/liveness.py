"""Is a run's ``runbook run`` process still there? (``dead_runs`` ends the runs whose is not.)

``runbook run`` tells its kernel who it is (``runner_identity``: PID, process start time, host);
the kernel journals it with the run's start. A run with no end in its journal whose runner is
gone is dead (``find_dead``): its Lease may be taken over at once, its record must be sealed.
"""
from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .journal import Journal

__all__ = ["this_process", "runner_identity", "runner_alive", "DeadRun", "find_dead", "run_ended"]


def this_process() -> dict[str, Any]:
    """This process as ``runner_alive`` recognises it later: PID, start time, host."""
    import psutil

    return {"pid": os.getpid(), "created": psutil.Process().create_time(), "host": socket.gethostname()}


def runner_identity(workspace: Path, record: Path, root: Path, home: Path, secret_names: list[str]) -> dict[str, Any]:
    """What a watcher needs to know about this process and where its run's files are."""
    return {**this_process(), "workspace": str(workspace), "record": str(record), "root": str(root),
            "home": str(home), "secret_names": sorted(secret_names)}


def runner_alive(runner: dict[str, Any]) -> bool:
    """Whether the runner still runs. A runner on another machine cannot be seen: assumed alive
    (its Lease goes stale by itself); a PID reused by another process is not the runner."""
    import psutil

    if runner.get("host") != socket.gethostname():
        return True
    try:
        return abs(psutil.Process(int(runner["pid"])).create_time() - float(runner["created"])) < 0.01
    except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, TypeError, ValueError):
        return False


@dataclass(frozen=True)
class DeadRun:
    """A run that has no end in its journal and whose runner is gone."""

    journal: Journal
    started: dict[str, Any]  # the journal's run-started entry

    @property
    def run_id(self) -> str:
        return self.journal.run_id

    @property
    def runner(self) -> dict[str, Any]:
        return dict(self.started.get("runner") or {})


def run_ended(entries: list[dict[str, Any]]) -> bool:
    return any(e.get("event") == "run-finished" for e in entries)


def find_dead(journal: Journal) -> DeadRun | None:
    """The run of ``journal`` if it never ended and its runner is gone (else None)."""
    entries = journal.entries()
    started = next((e for e in entries if e.get("event") == "run-started"), None)
    if started is None or run_ended(entries) or not started.get("runner"):
        return None
    return None if runner_alive(started["runner"]) else DeadRun(journal, started)
