"""A runbook's parameters, checked against the notebook's own ``parameters`` cell.

Papermill silently ignores a mistyped parameter (papermill #667) and parses ``-p`` values by
their look, so ``-p version 1.10`` becomes the float 1.1. Here every parameter is checked
against the notebook's declared parameters before anything runs (an unknown name or a value
of the wrong type is a ParameterError: the run is rejected, exit 2), and ``-p`` values are
converted by the type the notebook declares.

A parameter the operator must choose (a version, a service, a severity) is declared required by
its comment in the parameters cell, ``version = None  # required: image tag``: a run without
it is rejected naming it, instead of acting on a default nobody chose.
"""
from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict

from ..errors import ParameterError

__all__ = ["RunbookParams", "notebook_parameters", "declared_type", "required_parameters", "missing_required", "resolve_parameters",
           "read_parameter_file"]

_REQUIRED = re.compile(r"^\s*required\b", re.IGNORECASE)


class RunbookParams(BaseModel):
    """The base of every runbook's parameters (one schema a notebook, given to ``start()``).

    An unknown name is refused, a number must be finite (``-p analysis_s inf`` once rolled a
    release out and never judged it), and the validated parameters cannot be changed afterwards:
    what the record says ran is what ran. A field without a default is required."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, frozen=True)


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


def required_parameters(declared: dict[str, dict[str, Any]]) -> list[str]:
    """The parameters whose comment starts with ``required`` (``version = None  # required: ...``)."""
    return [name for name, spec in declared.items() if _REQUIRED.match(spec.get("help") or "")]


def missing_required(required: list[str] | tuple[str, ...], given: dict[str, Any]) -> ParameterError | None:
    """The error naming every required parameter not given (or given as None), else None."""
    missing = [name for name in required if given.get(name) is None]
    if not missing:
        return None
    flags = " ".join(f"-p {name} ..." for name in missing)
    return ParameterError(f"missing required parameter(s) {', '.join(missing)}: this runbook does not act on a "
                          f"default nobody chose; pass {flags}")


def _describe(declared: dict[str, dict[str, Any]]) -> str:
    return ", ".join(
        f"{name} ({declared_type(spec) or 'any'}, default {spec.get('default')})" for name, spec in declared.items()
    )


def _from_text(name: str, raw: str, type_name: str) -> Any:
    """A ``-p`` value (always text) as the declared type."""
    if type_name == "bool" and raw.lower() in ("true", "false"):
        return raw.lower() == "true"
    if type_name in ("int", "float"):
        try:
            return int(raw) if type_name == "int" else float(raw)
        except ValueError:
            pass
    elif type_name in ("str", "None", ""):
        return None if raw == "None" and type_name != "str" else raw
    elif type_name != "bool":
        return yaml.safe_load(raw)
    raise ParameterError(f"parameter {name!r} must be a {type_name}, got {raw!r}")


def _convert(name: str, raw: Any, type_name: str | None, from_cli: bool) -> Any:
    """Convert a value to the type the notebook declares; a mismatch is a ParameterError."""
    type_name = (type_name or "").replace("Optional[", "").rstrip("]")
    if from_cli and isinstance(raw, str):
        return _from_text(name, raw, type_name)
    expected = {"bool": bool, "int": int, "float": (int, float), "str": str}.get(type_name)
    if expected and raw is not None and (not isinstance(raw, expected) or (type_name != "bool" and isinstance(raw, bool))):
        raise ParameterError(f"parameter {name!r} must be a {type_name}, got {raw!r}")
    return raw


def resolve_parameters(
    declared: dict[str, dict[str, Any]],
    cli_params: list[tuple[str, str]],
    file_params: dict[str, Any],
) -> dict[str, Any]:
    """Merge ``-f`` then ``-p`` values, refusing any name the notebook does not declare and
    any required parameter left out."""
    given: list[tuple[str, Any, bool]] = [(k, v, False) for k, v in file_params.items()]
    given += [(k, v, True) for k, v in cli_params]
    unknown = sorted({name for name, _, _ in given if name not in declared})
    if unknown:
        raise ParameterError(
            f"unknown parameter(s) {', '.join(unknown)}; this runbook takes: {_describe(declared)}"
        )
    resolved = {
        name: _convert(name, value, declared_type(declared[name]), from_cli)
        for name, value, from_cli in given
    }
    missing = missing_required(required_parameters(declared), resolved)
    if missing is not None:
        raise missing
    return resolved


def read_parameter_file(path: Path | None) -> dict[str, Any]:
    """The mapping in a ``-f`` YAML file (empty without one)."""
    if path is None:
        return {}
    try:
        values = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ParameterError(f"cannot read parameters file {path}: {e}") from e
    if not isinstance(values, dict):
        raise ParameterError(f"parameters file {path} must hold a mapping")
    return values
