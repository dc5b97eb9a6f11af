"""The notebooks read alike: a pinned public API, one way to start, to make a step and to title a
table, headings numbered once, and no logic (no branch, no loop, no string assembly) in a cell."""
from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

import runbooks_lib.procedures as procedures

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))
PINNED = ["HealthParams", "HealthCheck", "DeployParams", "DeployRun", "roll_out_and_verify", "RollbackParams", "RollbackRun",
          "RotationParams", "RotationRun", "CanaryParams", "CanaryRun", "IncidentParams", "IncidentResponse",
          "DrillParams", "Drill", "DeliveryParams", "DeliveryMetrics"]


def code_cells(path: Path) -> list[tuple[int, str, list[str]]]:
    nb = nbformat.read(path, 4)
    return [(i, c.source, list(c.metadata.get("tags") or [])) for i, c in enumerate(nb.cells) if c.cell_type == "code"]


def test_the_notebooks_api_is_pinned() -> None:
    assert sorted(procedures.__all__) == sorted(PINNED)
    for name in PINNED:
        assert getattr(procedures, name) is not None


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_notebook_imports_only_the_public_api(path: Path) -> None:
    for _, source, tags in code_cells(path):
        if "parameters" in tags:
            continue
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Import):
                assert [a.name for a in node.names] == ["runbooks_lib"], source
            elif isinstance(node, ast.ImportFrom):
                assert node.module == "runbooks_lib.procedures", f"{path.stem}: from {node.module} import ..."
                assert {a.name for a in node.names} <= set(PINNED), source


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_one_idiom_to_start_to_step_and_to_title(path: Path) -> None:
    cells = code_cells(path)
    text = "\n".join(source for _, source, tags in cells if "parameters" not in tags)
    # start() with the notebook's schema, the typed parameters handed on to its procedure
    assert re.search(r"runbooks_lib\.start\(\"\w+\", env, (\w+Params)\b", text), path.stem
    assert "ctx.parameters)" in text and "ctx.params" not in text and "required=" not in text
    # one way to make a step, one way to title a table
    for forbidden in ("with ctx.step(", "show_tables", "set_caption", "display(", "print("):
        assert forbidden not in text, f"{path.stem}: {forbidden}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_no_logic_in_a_cell(path: Path) -> None:
    for _, source, tags in code_cells(path):
        if "parameters" in tags:
            continue
        for node in ast.walk(ast.parse(source)):
            assert not isinstance(node, (ast.If, ast.For, ast.While, ast.IfExp, ast.JoinedStr, ast.Lambda,
                                         ast.ListComp, ast.DictComp)) or _allowed(node), \
                f"{path.stem}: {type(node).__name__} in\n{source}"


def _allowed(node: ast.AST) -> bool:
    """A step key naming the service or version it acts on (f"rollback-{service}") is not logic."""
    return isinstance(node, ast.JoinedStr) and all(
        isinstance(v, ast.Constant) or (isinstance(v, ast.FormattedValue) and isinstance(v.value, ast.Name))
        for v in node.values)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_headings_are_numbered_once_in_order(path: Path) -> None:
    nb = nbformat.read(path, 4)
    numbers = [int(m.group(1)) for c in nb.cells if c.cell_type == "markdown"
               for m in [re.match(r"## (\d+)\. ", c.source)] if m]
    assert numbers == list(range(1, len(numbers) + 1)), (path.stem, numbers)
    starts = [c for c in nb.cells if c.cell_type == "markdown" and c.source.startswith("## Start")]
    assert len(starts) == 1, path.stem
