"""A failed run still leaves a sealed, indexed record that says where and why it failed."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from runbooks_lib.records.catalog import Catalog
from runbooks_lib.records.ledger import Ledger
from runbooks_lib.run.runner import read_summary

FIXTURES = Path(__file__).parent / "fixtures" / "records"


def runner_environment(tmp_path: Path, kubeconfig: str = "/nonexistent",
                       cluster_uid: str = "uid") -> tuple[dict[str, str], Path]:
    """The environment of a `runbook run` on the shipped profiles, its sandbox env pointing at
    ``kubeconfig`` (and nothing else reachable); and its records folder."""
    home = tmp_path / "home"
    (home / "parameters").mkdir(parents=True)
    for profile in (Path(__file__).resolve().parent.parent / "parameters").glob("*.yaml"):
        (home / "parameters" / profile.name).write_text(profile.read_text())
    sandbox_env = tmp_path / "sandbox.env"
    sandbox_env.write_text(f"KUBECONFIG={kubeconfig}\nCLUSTER_UID={cluster_uid}\nVAULT_ADDR=http://127.0.0.1:1\n"
                           "VAULT_TOKEN=dev-token-not-a-secret\nPROMETHEUS_URL=http://127.0.0.1:1\n")
    records = tmp_path / "records"
    env = dict(os.environ, RUNBOOKS_HOME=str(home), RUNBOOKS_SANDBOX_ENV=str(sandbox_env),
               RUNBOOKS_RECORDS_URL=str(records), IPYTHONDIR=str(home / ".ipython"),
               JUPYTER_CONFIG_DIR=str(home / ".jupyter"), JUPYTER_RUNTIME_DIR=str(home / ".jupyter-runtime"))
    return env, records


@pytest.fixture
def run(tmp_path: Path):
    env, records = runner_environment(tmp_path)

    def runbook(notebook: str) -> tuple[subprocess.CompletedProcess[str], Path]:
        result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "run", str(FIXTURES / notebook),
                                 "--env", "sandbox"], capture_output=True, text=True, env=env, timeout=180)
        [record] = sorted(records.rglob("*.ipynb"))
        return result, record

    return runbook, records


def test_failing_step_is_sealed_named_marked_and_indexed(run) -> None:
    runbook, records = run
    result, record = runbook("failing_step.ipynb")
    assert result.returncode == 1, result.stderr
    summary = read_summary(record)
    assert summary["outcome"] == "failed"
    assert summary["failed_step"] == "Switch traffic"
    assert summary["error"] == "RuntimeError: the router refused the new weights"
    assert summary["figures"] == {"peak_error_rate": 0.5}
    assert [(s["name"], s["outcome"]) for s in summary["steps"]] == [
        ("Plot the error rate", "succeeded"), ("Switch traffic", "failed")]
    assert Ledger(records).verify() == []
    [entry] = Ledger(records).entries()
    assert entry["record"] == record.relative_to(records).as_posix()

    page = record.with_suffix(".html").read_text()
    assert entry["html_sha256"] == Ledger.sha256(record.with_suffix(".html"))
    # the summary opens the page, the failing step is marked, the plot is inline, code is folded
    assert page.index("failing_step on sandbox") < page.index('id="Failing-step"')
    assert "✗ failed at step “Switch traffic”" in page
    # the banner stands before the failing cell's traceback
    assert page.index("The run failed here") < page.rindex("the router refused the new weights")
    assert "data:image/png;base64," in page
    assert "<details><summary>code</summary>" in page

    [row] = Catalog(records).rows()
    assert row["outcome"] == "failed" and row["failed_step"] == "Switch traffic" and row["sealed"]


def test_kernel_that_dies_gets_a_summary_from_the_runner(run) -> None:
    runbook, records = run
    result, record = runbook("kernel_dies.ipynb")
    assert result.returncode == 1, result.stderr
    summary = read_summary(record)
    assert summary["outcome"] == "failed"
    assert summary["failed_step"] == "Drain the node"  # from the run's journal
    assert "kernel ended without writing a summary" in summary["written_by"]
    assert summary["error"].startswith("the kernel died at step 1 (Drain the node): "), summary["error"]
    assert Ledger(records).verify() == []
    [row] = Catalog(records).rows(None)
    assert row["runbook"] == "kernel_dies" and row["sealed"]


def test_a_killed_kernel_ends_the_run_at_once_releasing_its_lease(tmp_path: Path) -> None:
    """SIGKILL (the OOM killer) in the middle of a step, holding the service's Lease: the run ends,
    exit 1, with a sealed record saying at which step it died, and the Lease is given back."""
    import time

    from runbooks_lib.records.catalog import Catalog

    from .kube_stub import KubeStub

    with KubeStub(namespace="veza-sandbox", kube_system_uid="uid-sandbox") as kube:
        env, records = runner_environment(tmp_path, str(kube.write_kubeconfig(tmp_path / "kc")), "uid-sandbox")
        began = time.monotonic()
        # no hang: papermill alone can wait forever on a dead kernel; the timeout fails the test
        result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "run", str(FIXTURES / "kernel_killed.ipynb"),
                                 "--env", "sandbox"], capture_output=True, text=True, env=env, timeout=90)
        print(f"runbook run with a killed kernel ended in {time.monotonic() - began:.1f} s")
        lease = kube.get("leases", "runbook-lock-veza-backend-api")
        deletes = [w for w in kube.writes if w.method == "DELETE"]
    assert result.returncode == 1, result.stdout + result.stderr
    [record] = sorted(records.rglob("*.ipynb"))
    summary = read_summary(record)
    assert summary["outcome"] == "failed" and summary["failed_step"] == "Roll out"
    assert summary["error"].startswith("the kernel died at step 2 (Roll out): "), summary["error"]
    assert lease is None and len(deletes) == 1, "the dead run's Lease is still held"
    assert summary["notes"]["leases"].startswith("runbook-lock-veza-backend-api: released")
    assert Ledger(records).verify() == []
    [row] = Catalog(records).rows(None)
    assert row["sealed"] and row["failed_step"] == "Roll out"


def test_a_killed_runbook_run_is_ended_by_its_watcher(tmp_path: Path) -> None:
    """SIGKILL of `runbook run` itself (a closed terminal, the OOM killer): its kernel stops with it,
    and within seconds its watcher seals the partial record, releases the Lease and ends the journal."""
    import json
    import signal
    import time

    import psutil

    from .kube_stub import KubeStub

    with KubeStub(namespace="veza-sandbox", kube_system_uid="uid-sandbox") as kube:
        env, records = runner_environment(tmp_path, str(kube.write_kubeconfig(tmp_path / "kc")), "uid-sandbox")
        runner = subprocess.Popen([sys.executable, "-m", "runbooks_lib.cli", "run",
                                   str(FIXTURES / "runner_killed.ipynb"), "--env", "sandbox"],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
        journal: list[Path] = []
        entries: list[dict] = []
        deadline = time.monotonic() + 90
        while not any(e.get("event") == "step-started" and e.get("step") == "Roll out" for e in entries):
            assert runner.poll() is None and time.monotonic() < deadline, "the run never reached its second step"
            time.sleep(0.2)
            journal = sorted(records.glob("journal/sandbox/*.jsonl"))
            entries = [json.loads(line) for line in journal[0].read_text().splitlines()] if journal else []
        kernel_pids = [p.pid for p in psutil.Process(runner.pid).children(recursive=True)
                       if "ipykernel" in " ".join(p.cmdline())]
        assert kernel_pids, "no kernel found under `runbook run`"
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait()
        killed = time.monotonic()
        while not any(e.get("event") == "run-finished" for e in entries) and time.monotonic() - killed < 20:
            time.sleep(0.2)
            entries = [json.loads(line) for line in journal[0].read_text().splitlines()]
        print(f"the watcher ended the run {time.monotonic() - killed:.1f} s after the kill")
        lease = kube.get("leases", "runbook-lock-veza-backend-api")
    ended = next((e for e in entries if e.get("event") == "run-finished"), None)
    assert ended is not None and ended["runner_died"] is True, entries[-3:]
    assert lease is None, "the dead run's Lease is still held"
    assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
                   for pid in kernel_pids), "the kernel outlived its runner"
    [record] = sorted(records.rglob("*.ipynb"))
    summary = read_summary(record)
    assert summary["outcome"] == "failed" and summary["failed_step"] == "Roll out"
    assert summary["error"].startswith("the runbook run process died at step 2 (Roll out): pid "), summary["error"]
    assert summary["notes"]["leases"].startswith("runbook-lock-veza-backend-api: released")
    assert not Path(entries[0]["runner"]["workspace"]).exists()  # papermill's copy, parameters in clear, is gone
    assert Ledger(records).verify() == []
    [row] = Catalog(records).rows(None)
    assert row["sealed"] and row["failed_step"] == "Roll out"
