"""``runbook resume RUN_ID``: continue a run that stopped at a gate or failed, from its journal.

The resume is a new run of the same notebook with the same parameters, linked to the original
(its record says ``resumes``; the original's journal says ``resumed`` by whom). In the kernel,
each step the original completed is replayed, its state checked against the cluster
(``runbooks_lib.run.replay``); the gate finds the approval given meanwhile (``runbooks_lib.run.gates``).
Before any kernel starts, a resume that cannot go anywhere is refused here: an unknown run, a
run that succeeded, one already resumed, one still waiting for an approval nobody gave.
"""
from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

from .approvals import gate_status, pending_gate, run_facts
from ..errors import AwaitingApproval, ParameterError
from .journal import Journal, find_journal
from ..records.redaction import MASK

__all__ = ["resume_run", "resumable"]

_DONE = {"succeeded", "promoted"}


def resumable(journal: Journal) -> dict[str, Any]:
    """The original run's start facts, if it may be resumed now; else a clear error."""
    entries = journal.entries()
    facts = run_facts(entries)
    run_id = journal.run_id
    finished = [e for e in entries if e.get("event") == "run-finished"]
    if not finished:
        entries = _end_if_dead(journal)
        finished = [e for e in entries if e.get("event") == "run-finished"]
    if not finished:
        runner = facts.get("runner") or {}
        raise ParameterError(f"run {run_id} has not finished: its `runbook run` process (pid {runner.get('pid', '?')} "
                             f"on {runner.get('host', '?')}) still runs; nothing to resume yet")
    outcome = finished[-1].get("outcome")
    if outcome in _DONE:
        raise ParameterError(f"run {run_id} {outcome}: there is nothing to resume")
    if outcome == "rejected":
        raise ParameterError(f"run {run_id} was rejected before it started: run it again with `runbook run`")
    resumed = [e for e in entries if e.get("event") == "resumed"]
    if resumed:
        by = resumed[-1].get("by")
        raise ParameterError(f"run {run_id} was already resumed as run {by}: resume that one if it did not finish")
    _refuse_if_being_resumed(journal, entries)
    gate = pending_gate(entries)
    if gate is not None:
        status = gate_status(entries, gate, run_id)
        if status.approval is None:
            raise AwaitingApproval(f"run {run_id} waits for an approval at gate {gate}: "
                                   f"`runbook approve {run_id} --as NAME` first")
    masked = sorted(k for k, v in (facts.get("notebook_parameters") or {}).items() if v == MASK)
    if masked:
        raise ParameterError(f"run {run_id} had secret parameters ({', '.join(masked)}) that no journal keeps: "
                             "start a new run instead")
    return facts


def _refuse_if_being_resumed(journal: Journal, entries: list[dict[str, Any]]) -> None:
    """A resume is marked in the original's journal as it starts (``resuming``), not only at its
    end: a resume that is still running, or that died, must be resumed itself, not the original
    again (which would act on what the original saw, before the resume's own changes)."""
    from .liveness import run_ended

    starts = [e for e in entries if e.get("event") == "resuming"]
    if not starts:
        return
    by = str(starts[-1].get("by"))
    resume = Journal(journal.path.with_name(f"{by}.jsonl"))
    if not resume.entries():
        return  # it stopped before its kernel started: it changed nothing, the original may be resumed
    if not run_ended(_end_if_dead(resume)):
        raise ParameterError(f"run {journal.run_id} is being resumed by run {by} right now")
    raise ParameterError(f"run {journal.run_id} was already resumed as run {by}: resume that one if it did not finish")


def _end_if_dead(journal: Journal) -> list[dict[str, Any]]:
    """A run whose runner died and whose watcher did not end it (it died too): end it now."""
    from .dead_runs import close_dead_run
    from .liveness import find_dead

    dead = find_dead(journal)
    if dead is not None:
        for line in close_dead_run(dead):
            print(f"run {journal.run_id}: {line}")
    return journal.entries()


def resume_run(run_id: str, *, home: Path | None = None) -> Any:
    """Run the original notebook again as a new run that replays what the original completed."""
    from ..config.paths import project_home
    from .runner import run_notebook

    home = home or project_home()
    journal = find_journal(run_id)
    facts = resumable(journal)
    notebook = Path(facts.get("notebook") or home / "notebooks" / f"{facts['runbook']}.ipynb")
    if not notebook.is_file():
        raise ParameterError(f"the notebook of run {run_id} is gone: {notebook}")
    values = dict(facts.get("notebook_parameters") or {})
    dry_run = bool(values.pop("dry_run", False))
    new_run = uuid.uuid4().hex[:12]
    journal.write(event="resuming", by=new_run)
    result = run_notebook(notebook, facts["env"], [], None, dry_run=dry_run, home=home, values=values,
                          facts={"resume_of": run_id, "replay_journal": str(journal.path)}, run_id=new_run)
    journal.write(event="resumed", by=new_run, outcome=(result.summary or {}).get("outcome"),
                  record=(result.summary or {}).get("record"))
    return result
