"""Resuming a run from its journal: what was done, and whether the cluster still says so.

A step run with ``RunContext.run_step`` journals its result (text or a table) and the state it
leaves (a few facts read back from the cluster: a Deployment's generation and image, a Secret's
key hashes). A run started by ``runbook resume`` loads the original run's journal here; each
step already completed is *replayed* — its recorded result shown again, not repeated — after its
state has been read again and compared: anything changed since (someone edited the Deployment by
hand) is drift, and the resume stops with exit 4 saying what changed instead of acting on stale
facts. Gates passed or approved in the original run are found here too.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from ..display import Titled
from .approvals import GateStatus, gate_status, run_facts
from .journal import Journal

__all__ = ["Replay", "CompletedStep", "describe_drift", "encode_result", "decode_result"]

#: Facts that change without anyone changing what runs (status writes bump resourceVersion):
#: shown in a drift message, never a reason for one on their own.
INFORMATIONAL = frozenset({"resourceVersion"})


def encode_result(value: Any) -> Any:
    """A step's result as JSON: text and numbers as they are, a table as columns and rows."""
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if isinstance(value, Titled):
        return {**encode_result(value.frame), "title": value.title}
    if hasattr(value, "reset_index") and hasattr(value, "columns"):  # a pandas DataFrame
        names = [n for n in value.index.names if n is not None]
        flat = value.reset_index() if names else value
        rows = [[None if _missing(cell) else (cell if isinstance(cell, (str, int, float, bool)) else str(cell))
                 for cell in row] for row in flat.itertuples(index=False)]
        return {"table": {"columns": [str(c) for c in flat.columns], "rows": rows, "index": names}}
    return {"text": str(value)}


def _missing(cell: Any) -> bool:
    try:
        return bool(cell != cell)  # NaN
    except (TypeError, ValueError):
        return False


def decode_result(value: Any) -> Any:
    """The inverse of ``encode_result`` (a table comes back as a DataFrame)."""
    if isinstance(value, dict) and "table" in value:
        import pandas as pd

        table = value["table"]
        frame = pd.DataFrame(table["rows"], columns=table["columns"])
        frame = frame.set_index(table["index"]) if table.get("index") else frame
        return Titled(value["title"], frame) if value.get("title") else frame
    if isinstance(value, dict) and "text" in value:
        return value["text"]
    return value


def describe_drift(before: Mapping[str, Any] | None, now: Mapping[str, Any] | None) -> str | None:
    """What changed between two readings of the same state, in words; None when nothing did."""
    before, now = dict(before or {}), dict(now or {})
    changed = [name for name in sorted(set(before) | set(now))
               if name not in INFORMATIONAL and before.get(name) != now.get(name)]
    if not changed:
        return None
    words = [f"{name} {_show(before.get(name))} → {_show(now.get(name))}" for name in changed]
    for name in sorted(INFORMATIONAL & (set(before) | set(now))):
        if before.get(name) != now.get(name):
            words.append(f"{name} {before.get(name)} → {now.get(name)}")
    what = now.get("object") or before.get("object")
    return (f"{what}: " if what else "") + "; ".join(words)


def _show(value: Any) -> str:
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}={v}" for k, v in sorted(value.items())) + "}"
    return "(absent)" if value is None else str(value)


@dataclass(frozen=True)
class CompletedStep:
    """A step the original run completed, as its journal recorded it."""

    name: str
    key: str
    finished_at: str | None
    result: Any = None
    state: dict[str, Any] | None = None
    replayed_from: str | None = None  # the run that first did it, when this one replayed it too


@dataclass
class Replay:
    """The journal of the run being resumed, read once at the resumed run's start."""

    run_id: str
    facts: dict[str, Any]
    entries: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def load(cls, journal_file: Path | str) -> "Replay":
        journal = Journal(Path(journal_file))
        entries = journal.entries()
        return cls(journal.run_id, run_facts(entries), entries)

    @property
    def operator(self) -> str | None:
        return self.facts.get("operator")

    @property
    def record(self) -> str | None:
        return self.facts.get("record")

    def completed(self, key: str) -> CompletedStep | None:
        """The step with ``key`` if the run completed it and recorded its result (run_step)."""
        result_entry = None
        for entry in self.entries:
            if entry.get("key") != key:
                continue
            if entry.get("event") == "step-result":
                result_entry = entry
            elif entry.get("event") == "step-finished" and entry.get("outcome") not in ("succeeded", "replayed", "skipped"):
                result_entry = None  # done again later and failed: not completed
        if result_entry is None:
            return None
        return CompletedStep(name=result_entry.get("step") or key, key=key, finished_at=result_entry.get("at"),
                             result=result_entry.get("result"), state=result_entry.get("state"),
                             replayed_from=result_entry.get("replayed_from"))

    def latest_state(self, state: Mapping[str, Any]) -> dict[str, Any]:
        """The last reading the run journaled of the object ``state`` describes (after its own
        later steps, e.g. the rollout it made), else ``state`` itself."""
        what, latest = state.get("object"), dict(state)
        for entry in self.entries:
            readings = entry.get("states") if entry.get("event") == "state" else [entry.get("state")]
            for reading in readings or []:
                if isinstance(reading, dict) and what is not None and reading.get("object") == what:
                    latest = reading
        return latest

    def gate(self, name: str) -> GateStatus:
        return gate_status(self.entries, name, self.run_id)
