"""What ``runbook run`` does with an executed notebook before it becomes a record.

The kernel writes its outputs through the redaction filters, but papermill itself writes
the injected parameters cell (and ``metadata.papermill.parameters``) in clear (papermill
#271). So the run executes into a private temporary folder; then the secret parameters
are masked, progress bars are settled to their final state (``progress``), a summary is added if
the kernel died without writing one, the notebook is written to a private workspace under the
records folder, and sealed from there (scanned, exported, moved into place, chained) — or, if the
seal refuses it, moved to the quarantine (``records.quarantine``): never into the records folder.
"""
from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .progress import settle_progress
from .quarantine import workspace, write_private
from .redaction import redact, redact_object
from .seal import SealRefused, SealResult, mask_injected_parameters, seal_staged
from .summary import Summary, masked_parameters, read_summary, summary_bundle

__all__ = ["finalize_record", "runner_summary"]


def _unfinished_step(journal: Path) -> tuple[int, str] | None:
    """The step the journal saw start but never finish, and its number in the run (1 for the
    first step started): where the kernel died."""
    started: list[tuple[int, str]] = []
    count = 0
    try:
        lines = journal.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if entry.get("event") == "step-started":
            count += 1
            started.append((count, entry.get("step")))
        elif entry.get("event") == "step-finished":
            for i in range(len(started) - 1, -1, -1):
                if started[i][1] == entry.get("step"):
                    del started[i]
                    break
    return started[-1] if started else None


def runner_summary(*, runbook: str, env: str, run_id: str, parameters: dict[str, Any], error: str,
                   journal: Path | None, notebook_sha256: str | None, record: str | None,
                   kernel_died: bool = False, notes: dict[str, str] | None = None, who: str = "kernel") -> Summary:
    """A summary written by the runner for a kernel that died before writing its own (or by
    ``dead_runs`` for a run whose ``who``, the runner itself, died)."""
    now = datetime.now(timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    unfinished = _unfinished_step(journal) if journal else None
    if kernel_died:
        where = f"at step {unfinished[0]} ({unfinished[1]})" if unfinished else "outside any step"
        error = f"the {who} died {where}: {error}"
    return Summary(
        runbook=runbook, env=env, run_id=run_id, outcome="failed", service=parameters.get("service"),
        parameters=masked_parameters(parameters), notebook_sha256=notebook_sha256, record=record, finished=now,
        failed_step=unfinished[1] if unfinished else "(kernel)", error=redact_object(error),
        written_by=f"runbook run (the {who} ended without writing a summary)" if who == "kernel"
        else "runbooks_lib.run.dead_runs (the run's watcher)", notes=dict(notes or {}),
    )


def finalize_record(executed: Path, record: Path, root: Path, *, secret_names: set[str],
                    fallback_summary: Summary | None, html: bool = True) -> SealResult | SealRefused:
    """Mask, complete and seal an executed notebook as ``record``. Returns the seal's result."""
    import nbformat

    nb = nbformat.read(str(executed), as_version=4)
    mask_injected_parameters(nb, frozenset(secret_names))
    settle_progress(nb)  # each bar's final state, as stdout: not pages of red redraws
    staged = workspace(root, record.stem) / record.name
    write_private(staged, nbformat.writes(nb))
    if fallback_summary is not None and read_summary(staged) is None:
        cell = nbformat.v4.new_code_cell("# The kernel ended without a summary: `runbook run` wrote this one.")
        cell.outputs = [nbformat.v4.new_output("display_data", data=summary_bundle(fallback_summary))]
        nb.cells.append(cell)
        write_private(staged, nbformat.writes(nb))
    try:
        return seal_staged(staged, record, root, html=html)
    except SealRefused as refused:  # already quarantined, with the export that failed
        return refused
    except Exception as e:  # a workspace that cannot be written must not lose the run's exit code
        return SealRefused(record, [], reason=redact(f"could not be sealed: {type(e).__name__}: {e}"))
