"""No import circles in runbooks_lib or runbooks_sandbox (scripts/import_cycles.py), and the checker finds one.

Every import counts, at module level, inside functions (a deferred import only hides a circle)
and under ``if TYPE_CHECKING:`` (a circle in the design, even if it never runs)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "import_cycles.py"


def check(*packages: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *map(str, packages)], capture_output=True, text=True,
                          timeout=60)


def test_runbooks_lib_has_no_import_circle() -> None:
    result = check(ROOT / "runbooks_lib")
    assert result.returncode == 0, f"import circles:\n{result.stdout}{result.stderr}"


def test_runbooks_sandbox_has_no_import_circle() -> None:
    result = check(ROOT / "runbooks_sandbox")
    assert result.returncode == 0, f"import circles:\n{result.stdout}{result.stderr}"


def test_the_checker_sees_circles_behind_type_checking_and_in_functions(tmp_path: Path) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "store.py").write_text("from .watch import Watcher\n")
    (package / "watch.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .store import Store\n")
    (package / "sub" / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (package / "sub" / "b.py").write_text("from . import a\n")
    (package / "leaf.py").write_text("import json\nfrom .store import Watcher\n")
    result = check(package)
    assert result.returncode == 1
    assert result.stdout.splitlines() == ["pkg.store <-> pkg.watch", "pkg.sub.a <-> pkg.sub.b"]
