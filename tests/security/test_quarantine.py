"""#25.3: a record the seal refuses never lands in the records folder.

It is made and scanned in a private workspace; refused, it goes to an owner-only quarantine that
the catalog and ``records verify`` never read, and the error names the kind of secret and where
it is (cell, output, line), never the value. The same for a dead run's partial record and for an
interactive session's. Records are written 0644 and quarantined ones 0600 whatever the umask.
"""
from __future__ import annotations

import json
import os
import secrets
import stat
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from runbooks_lib.records import redaction
from runbooks_lib.records.catalog import Catalog
from runbooks_lib.records.ledger import Ledger
from runbooks_lib.records.redaction import register_secret
from runbooks_lib.records.summary import SUMMARY_MIME

NAME = "deploy-030405Z-abc123"


@pytest.fixture(autouse=True)
def private_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fp"))
    monkeypatch.setenv("RUNBOOKS_LEDGER_KEY", str(tmp_path / "keys" / "ledger.key"))
    redaction.forget_secrets()
    yield
    redaction.forget_secrets()


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """The most careless umask: any file left to it would be world-writable."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def _planted() -> str:
    """A secret known to the seal by its fingerprint only, as in `runbook run` (the kernel registered it)."""
    value = "Pl4nted-" + secrets.token_hex(10)
    register_secret(value)
    redaction.forget_secrets()  # this process no longer masks it: only the fingerprint can catch it
    return value


def _executed(path: Path, printed: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("print(password)\nctx.finish()")
    summary = {"runbook": "deploy", "env": "sandbox", "run_id": "abc123", "outcome": "succeeded",
               "started": "2026-01-02T03:04:05.000Z", "steps": [], "figures": {}}
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"connecting\nthe password is {printed}\n"),
                    nbformat.v4.new_output("display_data", data={SUMMARY_MIME: summary, "text/plain": "done"})]
    nb.cells = [nbformat.v4.new_markdown_cell("# deploy"), cell]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _record(root: Path) -> Path:
    return root / "sandbox" / "2026-01-02" / f"{NAME}.ipynb"


def _visible(root: Path) -> list[str]:
    """Every file under the records folder outside its dot folders (what the catalog and people see)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts))


def _quarantined(root: Path) -> Path:
    [folder] = list((root / ".quarantine").iterdir())
    return folder


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _assert_refused_and_quarantined(root: Path, message: str, value: str) -> None:
    assert _visible(root) == [], "a refused record landed in the records folder"
    assert value not in message
    assert "a registered secret value" in message and "cell 1 output 0 (stdout)" in message
    assert "at line 2" in message, message  # the output's second line
    assert Catalog(root).rows() == []
    assert not (root / "ledger.jsonl").exists() or Ledger(root).entries() == []
    folder = _quarantined(root)
    assert _mode(root / ".quarantine") == 0o700 and _mode(folder) == 0o700
    files = sorted(p.name for p in folder.iterdir())
    assert f"{NAME}.ipynb" in files and "REFUSED.txt" in files
    assert all(_mode(p) == 0o600 for p in folder.iterdir())
    note = (folder / "REFUSED.txt").read_text()
    assert "cell 1 output 0 (stdout)" in note and value not in note
    assert value in (folder / f"{NAME}.ipynb").read_text()  # the evidence is kept, for its owner alone
    assert not any((root / ".staging").iterdir()), "the workspace was left behind"


def test_a_refused_run_record_goes_to_the_quarantine_not_the_records_folder(tmp_path: Path, umask_zero: None) -> None:
    from runbooks_lib.records.finalize import finalize_record
    from runbooks_lib.records.seal import SealRefused

    value, root = _planted(), tmp_path / "records"
    result = finalize_record(_executed(tmp_path / "ws" / f"{NAME}.ipynb", value), _record(root), root,
                             secret_names=set(), fallback_summary=None)
    assert isinstance(result, SealRefused)
    _assert_refused_and_quarantined(root, str(result), value)
    assert str(_quarantined(root)) in str(result)


def test_a_sealed_record_is_0644_whatever_the_umask(tmp_path: Path, umask_zero: None) -> None:
    from runbooks_lib.records.finalize import finalize_record

    root = tmp_path / "records"
    result = finalize_record(_executed(tmp_path / "ws" / f"{NAME}.ipynb", "********"), _record(root), root,
                             secret_names=set(), fallback_summary=None)
    assert result.record == _record(root)
    assert _mode(result.record) == 0o644 and _mode(result.html) == 0o644
    assert _mode(result.record.parent) == 0o755
    assert _mode(root / "ledger.jsonl") == 0o644
    assert [r["record"] for r in Catalog(root).rows()] == [f"sandbox/2026-01-02/{NAME}.ipynb"]


def test_a_refused_record_already_in_the_records_folder_is_moved_out(tmp_path: Path) -> None:
    from runbooks_lib.records.seal import SealRefused, seal_record

    value, root = _planted(), tmp_path / "records"
    record = _executed(_record(root), value)  # e.g. saved there by hand from JupyterLab
    with pytest.raises(SealRefused) as refused:
        seal_record(record, root)
    _assert_refused_and_quarantined(root, str(refused.value), value)


def test_a_refused_file_outside_the_records_folder_is_left_where_it_was_and_not_copied(tmp_path: Path) -> None:
    from runbooks_lib.records.seal import SealRefused, seal_record

    value, root = _planted(), tmp_path / "records"
    mine = _executed(tmp_path / "by-hand" / "out.ipynb", value)
    with pytest.raises(SealRefused):
        seal_record(mine, root)
    assert mine.is_file()
    copies = [p for p in root.rglob("*") if p.is_file() and value.encode() in p.read_bytes()]
    assert copies == []


def test_an_interactive_session_s_refused_record_is_quarantined(tmp_path: Path) -> None:
    from runbooks_lib.records.session import SessionRecorder, write_and_seal

    value, root = _planted(), tmp_path / "records"
    recorder = SessionRecorder("deploy.ipynb", [])
    cell = nbformat.v4.new_code_cell("print(password)")
    cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text=f"connecting\nthe password is {value}\n")]
    recorder.nb.cells = [nbformat.v4.new_markdown_cell("# deploy"), cell]
    said = write_and_seal(recorder, _record(root), root)
    assert said.startswith("record NOT SEALED")
    _assert_refused_and_quarantined(root, said, value)


def test_a_dead_run_s_refused_partial_record_is_quarantined(tmp_path: Path) -> None:
    from runbooks_lib.run.dead_runs import close_dead_run
    from runbooks_lib.run.journal import Journal
    from runbooks_lib.run.liveness import DeadRun

    value, root = _planted(), tmp_path / "records"
    workspace = tmp_path / "runner-workspace"
    _executed(workspace / f"{NAME}.ipynb", value)
    journal = Journal(tmp_path / "journal" / "abc123.jsonl")
    runner = {"pid": 1, "record": str(_record(root)), "root": str(root), "workspace": str(workspace),
              "secret_names": [], "home": str(tmp_path / "no-home")}
    journal.write(event="run-started", runbook="deploy", env="sandbox", runner=runner,
                  record=f"sandbox/2026-01-02/{NAME}.ipynb", params={})
    said = close_dead_run(DeadRun(journal, journal.entries()[0]))
    [outcome] = [line for line in said if "SEALED" in line or "sealed" in line]
    assert outcome.startswith("NOT SEALED"), said
    assert value not in json.dumps(said)
    _assert_refused_and_quarantined(root, outcome, value)
