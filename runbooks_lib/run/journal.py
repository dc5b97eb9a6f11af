"""A run's journal: append-only JSON lines, one per event, beside the records.

The kernel writes it as the run goes (``run-started``, ``step-started``/``step-finished`` with
each step's key, ``step-result``, leases, gates); ``runbook run`` adds the end when the kernel
dies; ``runbook approve`` adds approvals; ``runbook resume`` reads it back to replay what was
done. Every line passes the redaction filter: no registered secret or token shape reaches it.
"""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from ..config.clock import iso, utcnow
from ..errors import ParameterError, RunbookError
from ..records.redaction import redact

__all__ = ["Journal", "env_folder", "journal_path", "find_journal"]

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")




class Journal:
    """Append-only JSON lines per run: the basis for resuming a run step by step."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)

    @property
    def run_id(self) -> str:
        return self.path.stem

    def write(self, **entry: Any) -> None:
        entry.setdefault("at", iso(utcnow()))
        with self.path.open("a") as f:
            # The journal is a log: registered secrets and token shapes never reach it.
            f.write(redact(json.dumps(entry, default=str)) + "\n")

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.is_file():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def env_folder(env: str | None) -> str:
    """A run's env as a folder name: a refused run may carry any string as env, kept out of paths."""
    return env if env and re.fullmatch(r"[a-z][a-z0-9-]*", env) else "invalid-env"


def journal_path(env: str, run_id: str) -> Path:
    """Where a run's journal lives: beside the records (``RUNBOOKS_RECORDS_URL`` or the
    profile's records folder), so a run's whole trail is in one place, and tests that point
    the records at a temporary folder leave the checkout's outputs/ alone."""
    from ..records.ledger import records_root

    folder = env_folder(env)
    try:
        root = records_root(folder if folder != "invalid-env" else None)
    except RunbookError:  # an unknown env has no profile: its journal goes to the default place
        root = records_root(None)
    return root / "journal" / folder / f"{run_id}.jsonl"


def find_journal(run_id: str) -> Journal:
    """The journal of run ``run_id``, whatever its env (``runbook approve`` / ``resume`` name a run only)."""
    from ..config.profiles import available_envs
    from ..records.ledger import records_root

    if not _RUN_ID.fullmatch(run_id or ""):
        raise ParameterError(f"{run_id!r} is not a run id (the 12 characters `runbook run` printed in the record's name)")
    roots = {records_root(None)}
    for env in available_envs():
        try:
            roots.add(records_root(env))
        except RunbookError:  # a profile that cannot load now (sandbox down) names no other folder
            continue
    for root in sorted(roots):
        found = sorted(root.glob(f"journal/*/{run_id}.jsonl"))
        if found:
            return Journal(found[0])
    raise ParameterError(f"no run {run_id} in {', '.join(str(r / 'journal') for r in sorted(roots))}")
