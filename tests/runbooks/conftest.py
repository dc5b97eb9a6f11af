"""One real sandbox for the runbook end-to-end tests, started with the real command line.

Runbooks are run as an on-call engineer runs them: `runbook run NOTEBOOK --env sandbox -p ...`
in a subprocess, against the sandbox's API server, OpenBao, Prometheus and PostgreSQL. The
sandbox profile finds the live sandbox through RUNBOOKS_SANDBOX_ENV; records go to a temporary
records folder (RUNBOOKS_RECORDS_URL).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

import pytest

from .groups import CHANGES, DRILLS, group_of

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Sandbox:
    state_dir: Path
    records: Path
    env: dict[str, str]

    def environ(self, **extra: str) -> dict[str, str]:
        return {**os.environ, "RUNBOOKS_HOME": str(REPO), "RUNBOOKS_SANDBOX_ENV": str(self.state_dir / "env"),
                "RUNBOOKS_RECORDS_URL": str(self.records), **extra}

    def runbook(self, *args: str, timeout: float = 300, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "runbooks_lib.cli", *args], capture_output=True, text=True,
                              timeout=timeout, env=self.environ(**extra), cwd=REPO)

    def run(self, notebook: str, *params: tuple[str, Any], env: str = "sandbox", timeout: float = 300,
            **extra: str) -> "Run":
        args = ["run", f"notebooks/{notebook}.ipynb", "--env", env]
        for name, value in params:
            args += ["-p", name, str(value)]
        began = datetime.now(timezone.utc)
        result = self.runbook(*args, timeout=timeout, **extra)
        return Run(result, began, self)

    def kubectl(self, *args: str) -> str:
        result = subprocess.run(["kubectl", "--kubeconfig", self.env["KUBECONFIG"], "-n", "veza-sandbox", *args],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stderr
        return result.stdout

    def deployment(self, name: str) -> dict[str, Any]:
        return json.loads(self.kubectl("get", "deployment", name, "-o", "json"))

    def traffic(self, since: datetime) -> dict[str, Any]:
        out = self.runbook("sandbox", "traffic", "--json", "--since", since.isoformat().replace("+00:00", "Z"),
                           "--state-dir", str(self.state_dir))
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)


@dataclass
class Run:
    result: subprocess.CompletedProcess[str]
    began: datetime
    sandbox: Sandbox

    @property
    def exit_code(self) -> int:
        return self.result.returncode

    @property
    def output(self) -> str:
        return self.result.stdout + self.result.stderr

    @property
    def record(self) -> Path:
        for line in self.result.stdout.splitlines():
            if line.startswith("record: "):
                return Path(line.removeprefix("record: "))
        raise AssertionError(f"no record in the output:\n{self.output}")

    @property
    def summary(self) -> dict[str, Any]:
        from runbooks_lib.run.runner import read_summary

        summary = read_summary(self.record)
        assert summary is not None, self.output
        return summary


def _start_sandbox() -> Sandbox:
    # Private (mode 0700), as a checkout in root's home is: the sandbox keeps what user postgres
    # must reach elsewhere (runbooks_sandbox.servers.datadir), and the drills must not mind.
    state_dir = Path(tempfile.mkdtemp(prefix="veza-runbooks-"))
    records = Path(tempfile.mkdtemp(prefix="veza-records-"))
    box = Sandbox(state_dir, records, {})
    up = box.runbook("sandbox", "up", "--state-dir", str(state_dir))
    if up.returncode != 0:
        _stop_sandbox(box)
        raise AssertionError(f"sandbox up failed:\n{up.stdout}\n{up.stderr}")
    for line in (state_dir / "env").read_text().splitlines():
        if line.startswith("export "):
            key, _, value = line.removeprefix("export ").partition("=")
            box.env[key] = value.strip("'")
    return box


def _stop_sandbox(box: Sandbox) -> None:
    box.runbook("sandbox", "down", "--state-dir", str(box.state_dir))
    shutil.rmtree(box.state_dir, ignore_errors=True)
    shutil.rmtree(box.records, ignore_errors=True)


@pytest.fixture(scope="session")
def _sandboxes() -> Iterator[dict[str, Sandbox]]:
    """One sandbox per scenario group (tests/runbooks/groups.py), started when first needed."""
    boxes: dict[str, Sandbox] = {}
    yield boxes
    for box in boxes.values():
        _stop_sandbox(box)


@pytest.fixture(scope="module")
def sandbox(request: pytest.FixtureRequest, _sandboxes: dict[str, Sandbox]) -> Sandbox:
    group = group_of(request.module.__name__.rsplit(".", 1)[-1])
    if group not in _sandboxes:
        # A group's scenarios run one after another: the previous group's sandbox is done with.
        for done in list(_sandboxes):
            _stop_sandbox(_sandboxes.pop(done))
        _sandboxes[group] = _start_sandbox()
    return _sandboxes[group]


# Each group's scenarios run in its listed order; the changes group first when one worker runs both.
_ORDER = CHANGES + DRILLS


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Reorder this folder's tests among themselves; every other test keeps its place."""
    here = Path(__file__).parent

    def module(item: pytest.Item) -> str:
        # Only this folder's modules: tests/unit has a test_deploy.py too.
        if item.module is None or Path(str(item.module.__file__)).parent != here:
            return ""
        return item.module.__name__.rsplit(".", 1)[-1]

    slots = [i for i, item in enumerate(items) if module(item) in _ORDER]
    ordered = sorted((items[i] for i in slots), key=lambda item: _ORDER.index(module(item)))  # stable
    for slot, item in zip(slots, ordered):
        items[slot] = item


@pytest.fixture(autouse=True)
def _library_records_in_the_sandbox_folder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch,
                                           tmp_path: Path) -> None:
    """A scenario that calls the library itself (reads OpenBao to compare, takes a backup) keeps
    what it writes (secret fingerprints) where its runs keep their records, not in outputs/."""
    records = request.getfixturevalue("sandbox").records if "sandbox" in request.fixturenames else tmp_path
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(records))
