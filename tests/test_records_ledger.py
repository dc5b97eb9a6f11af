"""The ledger: sealed records are hash-chained, and verify names each kind of tampering."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from runbooks_lib.records.summary import SUMMARY_MIME
from runbooks_lib.records.ledger import Ledger
from runbooks_lib.records.seal import seal_record


def _record(root: Path, name: str, outcome: str = "succeeded") -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("ctx.finish()")
    summary = {"runbook": "deploy", "env": "sandbox", "run_id": name, "outcome": outcome,
               "started": "2026-01-02T03:04:05.000Z", "steps": [], "figures": {}}
    cell.outputs = [nbformat.v4.new_output("display_data", data={SUMMARY_MIME: summary, "text/plain": name})]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# run {name}"), cell]
    path = root / "sandbox" / "2026-01-02" / f"deploy-030405Z-{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


@pytest.fixture
def sealed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[Path]]:
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fingerprints"))
    root = tmp_path / "records"
    paths = [_record(root, f"run{i}") for i in range(4)]
    for path in paths:
        seal_record(path, root, html=False)
    return root, paths


def _kinds(root: Path) -> list[tuple[str, str | None]]:
    return [(p.kind, p.record and Path(p.record).name) for p in Ledger(root).verify()]


def test_intact_ledger_verifies(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    assert Ledger(root).verify() == []
    lines = [json.loads(l) for l in (root / "ledger.jsonl").read_text().splitlines()]
    assert [l["seq"] for l in lines] == [1, 2, 3, 4]
    assert all(b["prev"] == a["hash"] for a, b in zip(lines, lines[1:]))


def test_edited_byte_is_named(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    data = bytearray(paths[1].read_bytes())
    at = data.index(b"# run run1") + 2
    data[at] ^= 0x20  # one byte: "run" -> "Run"
    paths[1].write_bytes(bytes(data))
    assert _kinds(root) == [("edited", paths[1].name)]


def test_deleted_record_is_named(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    paths[2].unlink()
    assert _kinds(root) == [("deleted", paths[2].name)]


def test_inserted_record_is_named(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    forged = _record(root, "forged")
    assert _kinds(root) == [("inserted", forged.name)]


def test_swapped_records_are_named(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    a, b = paths[0].read_bytes(), paths[3].read_bytes()
    paths[0].write_bytes(b)
    paths[3].write_bytes(a)
    assert sorted(_kinds(root)) == [("swapped", paths[0].name), ("swapped", paths[3].name)]


def test_reordered_ledger_lines_are_named(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    ledger = root / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    lines[1], lines[2] = lines[2], lines[1]
    ledger.write_text("\n".join(lines) + "\n")
    problems = Ledger(root).verify()
    assert {p.kind for p in problems} == {"reordered"}
    assert paths[2].name in problems[0].message and "out of order" in problems[0].message


def test_removed_and_edited_ledger_lines_are_named(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    ledger = root / "ledger.jsonl"
    lines = ledger.read_text().splitlines()
    edited = json.loads(lines[0])
    edited["sealed_at"] = "2020-01-01T00:00:00.000Z"
    ledger.write_text("\n".join([json.dumps(edited, sort_keys=True), lines[1], lines[3]]) + "\n")
    kinds = _kinds(root)
    assert ("ledger-edited", paths[0].name) in kinds
    assert ("ledger-line-missing", paths[3].name) in kinds
    assert ("inserted", paths[2].name) in kinds  # its line is gone: the record is unaccounted for


def test_expected_head_catches_a_rewritten_tail(sealed: tuple[Path, list[Path]]) -> None:
    root, paths = sealed
    head = Ledger(root).head
    ledger = root / "ledger.jsonl"
    ledger.write_text("".join(l + "\n" for l in ledger.read_text().splitlines()[:-1]))
    paths[3].unlink()  # a consistent deletion of the last record and its line
    assert Ledger(root).verify() == []
    assert [p.kind for p in Ledger(root).verify(expect_head=head)] == ["head"]


def test_resealing_a_changed_record_is_refused(sealed: tuple[Path, list[Path]]) -> None:
    from runbooks_lib.records.seal import SealRefused

    root, paths = sealed
    assert seal_record(paths[0], root, html=False).already_sealed
    paths[0].write_text(paths[0].read_text().replace("run0", "runX"))
    with pytest.raises(SealRefused, match="changed since"):
        seal_record(paths[0], root, html=False)


def test_verify_command_exit_code_and_names(sealed: tuple[Path, list[Path]], tmp_path: Path) -> None:
    root, paths = sealed
    env = dict(os.environ, RUNBOOKS_HOME=str(tmp_path), RUNBOOKS_RECORDS_URL=str(root))
    ok = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "records", "verify"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and "4 sealed record(s) intact" in ok.stdout
    paths[0].unlink()
    bad = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "records", "verify"], capture_output=True, text=True, env=env)
    assert bad.returncode == 1
    assert f"sandbox/2026-01-02/{paths[0].name}: deleted" in bad.stdout


def _attach(record: Path, text: str) -> tuple[Path, Path]:
    stem = record.with_suffix("").name
    md, page = record.with_name(f"{stem}-postmortem.md"), record.with_name(f"{stem}-postmortem.html")
    md.write_text(text)
    page.write_text(f"<p>{text}</p>")
    return md, page


def test_attachments_are_sealed_verified_and_published_with_their_record(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    import fsspec

    from runbooks_lib.records.archive import publish

    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fingerprints"))
    root = tmp_path / "records"
    record = _record(root, "inc1")
    md, page = _attach(record, "# Post-mortem draft")
    entry = seal_record(record, root, html=False).entry
    assert set(entry["attachments"]) == {Ledger(root).relative(md), Ledger(root).relative(page)}
    assert Ledger(root).verify() == []
    publish(root, "memory://team-inc", [record])
    fs = fsspec.filesystem("memory")
    assert fs.cat_file(f"/team-inc/{Ledger(root).relative(md)}") == md.read_bytes()
    md.write_text("# Post-mortem draft, quietly rewritten")
    page.unlink()
    assert sorted(_kinds(root)) == [("deleted", page.name), ("edited", md.name)]


def test_an_attachment_holding_a_secret_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooks_lib.records.seal import SealRefused

    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fingerprints"))
    root = tmp_path / "records"
    record = _record(root, "inc2")
    _attach(record, "the token was hvs.CAESIJ0123456789abcdefghijklmnop")
    with pytest.raises(SealRefused, match="attachment"):
        seal_record(record, root, html=False)
    assert not (root / "ledger.jsonl").exists()
