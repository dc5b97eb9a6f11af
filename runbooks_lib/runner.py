"""``runbook run``: papermill, plus what papermill leaves out.

Papermill silently ignores a mistyped parameter (papermill #667) and parses ``-p`` values by
their look, so ``-p version 1.10`` becomes the float 1.1. Here every parameter is checked
against the notebook's own parameters cell before anything runs (unknown or mistyped → exit 2),
``-p`` values are converted by the type the notebook declares, and the record gets a
predictable name under ``outputs/<env>/<date>/``. Exit codes are DESIGN.md's.
"""
from __future__ import annotations

import ast
import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from .context import SUMMARY_MIME
from .errors import ParameterError, RunbookError
from .profiles import load_profile, project_home

__all__ = ["RunResult", "run_notebook", "notebook_parameters", "resolve_parameters", "read_summary"]

EXIT_OK, EXIT_FAILED, EXIT_BAD_PARAMETERS, EXIT_AWAITING_APPROVAL, EXIT_REFUSED = 0, 1, 2, 3, 4
_EXIT_BY_OUTCOME = {
    "succeeded": EXIT_OK,
    "failed": EXIT_FAILED,
    "aborted": EXIT_FAILED,
    "promoted": EXIT_OK,  # a canary's good end (its bad end is "aborted")
    "awaiting approval": EXIT_AWAITING_APPROVAL,
    "refused": EXIT_REFUSED,
}
_PARAMETER_ERRORS = {"ParameterError", "ProfileError"}


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    record: Path
    summary: dict[str, Any] | None
    sealed: bool = False
    html: Path | None = None
    published: str | None = None  # the archive URL the record was copied to, if any
    seal_refusal: str | None = None


def notebook_parameters(notebook: Path) -> dict[str, dict[str, Any]]:
    """The parameters a notebook declares in its ``parameters`` cell, by name."""
    import papermill

    declared = papermill.inspect_notebook(str(notebook))
    if not declared:
        raise ParameterError(f"{notebook} has no cell tagged 'parameters': it is not a runbook")
    return declared


def declared_type(spec: dict[str, Any]) -> str | None:
    """The declared type: the annotation if any, else the type of the literal default."""
    annotated = spec.get("inferred_type_name")
    if annotated and annotated != "None":
        return annotated
    try:
        default = ast.literal_eval(spec.get("default") or "None")
    except (ValueError, SyntaxError):
        return None
    return None if default is None else type(default).__name__


def _describe(declared: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{name} ({declared_type(spec) or 'any'}, default {spec.get('default')})" for name, spec in declared.items()
    )


def _convert(name: str, raw: Any, type_name: str | None, from_cli: bool) -> Any:
    """Convert a value to the type the notebook declares; a mismatch is a ParameterError."""
    type_name = (type_name or "").replace("Optional[", "").rstrip("]")
    if from_cli and isinstance(raw, str):
        if type_name == "bool":
            if raw.lower() in ("true", "false"):
                return raw.lower() == "true"
        elif type_name == "int":
            try:
                return int(raw)
            except ValueError:
                pass
        elif type_name == "float":
            try:
                return float(raw)
            except ValueError:
                pass
        elif type_name in ("str", "None", ""):
            return None if raw == "None" and type_name != "str" else raw
        else:
            return yaml.safe_load(raw)
        raise ParameterError(f"parameter {name!r} must be a {type_name}, got {raw!r}")
    expected = {"bool": bool, "int": int, "float": (int, float), "str": str}.get(type_name)
    if expected and raw is not None and (not isinstance(raw, expected) or (type_name != "bool" and isinstance(raw, bool))):
        raise ParameterError(f"parameter {name!r} must be a {type_name}, got {raw!r}")
    return raw


def resolve_parameters(
    declared: dict[str, dict[str, Any]],
    cli_params: list[tuple[str, str]],
    file_params: dict[str, Any],
) -> dict[str, Any]:
    """Merge ``-f`` then ``-p`` values, refusing any name the notebook does not declare."""
    given: list[tuple[str, Any, bool]] = [(k, v, False) for k, v in file_params.items()]
    given += [(k, v, True) for k, v in cli_params]
    unknown = sorted({name for name, _, _ in given if name not in declared})
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)}; this runbook takes: {_describe(declared)}"
        )
    return {
        name: _convert(name, value, declared_type(declared[name]), from_cli)
        for name, value, from_cli in given
    }


def read_summary(record: Path) -> dict[str, Any] | None:
    """The last summary scrap in an executed notebook, or None."""
    import nbformat

    nb = nbformat.read(str(record), as_version=4)
    found = None
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if SUMMARY_MIME in data:
                found = data[SUMMARY_MIME]
    return json.loads(found) if isinstance(found, str) else found


def _record_path(root: Path, env: str, runbook: str, run_id: str) -> Path:
    now = datetime.now(timezone.utc)
    return root / env / now.strftime("%Y-%m-%d") / f"{runbook}-{now.strftime('%H%M%SZ')}-{run_id}.ipynb"


def _exit_code(summary: dict[str, Any] | None, error_name: str | None) -> int:
    if error_name in _PARAMETER_ERRORS:
        return EXIT_BAD_PARAMETERS
    if summary is None:
        return EXIT_OK if error_name is None else EXIT_FAILED
    return _EXIT_BY_OUTCOME.get(summary.get("outcome", ""), EXIT_FAILED)


def _ipc_kernel_manager() -> type:
    """A kernel manager talking to the kernel over Unix sockets, not TCP on loopback: nothing
    else on a shared machine can reach the kernel, and ipykernel stops warning about it."""
    import tempfile

    from jupyter_client.manager import AsyncKernelManager
    from traitlets import CaselessStrEnum, default

    class IPCKernelManager(AsyncKernelManager):
        transport = CaselessStrEnum(["tcp", "ipc"], default_value="ipc", config=True)

        @default("ip")
        def _private_socket_prefix(self) -> str:
            # jupyter_client's default is "kernel-ipc" in the working directory, with socket numbers
            # chosen by which files exist: two runs started at once in one folder took the same
            # sockets and one kernel never answered. A private folder per kernel (short: Unix
            # socket paths are limited to ~100 bytes).
            return os.path.join(tempfile.mkdtemp(prefix="rbk-"), "ipc")

        async def _async_cleanup_resources(self, restart: bool = False) -> None:
            await super()._async_cleanup_resources(restart)
            if not restart:
                shutil.rmtree(os.path.dirname(self.ip), ignore_errors=True)

    return IPCKernelManager


def _stream_cell_output() -> None:
    """Show what the runbook prints while it runs (papermill logs it at INFO)."""
    logger = logging.getLogger("papermill")
    logger.setLevel(logging.INFO)
    if not any(getattr(h, "_runbook", False) for h in logger.handlers):
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        # papermill's per-cell markers say nothing a reader needs; the progress bar counts cells.
        handler.addFilter(lambda r: not r.getMessage().startswith(("Executing Cell", "Ending Cell")))
        handler._runbook = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False


def _kernel_environment(home: Path, run_id: str, notebook_sha: str) -> None:
    # The kernel inherits this process's environment: that is how it learns its run id.
    os.environ.update(
        RUNBOOK_RUN_ID=run_id,
        RUNBOOK_NOTEBOOK_SHA256=notebook_sha,
        RUNBOOKS_HOME=str(home),
    )
    for var, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        os.environ.setdefault(var, str(home / ".jupyter" / folder))
        Path(os.environ[var]).mkdir(parents=True, exist_ok=True)


def run_notebook(
    notebook: Path,
    env: str,
    cli_params: list[tuple[str, str]] | None = None,
    param_file: Path | None = None,
    *,
    dry_run: bool = False,
    home: Path | None = None,
) -> RunResult:
    """Validate, execute and name one run. Raises ParameterError before anything runs."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    home = home or project_home()
    notebook = Path(notebook)
    if not notebook.is_file():
        raise ParameterError(f"no such notebook: {notebook}")
    declared = notebook_parameters(notebook)
    file_params: dict[str, Any] = {}
    if param_file is not None:
        try:
            file_params = yaml.safe_load(Path(param_file).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ParameterError(f"cannot read parameters file {param_file}: {e}") from e
        if not isinstance(file_params, dict):
            raise ParameterError(f"parameters file {param_file} must hold a mapping")
    cli = list(cli_params or []) + [("env", env)]
    if dry_run:
        if "dry_run" not in declared:
            raise ParameterError(f"{notebook.name} declares no dry_run parameter: it has no dry run")
        cli.append(("dry_run", "True"))
    parameters = resolve_parameters(declared, cli, file_params)
    profile = load_profile(env, home)  # a bad profile is exit 2, before any kernel starts

    from .records.finalize import finalize_record, runner_summary
    from .records.redaction import is_secret_name, redact, register_secret
    from .records.seal import SealRefused

    run_id = uuid.uuid4().hex[:12]
    from .records.archive import archive_url
    from .records.ledger import records_root

    root = records_root(env)  # a remote archive's records are sealed in the local spool first
    archive = archive_url(env)
    record = _record_path(root, env, notebook.stem, run_id)
    notebook_sha = hashlib.sha256(notebook.read_bytes()).hexdigest()
    _kernel_environment(home, run_id, notebook_sha)
    os.environ["RUNBOOK_RECORD"] = record.relative_to(root).as_posix()
    secret_names = {name for name in parameters if is_secret_name(name)}
    register_secret([v for name, v in parameters.items() if name in secret_names and isinstance(v, str)])
    _redact_logs(redact)
    _stream_cell_output()
    # papermill writes the injected parameters in clear as it goes (papermill #271): execute
    # into a private folder and let only the masked, sealed notebook reach the records.
    private = Path(tempfile.mkdtemp(prefix="runbook-"))
    executed = private / record.name

    error_name = error_text = None
    try:
        try:
            papermill.execute_notebook(
                str(notebook), str(executed), parameters=parameters, progress_bar=True,
                log_output=True, cwd=str(notebook.parent.resolve()), kernel_manager_class=_ipc_kernel_manager(),
            )
        except PapermillExecutionError as e:
            error_name = e.ename
        except RunbookError:
            raise
        except Exception as e:  # kernel died, nbclient timeout...: the run failed, the record stays
            error_name, error_text = type(e).__name__, f"{type(e).__name__}: {e}"
            if not executed.exists():
                raise RunbookError(redact(f"the run could not start: {type(e).__name__}: {e}")) from None
        fallback = None
        if error_text is not None:
            fallback = runner_summary(
                runbook=notebook.stem, env=env, run_id=run_id, parameters=parameters, error=error_text,
                journal=home / "outputs" / "journal" / env / f"{run_id}.jsonl", notebook_sha256=notebook_sha,
                record=os.environ["RUNBOOK_RECORD"],
            )
        sealing = finalize_record(executed, record, root, secret_names=secret_names, fallback_summary=fallback)
    finally:
        shutil.rmtree(private, ignore_errors=True)
    summary = read_summary(record)
    exit_code = _exit_code(summary, error_name)
    if isinstance(sealing, SealRefused):
        logging.getLogger("runbooks_lib").error("%s", sealing)
        return RunResult(exit_code or EXIT_FAILED, record, summary, seal_refusal=str(sealing))
    published = None
    if archive is not None:
        from .records.archive import publish

        try:
            publish(root, archive, [record], profile.records.storage_options)
            published = archive
        except RunbookError as e:
            logging.getLogger("runbooks_lib").error("NOT PUBLISHED: %s", e)
    return RunResult(exit_code, record, summary, sealed=True, html=sealing.html, published=published)


class _RedactingFilter(logging.Filter):
    """Masks secrets in papermill's log lines (it logs every cell output with log_output)."""

    def __init__(self, redact: Any) -> None:
        super().__init__()
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg, record.args = self.redact(record.getMessage()), None
        return True


def _redact_logs(redact: Any) -> None:
    logger = logging.getLogger("papermill")
    logger.setLevel(logging.INFO)
    if not any(isinstance(f, _RedactingFilter) for f in logger.filters):
        logger.addFilter(_RedactingFilter(redact))
