"""Records published to a team archive on a remote filesystem, then pulled and verified.

The archive code speaks fsspec, whatever the URL (s3://, gs://, ftp://...). These tests use a
real FTP server on loopback (pyftpdlib), which fsspec reaches without extra packages.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Iterator

import pytest

FIXTURE = Path(__file__).parent / "fixtures" / "runbook_fixture.ipynb"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def ftp(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """An FTP server on loopback, in its own process, whose anonymous user may write:
    (url, the folder it serves)."""
    served = tmp_path / "ftp-root"
    served.mkdir()
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "pyftpdlib", "-i", "127.0.0.1", "-p", str(port), "-w", "-d", str(served)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            assert time.monotonic() < deadline and server.poll() is None, "the FTP server did not start"
            time.sleep(0.1)
        yield f"ftp://127.0.0.1:{port}/team", served
    finally:
        server.terminate()
        server.wait(timeout=10)


def runbook(*args: str, home: Path, **env: str) -> subprocess.CompletedProcess[str]:
    environ = dict(os.environ, RUNBOOKS_HOME=str(home), **env)
    return subprocess.run([sys.executable, "-m", "runbooks_lib.cli", *args], capture_output=True, text=True,
                          env=environ, timeout=180)


def test_a_run_is_sealed_locally_then_published_and_verifiable_from_the_archive(
    ftp: tuple[str, Path], project_copy: Path, tmp_path: Path, jupyter_dirs: None
) -> None:
    url, served = ftp
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "check_cluster", "False",
                     home=project_copy, RUNBOOKS_RECORDS_URL=url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"published to: {url}" in result.stdout
    local = next(Path(l[8:]) for l in result.stdout.splitlines() if l.startswith("record: "))
    assert local.is_relative_to(project_copy / "outputs")  # the spool: sealed before any upload
    relative = local.relative_to(project_copy / "outputs").as_posix()
    for name in (relative, relative[:-6] + ".html"):
        assert (served / "team" / name).read_bytes() == (project_copy / "outputs" / name).read_bytes(), name
    # each machine's ledger under its own name (records.trust.writer_id), never one shared file
    [published] = (served / "team" / "ledgers").glob("*.jsonl")
    assert published.read_bytes() == (project_copy / "outputs" / "ledger.jsonl").read_bytes()
    assert published.with_name(published.stem + ".head.json").is_file()

    mirror = tmp_path / "mirror"
    pulled = runbook("records", "pull", url, "--to", str(mirror), home=project_copy)
    assert pulled.returncode == 0, pulled.stderr
    verified = runbook("records", "verify", "--root", str(mirror), home=project_copy)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    (mirror / relative).write_bytes((mirror / relative).read_bytes().replace(b"succeeded", b"succeedeD", 1))
    tampered = runbook("records", "verify", "--root", str(mirror), home=project_copy)
    assert tampered.returncode == 1 and relative in tampered.stdout + tampered.stderr


def test_an_unreachable_archive_keeps_the_sealed_record_and_says_how_to_retry(
    ftp: tuple[str, Path], project_copy: Path, jupyter_dirs: None
) -> None:
    url, served = ftp
    nowhere = f"ftp://127.0.0.1:{_free_port()}/team"  # nothing listens there
    result = runbook("run", str(FIXTURE), "--env", "sandbox", "-p", "check_cluster", "False",
                     home=project_copy, RUNBOOKS_RECORDS_URL=nowhere)
    assert result.returncode == 0, result.stdout + result.stderr  # the run itself succeeded
    assert "NOT PUBLISHED" in result.stderr and "runbook records publish" in result.stderr
    assert (project_copy / "outputs" / "ledger.jsonl").is_file()
    retried = runbook("records", "publish", "--url", url, home=project_copy)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    assert "published 4 file(s)" in retried.stdout  # the record, its export, this machine's ledger and head
    assert len(list((served / "team" / "ledgers").glob("*.jsonl"))) == 1
