"""Finding 9 (runner image): a pod of the project's runner image runs the runbook runner, nothing else.

A container of ``registry.veza.app/veza-runbooks`` is a process on the sandbox's machine, as its
user. Until now its PATH offered ``sh``, ``bash``, ``python`` and a few tools: whoever could create
a Job ran any code on the host. Now only ``runbook run|resume|records`` and ``papermill`` on a
notebook of the project start; anything else fails to start with CreateContainerError saying why,
as an unlisted tag fails with ErrImagePull.
"""
from __future__ import annotations

import sys

import pytest

from runbooks_lib.config.paths import project_home
from runbooks_sandbox.runtime.runner_image import CommandNotFound, runner_process, runner_tags

IMAGE = f"registry.veza.app/veza-runbooks:v{sorted(runner_tags() - {'latest'})[0].lstrip('v')}"


def _argv(command: list[str], env: dict[str, str] | None = None) -> list[str]:
    return runner_process(IMAGE, {"command": command}, env or {})[0]


@pytest.mark.parametrize("command", [
    ["sh", "-c", "id"], ["/bin/bash", "-c", "id"], ["python", "-c", "import os; os.system('id')"],
    ["python3", "evil.py"], ["env"], ["cat", "/etc/shadow"], ["sleep", "60"], ["/tmp/runbook-lookalike"],
])
def test_a_shell_an_interpreter_or_any_program_does_not_start(command: list[str]) -> None:
    with pytest.raises(CommandNotFound, match="runs only runbook run\\|resume\\|records"):
        _argv(command)


@pytest.mark.parametrize("command", [
    ["runbook", "approve", "run-1", "--as", "bob"],  # an approval from a pod would be nobody's four eyes
    ["runbook", "sandbox", "down"], ["runbook", "schedule", "notebooks/health_check.ipynb", "--apply"],
    ["runbook", "run", "/etc/passwd", "--env", "sandbox"], ["runbook", "run", "notebooks/../../x.ipynb"],
    ["runbook", "run", "--env", "sandbox", "notebooks/health_check.ipynb"],
    ["papermill", "https://example.com/evil.ipynb", "out.ipynb"],
    ["papermill", "notebooks/health_check.ipynb", "out.ipynb", "-r", "env", "__import__('os').system('id')"],
    ["papermill", "notebooks/health_check.ipynb", "out.ipynb", "--engine", "evil"],
    ["papermill", "notebooks/health_check.ipynb", "out.ipynb", "-k", "bash"],
    ["papermill", "notebooks/health_check.ipynb", "notebooks/deploy.ipynb"],  # overwriting a runbook
])
def test_the_runner_only_runs_and_reads_runbooks_of_the_project(command: list[str]) -> None:
    with pytest.raises(CommandNotFound):
        _argv(command)


@pytest.mark.parametrize("variable", ["PYTHONPATH", "PYTHONSTARTUP", "LD_PRELOAD", "IPYTHONDIR", "JUPYTER_PATH",
                                      "RUNBOOKS_HOME"])
def test_a_container_cannot_change_what_the_interpreter_loads(variable: str) -> None:
    with pytest.raises(CommandNotFound, match=variable):
        _argv(["runbook", "records", "list"], {variable: "/tmp/elsewhere"})


def test_the_runbook_runner_starts_as_runbook_schedule_writes_it() -> None:
    argv = _argv(["runbook", "run", "notebooks/health_check.ipynb", "--env", "sandbox", "-p", "window_minutes", "5"])
    assert argv == [sys.executable, "-m", "runbooks_lib.cli", "run", "notebooks/health_check.ipynb", "--env",
                    "sandbox", "-p", "window_minutes", "5"]
    assert _argv(["runbook", "resume", "20261201T0300-abc"])[3:] == ["resume", "20261201T0300-abc"]
    assert _argv(["runbook", "records", "verify"])[3:] == ["records", "verify"]
    notebook = str(project_home() / "notebooks" / "dr_drill.ipynb")
    assert _argv(["papermill", notebook, "/tmp/out.ipynb", "-p", "env", "sandbox", "--log-output"])[2] == "papermill"
    _, env, _ = runner_process(IMAGE, {"command": ["runbook", "records", "list"]},
                               {"RUNBOOKS_RECORDS_URL": "/tmp/records", "POD_NAME": "p"})
    assert env["RUNBOOKS_RECORDS_URL"] == "/tmp/records" and env["RUNBOOKS_HOME"] == str(project_home())


# A pod of the runner image that runs a shell, through the API server as kubectl would create it:
# tests/sandbox/test_node_agent.py (the node agent refuses it on the real control plane).
