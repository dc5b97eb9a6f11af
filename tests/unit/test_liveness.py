"""liveness: which runs are dead, and that a run ended elsewhere is left alone."""
from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import psutil

from runbooks_lib.run.liveness import find_dead, runner_alive
from runbooks_lib.run.journal import Journal


def identity(pid: int, **extra: object) -> dict[str, object]:
    return {"pid": pid, "created": psutil.Process(pid).create_time(), "host": socket.gethostname(), **extra}


def test_a_runner_is_alive_while_its_process_runs_and_dead_after() -> None:
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    runner = identity(process.pid)
    assert runner_alive(runner)
    process.kill()
    process.wait()
    assert not runner_alive(runner)


def test_a_reused_pid_is_not_the_runner() -> None:
    runner = identity(psutil.Process().pid)
    runner["created"] = float(runner["created"]) - 3600  # the runner started an hour ago: another process now
    assert not runner_alive(runner)


def test_a_runner_on_another_machine_cannot_be_seen_and_is_taken_as_alive() -> None:
    assert runner_alive({"pid": 999999, "created": 0.0, "host": "another-host.example"})


def test_only_an_unended_run_with_a_gone_runner_is_dead(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    gone = {"pid": process.pid, "created": 0.0, "host": socket.gethostname()}
    journal = Journal(tmp_path / "run-1.jsonl")
    journal.write(event="run-started", runbook="deploy", env="sandbox", runner=gone)
    assert find_dead(journal) is not None
    journal.write(event="run-finished", outcome="failed")
    assert find_dead(journal) is None
    without_runner = Journal(tmp_path / "run-2.jsonl")  # JupyterLab or plain papermill: nobody to watch
    without_runner.write(event="run-started", runbook="deploy", env="sandbox")
    assert find_dead(without_runner) is None


def test_a_kernel_that_outlived_its_runner_is_stopped_when_the_run_is_ended(tmp_path: Path) -> None:
    from runbooks_lib.run.dead_runs import close_dead_run

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    kernel = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    journal = Journal(tmp_path / "run-3.jsonl")
    journal.write(event="run-started", runbook="deploy", env="sandbox",
                  runner={"pid": gone.pid, "created": 0.0, "host": socket.gethostname()}, kernel=identity(kernel.pid))
    dead = find_dead(journal)
    assert dead is not None
    said = close_dead_run(dead)
    assert kernel.wait(timeout=5) == -9  # SIGKILL
    assert f"its kernel (pid {kernel.pid}) still ran: stopped" in said
    ended = journal.entries()[-1]
    assert ended["event"] == "run-finished" and ended["runner_died"] is True and ended["said"] == said
