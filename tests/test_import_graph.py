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


# -- runbooks_lib's five rooms, each importing only downward (ARCHITECTURE.md) ----------------------

# From the ground up. ``cli`` and the package root sit above every room: they may import anything.
ROOMS = ("errors", "display", "config", "records", "platform", "run", "procedures")
TOP = ("runbooks_lib", "runbooks_lib.cli")


def room_of(module: str) -> str:
    """``runbooks_lib.platform.kube`` -> ``platform``; the package root and the CLI -> ``top``."""
    if module in TOP:
        return "top"
    room = module.split(".")[1]
    if room not in ROOMS:
        raise AssertionError(f"{module} is in no room: runbooks_lib's top level holds only {', '.join(ROOMS)}, "
                             "cli.py and __init__.py (ARCHITECTURE.md says where a module goes)")
    return room


def upward_imports(graph: dict[str, set[str]]) -> list[str]:
    """Every import from a lower room to a higher one, as ``a (room) -> b (room)``."""
    found = []
    for module, targets in sorted(graph.items()):
        here = room_of(module)
        if here == "top":
            continue
        for target in sorted(targets):
            there = room_of(target)
            if there == "top" or ROOMS.index(there) > ROOMS.index(here):
                found.append(f"{module} ({here}) -> {target} ({there})")
    return found


def test_runbooks_lib_imports_only_downward_between_its_rooms() -> None:
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        from import_cycles import import_graph
    finally:
        sys.path.remove(str(SCRIPT.parent))
    graph = import_graph([ROOT / "runbooks_lib"])
    assert upward_imports(graph) == []
    top_level = sorted(p.name for p in (ROOT / "runbooks_lib").iterdir() if p.name != "__pycache__")
    assert top_level == sorted(["__init__.py", "cli.py", "errors.py", "display.py", "config", "records", "platform",
                                "run", "procedures"])


def test_the_layering_check_names_an_upward_import() -> None:
    graph = {"runbooks_lib.platform.kube": {"runbooks_lib.run.lock", "runbooks_lib.errors"},
             "runbooks_lib.run.lock": {"runbooks_lib.platform.kube"},
             "runbooks_lib.config.paths": {"runbooks_lib"}}
    assert upward_imports(graph) == ["runbooks_lib.config.paths (config) -> runbooks_lib (top)",
                                     "runbooks_lib.platform.kube (platform) -> runbooks_lib.run.lock (run)"]
