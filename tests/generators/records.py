"""Generated records, for the catalog's bench and tests (realistic size and shape)."""
from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path

from runbooks_lib.records.ledger import record_path
from runbooks_lib.records.summary import SUMMARY_MIME

__all__ = ["generate_records", "write_summary_record"]

RUNBOOKS = ("deploy", "rollback", "canary", "incident", "dr_drill")
SERVICES = ("veza-backend-api", "veza-chat-server", "veza-stream-server", "veza-frontend")
OUTCOMES = ("succeeded",) * 8 + ("failed", "refused")


def _notebook(summary: dict, filler: int) -> str:
    cells = [
        {"cell_type": "markdown", "id": "intro", "metadata": {}, "source": f"# {summary['runbook']}\n" + "Step text. " * filler},
        {"cell_type": "code", "id": "run", "execution_count": 1, "metadata": {}, "source": "ctx.step(...)\n" * 5,
         "outputs": [{"output_type": "stream", "name": "stdout", "text": "▶ step\n✓ step: succeeded in 1.0 s\n" * filler}]},
        {"cell_type": "code", "id": "end", "execution_count": 2, "metadata": {}, "source": "ctx.finish()",
         "outputs": [{"output_type": "display_data", "metadata": {},
                      "data": {SUMMARY_MIME: summary, "text/plain": f"{summary['runbook']}: {summary['outcome']}"}}]},
    ]
    return json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}, indent=1)


def generate_records(root: Path, count: int, seed: int = 7, filler: int = 20) -> list[Path]:
    """Write ``count`` records with varied summaries under ``root``; returns their paths."""
    rng = random.Random(seed)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    paths = []
    for i in range(count):
        moment = start + timedelta(minutes=37 * i)
        runbook, env = rng.choice(RUNBOOKS), rng.choice(("sandbox", "staging", "production"))
        outcome = rng.choice(OUTCOMES)
        run_id = f"{i:012x}"
        summary = {
            "version": 1, "runbook": runbook, "env": env, "service": rng.choice(SERVICES), "run_id": run_id,
            "parameters": {"version": f"v1.{rng.randint(0, 9)}.0"}, "operator": rng.choice(("alice", "bob")),
            "started": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "finished": (moment + timedelta(seconds=90)).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "duration_s": 90.0, "outcome": outcome, "failed_step": "Switch traffic" if outcome == "failed" else None,
            "steps": [{"name": f"step {n}", "outcome": "succeeded", "duration_s": 1.0} for n in range(8)],
            "figures": {"time_to_rollback_s": round(rng.uniform(20, 200), 1)} if runbook == "rollback" else {},
            "links": [],
        }
        path = record_path(root, env, runbook, run_id, moment)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_notebook(summary, filler))
        paths.append(path)
    return paths


def write_summary_record(root: Path, summary: dict, filler: int = 2) -> Path:
    """Write one record holding ``summary`` where a run would put it (``<env>/<date>/<runbook>-<time>-<id>``)."""
    moment = datetime.fromisoformat(str(summary["started"]).replace("Z", "+00:00"))
    path = record_path(root, summary["env"], summary["runbook"], summary["run_id"], moment)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(_notebook(summary, filler))
    return path
