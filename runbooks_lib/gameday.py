"""A game day: a list of runbook runs, each with the outcome it should have, and one table.

The scenarios live in ``parameters/gameday.yaml``. Each run goes through ``run_notebook``
exactly as ``runbook run`` would, so the game day leaves the same records an on-call engineer
would; the table at the end says, per run, whether it ended as expected and where its record is.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from .errors import ParameterError, RunbookError
from .profiles import project_home

__all__ = ["Scenario", "ScenarioResult", "load_scenarios", "run_gameday", "format_table"]


class Scenario(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    notebook: str
    parameters: dict[str, Any] = {}
    expect: str = "succeeded"
    figure: str | None = None


@dataclass(frozen=True)
class ScenarioResult:
    scenario: Scenario
    outcome: str
    figure: Any
    record: Path | None
    error: str | None

    @property
    def as_expected(self) -> bool:
        return self.outcome == self.scenario.expect


def load_scenarios(path: Path | None = None) -> list[Scenario]:
    path = path or project_home() / "parameters" / "gameday.yaml"
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
        return [Scenario.model_validate(s) for s in raw.get("scenarios", [])]
    except (OSError, yaml.YAMLError, ValidationError) as e:
        raise ParameterError(f"game day scenarios in {path}: {e}") from e


def run_gameday(env: str, scenarios: list[Scenario], home: Path | None = None) -> list[ScenarioResult]:
    from .runner import run_notebook

    home = home or project_home()
    results = []
    for index, scenario in enumerate(scenarios, 1):
        print(f"\n=== [{index}/{len(scenarios)}] {scenario.name}", flush=True)
        params = [(k, str(v)) for k, v in scenario.parameters.items()]
        try:
            result = run_notebook(home / scenario.notebook, env, params, home=home)
        except RunbookError as e:
            results.append(ScenarioResult(scenario, "refused", None, None, str(e)))
            continue
        summary = result.summary or {}
        figure = (summary.get("figures") or {}).get(scenario.figure) if scenario.figure else None
        results.append(ScenarioResult(scenario, summary.get("outcome", "no summary"), figure, result.record, summary.get("error")))
    return results


def format_table(results: list[ScenarioResult], home: Path | None = None) -> str:
    home = home or project_home()
    rows = [("scenario", "runbook", "outcome", "expected", "key figure", "record")]
    for r in results:
        figure = f"{r.scenario.figure}={r.figure}" if r.scenario.figure else ""
        record = str(r.record.relative_to(home)) if r.record and r.record.is_relative_to(home) else str(r.record or "-")
        rows.append((r.scenario.name, Path(r.scenario.notebook).stem, r.outcome,
                     "yes" if r.as_expected else f"NO (expected {r.scenario.expect})", figure, record))
    widths = [max(len(str(row[i])) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths)).rstrip() for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
