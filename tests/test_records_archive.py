"""Records published to a team archive over the S3 API (a local moto server), then pulled and verified."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "runbook_fixture.ipynb"
BUCKET = "veza-records"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A real S3 API on loopback (moto's server), with one bucket."""
    import boto3
    port = _free_port()
    server = subprocess.Popen([Path(sys.executable).parent / "moto_server", "-H", "127.0.0.1", "-p", str(port)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    for name, value in {"AWS_ENDPOINT_URL": endpoint, "AWS_ACCESS_KEY_ID": "testing",
                        "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                boto3.client("s3").create_bucket(Bucket=BUCKET)
                break
            except Exception:
                assert time.monotonic() < deadline and server.poll() is None, "moto server did not start"
                time.sleep(0.2)
        yield endpoint
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=10)


def runbook(*args: str, home: Path) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, RUNBOOKS_HOME=str(home))
    return subprocess.run([sys.executable, "-m", "runbooks_lib.cli", *args], capture_output=True, text=True,
                          env=env, timeout=180)


def test_a_run_is_sealed_locally_then_published_and_verifiable_from_the_archive(
    s3: str, project_copy: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jupyter_dirs: None
) -> None:
    import boto3

    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", f"s3://{BUCKET}/team")
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "check_cluster", "False", home=project_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"published to: s3://{BUCKET}/team" in result.stdout
    local = next(Path(l[8:]) for l in result.stdout.splitlines() if l.startswith("record: "))
    assert local.is_relative_to(project_copy / "outputs")  # the spool: sealed before any upload
    keys = {o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket=BUCKET)["Contents"]}
    relative = local.relative_to(project_copy / "outputs").as_posix()
    assert {f"team/{relative}", f"team/{relative[:-6]}.html", "team/ledger.jsonl"} <= keys

    mirror = tmp_path / "mirror"
    pulled = runbook("records", "pull", f"s3://{BUCKET}/team", "--to", str(mirror), home=project_copy)
    assert pulled.returncode == 0, pulled.stderr
    verified = runbook("records", "verify", "--root", str(mirror), home=project_copy)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    (mirror / relative).write_bytes((mirror / relative).read_bytes().replace(b"succeeded", b"succeedeD", 1))
    tampered = runbook("records", "verify", "--root", str(mirror), home=project_copy)
    assert tampered.returncode == 1 and relative in tampered.stdout + tampered.stderr


def test_an_unreachable_archive_keeps_the_sealed_record_and_says_how_to_retry(
    s3: str, project_copy: Path, monkeypatch: pytest.MonkeyPatch, jupyter_dirs: None
) -> None:
    monkeypatch.setenv("RUNBOOKS_RECORDS_URL", f"s3://{BUCKET}/team")
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{_free_port()}")  # nothing listens there
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "check_cluster", "False", home=project_copy)
    assert result.returncode == 0, result.stdout + result.stderr  # the run itself succeeded
    assert "NOT PUBLISHED" in result.stderr and "runbook records publish" in result.stderr
    assert (project_copy / "outputs" / "ledger.jsonl").is_file()
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3)
    retried = runbook("records", "publish", home=project_copy)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "published 3 file(s)" in retried.stdout
