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
    "awaiting approval": EXIT_AWAITING_APPROVAL,
    "refused": EXIT_REFUSED,
}
_PARAMETER_ERRORS = {"ParameterError", "ProfileError"}


@dataclass(frozen=True)
class RunResult:
    exit_code: int
    record: Path
    summary: dict[str, Any] | None


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


def _kernel_environment(home: Path, run_id: str, notebook_sha: str) -> None:
    # The kernel inherits this process's environment: that is how it learns its run id.
    os.environ.update(
        RUNBOOK_RUN_ID=run_id,
        RUNBOOK_NOTEBOOK_SHA256=notebook_sha,
        RUNBOOKS_HOME=str(home),
    )
    for var, folder in (("JUPYTER_CONFIG_DIR", "config"), ("JUPYTER_RUNTIME_DIR", "runtime"), ("IPYTHONDIR", "ipython")):
        os.environ.setdefault(var, str(home / ".jupyter" / folder))


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

    run_id = uuid.uuid4().hex[:12]
    root = Path(profile.records.url)
    record = _record_path(root if root.is_absolute() else home / root, env, notebook.stem, run_id)
    record.parent.mkdir(parents=True, exist_ok=True)
    _kernel_environment(home, run_id, hashlib.sha256(notebook.read_bytes()).hexdigest())
    logging.getLogger("papermill").setLevel(logging.INFO)

    error_name = None
    try:
        papermill.execute_notebook(
            str(notebook), str(record), parameters=parameters, progress_bar=True,
            log_output=True, cwd=str(notebook.parent.resolve()),
        )
    except PapermillExecutionError as e:
        error_name = e.ename
    except RunbookError:
        raise
    except Exception as e:  # kernel died, nbclient timeout...: the run failed, the record stays
        error_name = type(e).__name__
        if not record.exists():
            raise RunbookError(f"the run could not start: {type(e).__name__}: {e}") from e
    summary = read_summary(record)
    return RunResult(_exit_code(summary, error_name), record, summary)
