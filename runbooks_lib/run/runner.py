"""``runbook run``: papermill, plus what papermill leaves out.

One run is five short stages, as papermill's own ``execute_notebook`` reads:

- **resolve**: the parameters against the notebook's parameters cell (an unknown name or a
  wrong type rejects the run, exit 2), the profile, the run id and the record's path;
- **prepare**: the run file the kernel reads (run id, record, notebook hash), secret
  parameters registered for redaction, the ``runbook`` engine that echoes outputs live;
- **execute**: papermill in the kernel that has been booting since the command started;
- **finalize**: mask, settle progress bars, add a summary if the kernel wrote none, seal;
- **publish**: copy to the archive if the profile has one; the exit code from the outcome.

Values reach the kernel as papermill parameters and as a run file named in the kernel's
own environment; this process's environment is left as it was. Exit codes are DESIGN.md's,
through ``errors.exit_code_for``.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ParameterError, RunbookError, exit_code_for
from ..config.parameters import notebook_parameters, read_parameter_file, resolve_parameters
from ..config.paths import project_home
from ..records.summary import read_summary

__all__ = ["RunResult", "RunPlan", "run_notebook", "notebook_parameters", "resolve_parameters", "read_summary"]

log = logging.getLogger("runbooks_lib")


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    record: Path
    summary: dict[str, Any] | None
    sealed: bool = False
    html: Path | None = None
    published: str | None = None  # the archive URL the record was copied to, if any
    seal_refusal: str | None = None


@dataclass(frozen=True)
class RunPlan:
    """Everything known about a run before its first cell executes."""

    notebook: Path
    env: str
    home: Path
    parameters: dict[str, Any]
    secret_names: frozenset[str]
    run_id: str
    root: Path  # the local records folder (a remote archive's spool)
    record: Path
    archive: str | None
    storage_options: dict[str, Any] = field(default_factory=dict)
    notebook_sha256: str = ""

    @property
    def record_name(self) -> str:
        """The record's path below the records root, as the summary names it."""
        return self.record.relative_to(self.root).as_posix()

    @property
    def journal(self) -> Path:
        from .context import journal_path

        return journal_path(self.env, self.run_id)


@dataclass
class Execution:
    """What became of the notebook in the kernel."""

    executed: Path
    error: str | None = None  # "Name: message" of the failure, if the run did not end cleanly
    kernel_failed: bool = False  # the kernel died or timed out: no cell error to read
    notes: dict[str, str] = field(default_factory=dict)  # what the runner did after the kernel died


class Workspace:
    """The run's private folder (papermill writes parameters in clear there, papermill #271)
    and its kernel, started at once so that it boots while the run is resolved."""

    def __init__(self, notebook: Path, home: Path) -> None:
        from .kernel import RunKernel, kernel_environment

        self.folder = Path(tempfile.mkdtemp(prefix="runbook-"))
        self.run_file = self.folder / "run.json"
        try:
            self.kernel = RunKernel(self.folder, notebook.parent.resolve(), kernel_environment(home, self.run_file))
        except BaseException:
            shutil.rmtree(self.folder, ignore_errors=True)
            raise

    def __enter__(self) -> "Workspace":
        return self

    def __exit__(self, *exc: Any) -> None:
        try:
            self.kernel.close()
        finally:
            shutil.rmtree(self.folder, ignore_errors=True)


def run_notebook(
    notebook: Path,
    env: str,
    cli_params: list[tuple[str, str]] | None = None,
    param_file: Path | None = None,
    *,
    dry_run: bool = False,
    home: Path | None = None,
    values: dict[str, Any] | None = None,
    facts: dict[str, Any] | None = None,
    run_id: str | None = None,
) -> RunResult:
    """Validate, execute, record and publish one run. Raises ParameterError before anything runs.

    ``values`` are typed parameter values (as a ``-f`` file gives them; ``runbook resume`` passes
    the original run's); ``facts`` go into the run file the kernel reads (``resume_of``...);
    ``run_id`` is the new run's, when the caller named it first (``runbook resume`` marks it)."""
    notebook, home = Path(notebook), home or project_home()
    if not notebook.is_file():
        raise ParameterError(f"no such notebook: {notebook}")
    from .dead_runs import start_watcher, stop_watcher

    with Workspace(notebook, home) as workspace:
        plan = resolve(notebook, env, cli_params or [], param_file, dry_run=dry_run, home=home, values=values,
                       run_id=run_id)
        # The ledger keyed and anchored as the profile says, for a resume as for a run (the
        # provider `runbook` registers reaches Vault; without one, the key file and no anchor).
        from ..records.trust import configure_for

        configure_for(plan.env)
        prepare(plan, workspace, facts or {})
        # If this process is killed, the watcher ends the run for it (runbooks_lib.run.dead_runs).
        plan.journal.parent.mkdir(parents=True, exist_ok=True)
        watcher = start_watcher(plan.journal)
        try:
            execution = execute(plan, workspace)
            if execution.kernel_failed:
                execution.notes.update(release_dead_runs_leases(plan))
                _journal_kernel_death(plan, execution)
            sealing = finalize(plan, execution)
        finally:
            stop_watcher(watcher)
    return publish(plan, execution, sealing)


def resolve(notebook: Path, env: str, cli_params: list[tuple[str, str]], param_file: Path | None, *,
            dry_run: bool, home: Path, values: dict[str, Any] | None = None, run_id: str | None = None) -> RunPlan:
    """Parameters, profile and names: every reason to reject the run, before it starts."""
    from ..config.profiles import load_profile
    from ..records.archive import archive_url
    from ..records.ledger import record_path, records_root
    from ..records.redaction import is_secret_name

    declared = notebook_parameters(notebook)
    cli = list(cli_params) + [("env", env)]
    if dry_run:
        if "dry_run" not in declared:
            raise ParameterError(f"{notebook.name} declares no dry_run parameter: it has no dry run")
        cli.append(("dry_run", "True"))
    parameters = resolve_parameters(declared, cli, {**read_parameter_file(param_file), **(values or {})})
    profile = load_profile(env, home)
    run_id = run_id or uuid.uuid4().hex[:12]  # `runbook resume` names its run before it starts
    root = records_root(env)  # a remote archive's records are sealed in the local spool first
    now = datetime.now(timezone.utc)
    record = record_path(root, env, notebook.stem, run_id, now)
    return RunPlan(
        notebook=notebook, env=env, home=home, parameters=parameters,
        secret_names=frozenset(name for name in parameters if is_secret_name(name)), run_id=run_id, root=root,
        record=record, archive=archive_url(env), storage_options=dict(profile.records.storage_options or {}),
        notebook_sha256=hashlib.sha256(notebook.read_bytes()).hexdigest(),
    )


def prepare(plan: RunPlan, workspace: Workspace, facts: dict[str, Any] | None = None) -> None:
    """Tell the kernel who it is (the run file), and keep secret parameters out of every output."""
    from .kernel import register_engine
    from ..records.redaction import redact, register_secret, secret_parameter_values
    from ..records.summary import masked_parameters

    # The notebook and its parameters (masked) reach the journal: `runbook resume` runs them again.
    from .liveness import runner_identity

    runner = runner_identity(workspace.folder, plan.record, plan.root, plan.home, sorted(plan.secret_names))
    workspace.run_file.write_text(json.dumps(
        {**(facts or {}), "runner": runner, "run_id": plan.run_id, "record": plan.record_name,
         "notebook_sha256": plan.notebook_sha256,
         "notebook": str(plan.notebook.resolve()),
         "parameters": masked_parameters({k: v for k, v in plan.parameters.items() if k != "env"})}, default=str))
    register_secret(secret_parameter_values(plan.parameters))
    _quiet_papermill_logger(redact)
    register_engine(redact)
    workspace.kernel.warm_up()


def execute(plan: RunPlan, workspace: Workspace) -> Execution:
    """Run the notebook with papermill in the workspace's kernel. A failing cell is not an
    exception here: the executed notebook is the record of the failure."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from ..records.redaction import redact

    from ..records.export import prepare_exporter

    executed = workspace.folder / plan.record.name
    export_warm_up = WhenKernelWaits(prepare_exporter)  # the HTML export's imports, while the runbook waits
    try:
        papermill.execute_notebook(
            str(plan.notebook), str(executed), parameters=plan.parameters, engine_name="runbook",
            progress_bar=False, log_output=True, cwd=str(plan.notebook.parent.resolve()),
            km=workspace.kernel.manager, on_cell_start=export_warm_up.cell_started,
            on_cell_executed=export_warm_up.cell_done,
        )
    except PapermillExecutionError as e:
        return Execution(executed, error=redact(f"{e.ename}: {e.evalue}"))
    except RunbookError:
        raise
    except Exception as e:  # kernel died, nbclient timeout...: the run failed, the record stays
        # The kernel's own last words (an import that failed, "Killed"...) say why; nbclient's do not.
        tail = redact(workspace.kernel.log_tail())
        text = redact(f"{type(e).__name__}: {e}") + (f"\nkernel log:\n{tail}" if tail else "")
        if not executed.exists():
            raise RunbookError(f"the run could not start: {text}") from None
        return Execution(executed, error=text, kernel_failed=True)
    return Execution(executed)


def release_dead_runs_leases(plan: RunPlan) -> dict[str, str]:
    """The kernel died holding locks (its journal says which): release them now, so the next
    run is not refused for the lease's duration. Best effort: a lease left is stale soon."""
    from .context import Journal
    from .lock import held_leases, release_orphaned

    entries = Journal(plan.journal).entries()
    if not held_leases(entries):
        return {}
    try:
        from ..platform.cluster import Cluster
        from ..config.profiles import load_profile

        said = release_orphaned(Cluster(load_profile(plan.env, plan.home)), entries)
    except Exception as e:  # the run's record must still be sealed
        said = [f"the dead run's leases were NOT released ({type(e).__name__}: {e}); they go stale by themselves"]
    for line in said:
        log.warning("lease %s", line)
    return {"leases": "; ".join(said)}


def _journal_kernel_death(plan: RunPlan, execution: Execution) -> None:
    """The journal ends as the record does: the run is over, failed, and why (a resume reads it)."""
    from .context import Journal

    try:
        Journal(plan.journal).write(event="run-finished", outcome="failed", kernel_died=True, error=execution.error,
                                    written_by="runbook run", **execution.notes)
    except OSError as e:
        log.warning("could not journal the kernel's death: %s", e)


def finalize(plan: RunPlan, execution: Execution) -> Any:
    """The executed notebook becomes the sealed record (``SealResult``), or ``SealRefused``."""
    from ..records.finalize import finalize_record, runner_summary

    fallback = None
    if execution.error is not None:
        fallback = runner_summary(
            runbook=plan.notebook.stem, env=plan.env, run_id=plan.run_id, parameters=plan.parameters,
            error=execution.error, journal=plan.journal, notebook_sha256=plan.notebook_sha256,
            record=plan.record_name, kernel_died=execution.kernel_failed, notes=execution.notes,
        )
    return finalize_record(execution.executed, plan.record, plan.root, secret_names=set(plan.secret_names),
                           fallback_summary=fallback)


def publish(plan: RunPlan, execution: Execution, sealing: Any) -> RunResult:
    """The run's result: exit code from the record's outcome; a copy in the archive if any."""
    from ..records.seal import SealRefused

    refused = isinstance(sealing, SealRefused)
    # A refused record is not in the records folder: its summary is read where the seal left it
    # (the quarantine), or not at all when it could not be written anywhere.
    readable = _refused_copy(plan, sealing) if refused else plan.record
    summary = read_summary(readable) if readable is not None else None
    if summary is not None:
        exit_code = exit_code_for(summary.get("outcome"))
    else:  # a notebook that never called start(): only whether it ran through
        exit_code = exit_code_for("failed" if execution.error else "succeeded")
    if refused:
        log.error("%s", sealing)
        return RunResult(exit_code or exit_code_for("failed"), plan.record, summary, seal_refusal=str(sealing))
    published = None
    if plan.archive is not None:
        from ..records.archive import publish as copy_to_archive

        try:
            copy_to_archive(plan.root, plan.archive, [plan.record], plan.storage_options)
            published = plan.archive
        except RunbookError as e:
            log.error("NOT PUBLISHED: %s", e)
    return RunResult(exit_code, plan.record, summary, sealed=True, html=sealing.html, published=published)


def _refused_copy(plan: RunPlan, refusal: Any) -> Path | None:
    """Where a refused record is now: its quarantine folder's copy, if the seal moved it there."""
    folder = getattr(refusal, "quarantined", None)
    if folder is None:
        return None
    copy = Path(folder) / plan.record.name
    return copy if copy.is_file() else None


class WhenKernelWaits:
    """Runs ``work`` in the background (``_in_background``) the first time a cell has run for
    ``after_s``: the runbook is then waiting on something (a rollout, an observation window) and
    the CPU is free. Until then the kernel's start and the steps up to the change need it; on a
    two-core machine a warm-up beside them delays the change itself. nbclient's cell hooks call it."""

    def __init__(self, work: Any, after_s: float = 1.0) -> None:
        self.work, self.after_s = work, after_s
        self.started = False
        self._timer: threading.Timer | None = None

    def cell_started(self, **_: Any) -> None:
        self.cell_done()
        if not self.started:
            self._timer = threading.Timer(self.after_s, self.start)
            self._timer.daemon = True
            self._timer.start()

    def cell_done(self, **_: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def start(self) -> None:
        if not self.started:
            self.started = True
            _in_background(self.work)


def _in_background(work: Any) -> None:
    """Run ``work()`` in a daemon thread at low CPU priority: it must not slow the kernel."""

    def run() -> None:
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 10)  # this thread only (Linux)
        except (AttributeError, OSError):
            pass
        try:
            work()
        except Exception as e:  # only a head start: finalize does the real work and reports
            log.debug("background %s failed: %s", getattr(work, "__name__", work), e)

    threading.Thread(target=run, name="runbook-prefetch", daemon=True).start()


class _RedactingFilter(logging.Filter):
    """Masks secrets in papermill's own log lines."""

    def __init__(self, redact: Any) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        return True


def _quiet_papermill_logger(redact: Any) -> None:
    """papermill's log says which kernel and which cell; the echoed outputs say what matters.
    Warnings still show (redacted)."""
    logger = logging.getLogger("papermill")
    if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
        logger.addFilter(_RedactingFilter(redact))
    if not any(getattr(h, "_runbook", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        handler.setLevel(logging.WARNING)
        handler._runbook = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
