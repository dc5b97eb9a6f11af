"""A planted secret reaches no record, HTML export or log — and seal refuses one smuggled in.

End to end, in real kernels: `runbook run` and plain `papermill` execute a notebook that
fetches a unique secret (from a Kubernetes Secret manifest, or from a real OpenBao dev
server when runbooks_sandbox provides one), prints it to stdout and stderr, shows it in a
DataFrame, HTML, Markdown and JSON, raises an exception holding it, and receives another
secret as a papermill parameter. Then every file the run left is grepped.
"""
from __future__ import annotations

import base64
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from runbooks_lib.run.runner import read_summary

LEAKS = Path(__file__).parent / "fixtures" / "records" / "secret_leaks.ipynb"


def _env(home: Path, records: Path, sandbox_env: Path) -> dict[str, str]:
    return dict(os.environ, RUNBOOKS_HOME=str(home), RUNBOOKS_RECORDS_URL=str(records),
                RUNBOOKS_SANDBOX_ENV=str(sandbox_env), JUPYTER_CONFIG_DIR=str(home / ".jupyter" / "config"),
                JUPYTER_RUNTIME_DIR=str(home / ".jupyter" / "runtime"), IPYTHONDIR=str(home / ".jupyter" / "ipython"))


def _sandbox_env(path: Path, vault_addr: str = "http://127.0.0.1:1", vault_token: str = "dev-token-not-a-secret") -> Path:
    path.write_text(f"KUBECONFIG=/nonexistent/kubeconfig\nCLUSTER_UID=uid-test\nVAULT_ADDR={vault_addr}\n"
                    f"VAULT_TOKEN={vault_token}\nPROMETHEUS_URL=http://127.0.0.1:1\n")
    return path


def _planted() -> str:
    # No token shape on purpose: only the registry (and its fingerprints) can catch it.
    return "Pl4nted-" + secrets.token_hex(10)


def _files_holding(folder: Path, *values: str) -> list[str]:
    found = []
    for path in folder.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            found += [f"{path}: {v[:8]}…" for v in values if v.encode() in data]
    return found


def _run(args: list[str], env: dict[str, str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, env=env, timeout=180, cwd=cwd)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    home = tmp_path / "home"
    (home / "parameters").mkdir(parents=True)
    project = Path(__file__).resolve().parent.parent
    for profile in (project / "parameters").glob("*.yaml"):
        (home / "parameters" / profile.name).write_text(profile.read_text())
    return home


def _manifest(tmp_path: Path, password: str) -> Path:
    path = tmp_path / "veza-db-secret.json"
    path.write_text(json.dumps({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "veza-db"},
                                "data": {"password": base64.b64encode(password.encode()).decode()}}))
    return path


def _check_run(home: Path, records: Path, result: subprocess.CompletedProcess[str], *values: str) -> Path:
    assert result.returncode == 1, result.stdout + result.stderr  # the notebook fails on purpose
    assert not _files_holding(home, *values), "a secret reached a file"
    assert not _files_holding(records, *values), "a secret reached a record"
    for value in values:
        assert value not in result.stdout and value not in result.stderr, "a secret reached the log"
    [record] = sorted(records.rglob("*.ipynb"))
    assert record.with_suffix(".html").is_file()
    summary = read_summary(record)
    assert summary["outcome"] == "failed" and summary["failed_step"] == "Use the secret"
    assert summary["parameters"]["api_token"] == "********"
    assert "********" in summary["error"]
    ledger = [json.loads(line) for line in (records / "ledger.jsonl").read_text().splitlines()]
    assert [entry["record"] for entry in ledger] == [record.relative_to(records).as_posix()]
    text = record.read_text()
    # every way of showing the secret is in the record, masked
    for shown in ("the password is ********", "stderr: ********", "<b>********</b>", "SecretValue(password='********')"):
        assert shown in text, shown
    return record


def test_k8s_secret_never_reaches_record_html_or_log(home: Path, tmp_path: Path) -> None:
    password, token = _planted(), "tok-" + secrets.token_hex(10)
    records = tmp_path / "records"
    env = _env(home, records, _sandbox_env(tmp_path / "sandbox.env"))
    result = _run([sys.executable, "-m", "runbooks_lib.cli", "run", str(LEAKS), "--env", "sandbox",
                   "-p", "manifest_path", str(_manifest(tmp_path, password)), "-p", "api_token", token], env)
    record = _check_run(home, records, result, password, token)

    # A value smuggled in by hand (here: pasted into a new cell) is refused, and the cell named.
    nb = nbformat.read(str(record), as_version=4)
    nb.cells.insert(4, nbformat.v4.new_markdown_cell(f"note: the password was {password}"))
    smuggled = tmp_path / "smuggled.ipynb"
    nbformat.write(nb, str(smuggled))
    refused = _run([sys.executable, "-m", "runbooks_lib.cli", "records", "seal", str(smuggled)], env)
    assert refused.returncode == 1
    assert "cell 4 source: a registered secret value" in refused.stderr, refused.stderr
    assert password not in refused.stderr + refused.stdout
    assert not smuggled.with_suffix(".html").exists()
    assert len((records / "ledger.jsonl").read_text().splitlines()) == 1


def test_vault_secret_never_reaches_record_html_or_log(home: Path, tmp_path: Path) -> None:
    openbao = pytest.importorskip("runbooks_sandbox.servers.openbao")
    try:
        server = openbao.OpenBaoServer(tmp_path / "state").start()
    except Exception as e:  # bao binary missing on this machine
        pytest.skip(f"no OpenBao dev server: {e}")
    try:
        password, token = _planted(), "tok-" + secrets.token_hex(10)
        server.client().secrets.kv.v2.create_or_update_secret(
            path="veza/records-test", secret={"password": password}, mount_point="secret")
        records = tmp_path / "records"
        env = _env(home, records, _sandbox_env(tmp_path / "sandbox.env", server.address, server.root_token))
        result = _run([sys.executable, "-m", "runbooks_lib.cli", "run", str(LEAKS), "--env", "sandbox",
                       "-p", "source", "vault", "-p", "vault_path", "veza/records-test", "-p", "api_token", token], env)
        record = _check_run(home, records, result, password, token, server.root_token)
        identity = read_summary(record)["identity"]["vault"]  # who ran it, by accessor, never the token
        assert identity["accessor"] and identity["display_name"] == "token"  # the dev root token
    finally:
        server.stop()


def test_plain_papermill_record_is_refused_until_parameters_are_masked(home: Path, tmp_path: Path) -> None:
    password, token = _planted(), "tok-" + secrets.token_hex(10)
    records = tmp_path / "records"
    env = _env(home, records, _sandbox_env(tmp_path / "sandbox.env"))
    out = tmp_path / "by-hand" / "out.ipynb"
    out.parent.mkdir()
    papermill = Path(sys.executable).parent / "papermill"
    result = _run([str(papermill), str(LEAKS), str(out), "-p", "env", "sandbox", "-p", "manifest_path",
                   str(_manifest(tmp_path, password)), "-p", "api_token", token, "--cwd", str(tmp_path)], env)
    assert result.returncode == 1, result.stderr  # the notebook fails on purpose
    raw = out.read_text()
    assert password not in raw, "the kernel's filters did not mask an output"
    assert token in raw  # papermill #271: plain papermill writes the parameter in clear ...

    refused = _run([sys.executable, "-m", "runbooks_lib.cli", "records", "seal", str(out)], env)
    assert refused.returncode == 1  # ... so seal refuses, and says where
    assert "parameter 'api_token' in clear" in refused.stderr
    assert "(injected parameters)" in refused.stderr and token not in refused.stderr

    sealed = _run([sys.executable, "-m", "runbooks_lib.cli", "records", "seal", "--mask-parameters", str(out)], env)
    assert sealed.returncode == 0, sealed.stderr
    [record] = sorted(records.rglob("*.ipynb"))  # copied to its place under the records root
    assert record.parent.parent.name == "sandbox"
    assert not _files_holding(records, password, token)
    verify = _run([sys.executable, "-m", "runbooks_lib.cli", "records", "verify"], env)
    assert verify.returncode == 0, verify.stdout


def test_a_secret_registered_before_start_is_already_filtered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import nbclient

    value = _planted()
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fp"))
    monkeypatch.setenv("PLANTED_FOR_TEST", value)
    monkeypatch.setenv("IPYTHONDIR", str(tmp_path / "ipython"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(
        "import os\nfrom runbooks_lib import SecretValue\n"
        "clear = SecretValue(os.environ['PLANTED_FOR_TEST']).reveal()\nprint(clear)\nclear")]
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=60).execute()
    assert value not in nbformat.writes(nb)
    assert [o.get("text") for o in nb.cells[0].outputs if o.output_type == "stream"] == ["********\n"]
