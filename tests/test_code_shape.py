"""Functions a newcomer can see whole: none in the packages longer than 60 lines."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LIMIT = 60


def long_functions(package: Path) -> list[str]:
    """``file:line name (n lines)`` of every function longer than LIMIT, paths from the package's parent."""
    found = []
    for path in sorted(package.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > LIMIT:
                    found.append(f"{path.relative_to(package.parent)}:{node.lineno} {node.name} ({length} lines)")
    return found


@pytest.mark.parametrize("package", ["runbooks_lib", "runbooks_sandbox"])
def test_no_function_is_longer_than_a_screen(package: str) -> None:
    assert long_functions(ROOT / package) == []


def test_the_check_counts_lines(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "m.py").write_text("def short():\n    return 1\n\n\ndef long():\n" + "    x = 1\n" * 60)
    assert long_functions(package) == ["pkg/m.py:5 long (61 lines)"]
