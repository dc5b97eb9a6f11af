"""`runbook run`: parameters checked before anything runs, records named, exit codes kept."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runbooks_lib.run.runner import read_summary

from .kube_stub import KubeSystemStub

FIXTURE = Path(__file__).parent / "fixtures" / "runbook_fixture.ipynb"


def runbook(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RUNBOOKS_HOME=str(home))
    return subprocess.run(
        [sys.executable, "-m", "runbooks_lib.cli", *args], capture_output=True, text=True, env=env, timeout=120
    )


def records(home: Path) -> list[Path]:
    return sorted((home / "outputs").rglob("*.ipynb"))


@pytest.fixture
def sandbox_stub(project_copy: Path, tmp_path: Path):
    with KubeSystemStub("uid-sandbox") as stub:
        env = project_copy / ".sandbox" / "env"
        env.write_text(
            env.read_text()
            .replace("/nonexistent/kubeconfig", str(stub.write_kubeconfig(tmp_path / "kc")))
            .replace("00000000-test-uid", "uid-sandbox")
        )
        yield stub


def test_unknown_parameter_exits_2_and_runs_nothing(project_copy: Path, jupyter_dirs: None) -> None:
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "verison", "v2", home=project_copy)
    assert result.returncode == 2, result.stderr
    assert "unknown parameter(s) verison" in result.stderr
    # the message lists what the runbook does take, with types
    assert "version (str" in result.stderr and "replicas (int" in result.stderr
    assert records(project_copy) == []


def test_mistyped_value_exits_2(project_copy: Path, jupyter_dirs: None) -> None:
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "replicas", "three", home=project_copy)
    assert result.returncode == 2
    assert "parameter 'replicas' must be a int, got 'three'" in result.stderr
    assert records(project_copy) == []


def test_unknown_env_exits_2(project_copy: Path, jupyter_dirs: None) -> None:
    result = runbook("run", str(FIXTURE), "--env", "prod", home=project_copy)
    assert result.returncode == 2 and "unknown env 'prod'" in result.stderr
    assert records(project_copy) == []


def test_good_run_is_recorded_with_typed_parameters(project_copy: Path, sandbox_stub, jupyter_dirs: None) -> None:
    # "1.10" must stay the string "1.10" (papermill alone would make it the float 1.1)
    result = runbook(
        "run", str(FIXTURE), "--env", "sandbox", "-p", "version", "1.10", "-p", "replicas", "5",
        "-p", "ratio", "1", home=project_copy,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    [record] = records(project_copy)
    assert record.parent.parent.name == "sandbox" and record.name.startswith("runbook_fixture-")
    summary = read_summary(record)
    assert summary["outcome"] == "succeeded"
    assert summary["parameters"]["version"] == "1.10" and summary["parameters"]["replicas"] == 5
    assert summary["figures"] == {"replicas": 5}
    assert summary["cluster"]["identity"] == "uid-sandbox"
    assert [s["name"] for s in summary["steps"]] == ["Check cluster identity", "Report the parameters", "Maybe fail"]
    assert record.stem.endswith(summary["run_id"])
    text = record.read_text()
    assert "version='1.10' replicas=5 ratio=1.0" in text
    # the terminal showed the runbook's output as it ran, each line once
    assert result.stdout.count("▶ Report the parameters") == 1, result.stdout


def test_failing_step_exits_1_and_the_record_names_it(project_copy: Path, sandbox_stub, jupyter_dirs: None) -> None:
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "fail_at", "step", home=project_copy)
    assert result.returncode == 1
    [record] = records(project_copy)
    summary = read_summary(record)
    assert summary["outcome"] == "failed" and summary["failed_step"] == "Maybe fail"
    assert "error rate 8.1 % > 1 %" in summary["error"]
    assert "failed step: Maybe fail" in result.stdout


def test_wrong_cluster_exits_4_before_any_step(project_copy: Path, tmp_path: Path, jupyter_dirs: None) -> None:
    with KubeSystemStub("uid-of-another-cluster") as stub:
        env = project_copy / ".sandbox" / "env"
        env.write_text(env.read_text().replace("/nonexistent/kubeconfig", str(stub.write_kubeconfig(tmp_path / "kc"))))
        result = runbook("run", str(FIXTURE), "--env", "sandbox", home=project_copy)
    assert result.returncode == 4, result.stdout + result.stderr
    [record] = records(project_copy)
    summary = read_summary(record)
    assert summary["outcome"] == "refused" and summary["failed_step"] == "Check cluster identity"
    assert "wrong cluster" in summary["error"]
    assert [s["name"] for s in summary["steps"]] == ["Check cluster identity"]


def test_dry_run_flag_sets_the_parameter(project_copy: Path, sandbox_stub, jupyter_dirs: None) -> None:
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "--dry-run", home=project_copy)
    assert result.returncode == 0, result.stderr
    [record] = records(project_copy)
    assert read_summary(record)["parameters"]["dry_run"] is True


def test_the_runner_tells_the_kernel_by_a_run_file_and_leaves_its_environment_alone(
        project_copy: Path, sandbox_stub, jupyter_dirs: None, monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooks_lib.run.runner import run_notebook

    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", str(project_copy / "outputs"))
    before = dict(os.environ)
    result = run_notebook(FIXTURE, "sandbox", [("replicas", "2")])
    assert dict(os.environ) == before
    assert result.exit_code == 0 and result.sealed
    # what only the run file told the kernel: the runner's run id and the record's name
    assert result.record.stem.endswith(result.summary["run_id"])
    assert result.summary["record"] == result.record.relative_to(project_copy / "outputs").as_posix()
    assert result.summary["notebook_sha256"]
    assert (project_copy / "outputs" / "journal" / "sandbox" / f"{result.summary['run_id']}.jsonl").is_file()


def test_the_export_warm_up_waits_for_a_cell_that_waits() -> None:
    # Short cells (the kernel's start, the steps up to the change) leave the CPU to the kernel;
    # the first cell still running after after_s (waiting on a rollout) starts the warm-up, once.
    import threading
    import time as clock

    from runbooks_lib.run.runner import WhenKernelWaits

    ran = threading.Event()
    calls: list[int] = []
    waits = WhenKernelWaits(lambda: (calls.append(1), ran.set()), after_s=0.2)
    for _ in range(3):
        waits.cell_started(cell=None, cell_index=0)
        clock.sleep(0.05)
        waits.cell_done(cell=None, cell_index=0, execute_reply=None)
    clock.sleep(0.3)
    assert not ran.is_set()
    waits.cell_started(cell=None, cell_index=1)
    assert ran.wait(2) and waits.started
    waits.cell_done()
    waits.cell_started()
    clock.sleep(0.4)
    assert calls == [1]


def test_a_kernel_that_cannot_start_ends_the_run_at_once_with_its_log(
        project_copy: Path, sandbox_stub, jupyter_dirs: None, tmp_path: Path) -> None:
    # The kernel is started before the run is resolved and adopted by jupyter_client afterwards:
    # one that dies on its way up must end the run with its own words, not a 60 s wait.
    broken = tmp_path / "broken" / "ipykernel"
    broken.mkdir(parents=True)
    (broken / "__init__.py").write_text("raise ImportError('ipykernel broken on purpose by the test')\n")
    env = dict(os.environ, RUNBOOKS_HOME=str(project_copy), PYTHONPATH=str(broken.parent))
    began = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "run", str(FIXTURE), "--env", "sandbox"],
                            capture_output=True, text=True, env=env, timeout=120)
    assert time.monotonic() - began < 30, "the runner waited for a kernel that was gone"
    # The record says the kernel died before any step, and why, in the kernel's own words.
    assert result.returncode == 1, result.stdout + result.stderr
    [record] = records(project_copy)
    summary = read_summary(record)
    assert summary["outcome"] == "failed" and summary["failed_step"] == "(kernel)"
    assert summary["error"].startswith("the kernel died outside any step: RuntimeError: Kernel died"), summary["error"]
    assert "ipykernel broken on purpose by the test" in summary["error"]
    assert "ipykernel broken on purpose by the test" in result.stdout, "the terminal says why too"


def _notebook(path: Path, parameters: str, *cells: str) -> Path:
    """A small runbook: a parameters cell, then ``cells``."""
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(parameters, metadata={"tags": ["parameters"]})]
    nb.cells += [nbformat.v4.new_code_cell(source) for source in cells]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def test_a_refused_record_ends_the_run_with_its_reason_not_a_traceback(project_copy: Path, tmp_path: Path,
                                                                       jupyter_dirs: None) -> None:
    """The seal refuses a record that prints a Vault token's shape: the run says NOT SEALED and
    where the record went, exits 1, and nothing lands in the records folder."""
    shaped = "hvs." + "A1b2C3d4" * 4  # the shape of a Vault service token, not a real one
    notebook = _notebook(tmp_path / "leaky.ipynb", 'env = "sandbox"', f"print('token: {shaped}')")
    result = runbook("run", str(notebook), "--env", "sandbox", home=project_copy)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "NOT SEALED" in result.stderr and "quarantined in" in result.stderr
    assert "Traceback" not in result.stderr
    assert shaped not in result.stdout + result.stderr
    kept = records(project_copy)
    assert [p.parent.parent.name for p in kept] == [".quarantine"], kept  # only its quarantined copy


def test_notify_none_is_a_choice_not_a_secret(project_copy: Path, tmp_path: Path, jupyter_dirs: None) -> None:
    """`notify` holds a webhook URL (a secret) or the word "none": the word is not registered, so
    a record whose notebook says "none" elsewhere (a comment, a printed choice) is sealed."""
    from runbooks_lib.records.redaction import secret_parameter_values

    url = "https://hooks.example.test/T000/B000/" + "x" * 24
    assert secret_parameter_values({"notify": "None ", "webhook": url, "service": "veza-chat"}) == [url]
    notebook = _notebook(tmp_path / "quiet.ipynb", 'env = "sandbox"\nnotify = ""  # "none", a webhook URL, or empty',
                         "print('mitigation: none')")
    result = runbook("run", str(notebook), "--env", "sandbox", "-p", "notify", "none", home=project_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "NOT SEALED" not in result.stderr
    assert len(records(project_copy)) == 1
