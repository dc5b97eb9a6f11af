"""A run whose ``runbook run`` process died: ended for it, within seconds, with nothing lost.

When ``runbook run`` is killed (SIGKILL, the OOM killer, a closed SSH session) its kernel stops
too (ipykernel exits when its parent goes), mid-step, holding the service's Lease; nobody is left
to seal the record: papermill's known failure mode is a run that just stops, leaving nothing
behind. So every run starts a small **watcher** process in a session of its own
(``python -m runbooks_lib.run.dead_runs PID JOURNAL``). It waits for the run to end; if the runner's
process goes away first, it ends the run for it (``close_dead_run``):

- the Leases the journal shows held are released (the next run need not wait for them to go stale);
- the partial notebook papermill kept writing is sealed as the record, with a summary that says
  "the runbook run process died at step N (name)", and the journal ends as a failed run;
- the people on the profile's webhook are told; ``runbook resume RUN_ID`` then continues the run.

The runner's identity (PID, process start time, host) is in the journal's ``run-started``, so a
later ``runbook resume`` can also end a run whose watcher died with it (``liveness.find_dead``).
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from .journal import Journal
from .liveness import DeadRun, find_dead, run_ended

__all__ = ["close_dead_run", "start_watcher", "stop_watcher", "watch"]

WATCHER_NICENESS = 10  # the watcher's CPU priority: below the run's (0), still enough to end a dead run

POLL_S = 0.5


def close_dead_run(dead: DeadRun) -> list[str]:
    """End a dead run: release its Leases, seal its partial record, end its journal, tell people.
    Returns one line per thing done (or not done, and why)."""
    from .lock import held_leases
    from ..records.finalize import finalize_record, runner_summary
    from ..records.seal import SealRefused

    runner, env, entries = dead.runner, str(dead.started.get("env") or ""), dead.journal.entries()
    if run_ended(entries):  # another process got there first
        return [f"run {dead.run_id} had already ended"]
    said = [f"the `runbook run` process of run {dead.run_id} (pid {runner.get('pid')}) is gone"]
    kernel = _stop_kernel(dead.started.get("kernel") or {})
    home = Path(runner["home"]) if runner.get("home") else None
    leases = _release_leases(env, home, entries) if held_leases(entries) else []
    said += kernel + leases
    error = f"pid {runner.get('pid')}, killed or out of memory"
    summary = runner_summary(
        runbook=str(dead.started.get("runbook") or "runbook"), env=env, run_id=dead.run_id,
        parameters=dict(dead.started.get("params") or {}), error=error, journal=dead.journal.path,
        notebook_sha256=None, record=dead.started.get("record"), kernel_died=True, who="runbook run process",
        notes={"ended by": "the run's watcher (runbooks_lib.run.dead_runs)", **({"kernel": "; ".join(kernel)} if kernel else {}),
               **({"leases": "; ".join(leases)} if leases else {})},
    )
    record, root = Path(runner.get("record") or ""), Path(runner.get("root") or "")
    partial = Path(runner.get("workspace") or "/nonexistent") / record.name
    outcome = "no record: the partial notebook is gone"
    if record.name and record.is_file():  # the runner sealed it after all: leave it be
        outcome = f"record already written: {record}"
    elif record.name and partial.is_file():
        sealing = finalize_record(partial, record, root, secret_names=set(runner.get("secret_names") or []),
                                  fallback_summary=summary, html=True)
        outcome = f"NOT SEALED: {sealing}" if isinstance(sealing, SealRefused) else f"record sealed: {record}"
    said.append(outcome)
    # The workspace holds papermill's parameters in clear (papermill #271): it goes, as a run's does.
    shutil.rmtree(runner.get("workspace") or "/nonexistent", ignore_errors=True)
    said.append(_tell(env, home, dead, summary))
    dead.journal.write(event="run-finished", outcome="failed", runner_died=True, error=summary.error,
                       failed_step=summary.failed_step, written_by="runbooks_lib.run.dead_runs", said=said)
    return said


def _stop_kernel(kernel: dict[str, Any]) -> list[str]:
    """The kernel goes with its runner (ipykernel watches its parent); one that did not must not go
    on changing things with nobody recording: it is stopped."""
    import socket

    from .liveness import runner_alive

    # Only a kernel of this machine, and only the very process recorded (not a reused PID).
    if not kernel or kernel.get("host") != socket.gethostname() or not runner_alive(kernel):
        return []
    try:
        os.kill(int(kernel["pid"]), signal.SIGKILL)
    except (OSError, KeyError, ValueError) as e:
        return [f"its kernel (pid {kernel.get('pid')}) still ran and could NOT be stopped: {e}"]
    return [f"its kernel (pid {kernel['pid']}) still ran: stopped"]


def _release_leases(env: str, home: Path | None, entries: list[dict[str, Any]]) -> list[str]:
    from .lock import release_orphaned

    try:
        from ..platform.cluster import Cluster
        from ..config.profiles import load_profile

        return release_orphaned(Cluster(load_profile(env, home)), entries)
    except Exception as e:  # noqa: BLE001 - the record must still be sealed
        return [f"the leases were NOT released ({type(e).__name__}: {e}); they go stale by themselves"]


def _tell(env: str, home: Path | None, dead: DeadRun, summary: Any) -> str:
    from ..platform.notify import Notice, notifier_for
    from ..config.profiles import load_profile

    try:
        delivery = notifier_for(None, load_profile(env, home)).send(Notice(
            severity="warning", summary=f"run {dead.run_id} ({summary.runbook}) died at step {summary.failed_step!r}",
            status="run died", service=str(summary.service or "-"), env=env, record=dead.started.get("record"),
            detail=f"runbook resume {dead.run_id} continues it"))
    except Exception as e:  # noqa: BLE001 - telling people must not stop the rest
        return f"NOT notified ({type(e).__name__}: {e})"
    return f"notified {delivery.target}" if delivery.delivered else f"NOT notified ({delivery.error})"


def start_watcher(journal: Path) -> subprocess.Popen[bytes]:
    """Start the watcher of this process's run (a session of its own: a killed terminal's
    process group does not take it along). The runner stops it when the run ends; what it
    does for a dead run goes into the run's journal."""
    command = [sys.executable, "-m", "runbooks_lib.run.dead_runs", str(os.getpid()), str(journal)]
    # At low priority from its first instruction (`nice`, not only main()'s): its start, an
    # interpreter and a few imports, comes while the run's kernel boots, and must not slow it.
    nice = shutil.which("nice")
    return subprocess.Popen(([nice, "-n", str(WATCHER_NICENESS)] if nice else []) + command,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)


def stop_watcher(watcher: subprocess.Popen[bytes]) -> None:
    """The run ended here, in its runner: the watcher has nothing to do."""
    watcher.terminate()
    try:
        watcher.wait(timeout=5)
    except subprocess.TimeoutExpired:
        watcher.kill()


def watch(runner_pid: int, journal: Journal, give_up_after_s: float = 7 * 24 * 3600) -> int:
    """Wait while the runner lives (it stops this watcher when it ends the run itself); if it dies
    first, end the run for it, unless its journal says it ended anyway."""
    import psutil

    try:
        runner: Any = psutil.Process(runner_pid)  # is_running() also tells a reused PID apart
    except psutil.NoSuchProcess:
        runner = None
    deadline = time.monotonic() + give_up_after_s
    while _alive(runner) and time.monotonic() < deadline:
        time.sleep(POLL_S)
    if time.monotonic() >= deadline:
        return 0
    time.sleep(1.0)  # the kernel goes within a second of its parent: let it stop writing
    dead = find_dead(journal)
    if dead is not None:
        close_dead_run(dead)
    return 0


def _alive(process: Any) -> bool:
    import psutil

    try:
        return process is not None and process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:  # gone between the two looks
        return False


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m runbooks_lib.run.dead_runs RUNNER_PID JOURNAL", file=sys.stderr)
        return 2
    try:  # a watcher must never slow the run it watches (already so when started through `nice`)
        os.setpriority(os.PRIO_PROCESS, 0, max(WATCHER_NICENESS, os.getpriority(os.PRIO_PROCESS, 0)))
    except OSError:
        pass
    return watch(int(args[0]), Journal(Path(args[1])))


if __name__ == "__main__":
    sys.exit(main())
