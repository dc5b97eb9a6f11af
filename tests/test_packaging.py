"""The project's own files agree with each other."""
from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import nbformat
import yaml

PROJECT = Path(__file__).resolve().parent.parent


def test_environment_yml_matches_pyproject() -> None:
    pyproject = tomllib.loads((PROJECT / "pyproject.toml").read_text())
    env = yaml.safe_load((PROJECT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    minimum = re.search(r">=\s*(\d+\.\d+)", pyproject["project"]["requires-python"]).group(1)
    assert python == f"python={minimum}"
    pip_lines = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert pip_lines == ["-e .[dev]"]
    assert "dev" in pyproject["project"]["optional-dependencies"]


def test_ci_runs_exactly_the_readme_test_command() -> None:
    ci = (PROJECT / ".ci" / "run").read_text()
    commands = [line for line in ci.splitlines() if line.strip() and not line.startswith("#")]
    assert commands[-1].strip() == "make test"
    assert "make test" in (PROJECT / "README.md").read_text()
    assert "make demo" in (PROJECT / "README.md").read_text()


def test_notebooks_are_stored_without_outputs() -> None:
    notebooks = sorted((PROJECT / "notebooks").glob("*.ipynb")) + sorted((PROJECT / "tests").rglob("*.ipynb"))
    for path in notebooks:
        nb = nbformat.read(str(path), as_version=4)
        for index, cell in enumerate(nb.cells):
            if cell.cell_type == "code":
                assert cell.get("outputs") == [], f"{path.name} cell {index} has outputs"
                assert cell.get("execution_count") is None, f"{path.name} cell {index} has an execution count"


def test_notebook_cells_have_their_ids() -> None:
    """nbformat 4.5 cells carry an id (a cell added by hand without one warns at every run, and
    nbformat says it will become an error); ids are unique within a notebook."""
    import json

    for path in sorted((PROJECT / "notebooks").glob("*.ipynb")):
        cells = json.loads(path.read_text())["cells"]
        ids = [c.get("id") for c in cells]
        assert all(ids), f"{path.name}: cells {[i for i, v in enumerate(ids) if not v]} have no id"
        assert len(set(ids)) == len(ids), f"{path.name}: duplicate cell ids"


def test_runbooks_have_a_parameters_cell_with_env() -> None:
    for path in sorted((PROJECT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tagged) == 1, f"{path.name} needs exactly one cell tagged 'parameters'"
        assert re.search(r"^env\s*(:\s*str)?\s*=", tagged[0].source, re.M), f"{path.name} has no env parameter"


def test_papermill_sees_every_parameter_the_cell_assigns() -> None:
    """papermill's parser skips lines it cannot read (a comment with '=' once hid to_revision)."""
    import ast

    import papermill

    for path in sorted((PROJECT / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        cell = next(c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", []))
        assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, (ast.Assign, ast.AnnAssign))
                    for t in (node.targets if isinstance(node, ast.Assign) else [node.target]) if isinstance(t, ast.Name)]
        assert list(papermill.inspect_notebook(str(path))) == assigned, path.name
