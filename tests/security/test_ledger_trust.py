"""#25.6: the ledger holds against someone who can rewrite it.

(a) each line carries a MAC with a key the ledger does not keep beside itself: a chain rewritten
with its hashes recomputed is named; (b) the head is anchored off the machine: a chain shorter
than its anchor (newest records dropped) or different from it (rewritten by someone who had the
key) is named; (c) two machines publishing to one archive never overwrite each other's ledger, and
a pulled archive verifies writer by writer; (d) a half-written last line is reported, set aside by
the next seal, which continues the chain; `records verify` says so. With Vault's transit engine and
KV when an OpenBao dev server is available.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
from pathlib import Path
from typing import Iterator

import nbformat
import pytest

from runbooks_lib.records.ledger import Ledger
from runbooks_lib.records.seal import seal_record
from runbooks_lib.records.summary import SUMMARY_MIME


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fp"))
    monkeypatch.setenv("RUNBOOKS_LEDGER_KEY", str(tmp_path / "operator-home" / "ledger.key"))
    monkeypatch.setenv("RUNBOOKS_WRITER_ID", "host-a")
    yield
    try:
        from runbooks_lib.records.trust import use_anchors, use_ledger_key
    except ImportError:  # main has no such thing
        return
    use_anchors([])
    use_ledger_key(None)


def _record(root: Path, name: str) -> Path:
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("ctx.finish()")
    summary = {"runbook": "deploy", "env": "sandbox", "run_id": name, "outcome": "succeeded",
               "started": "2026-01-02T03:04:05.000Z", "steps": [], "figures": {}}
    cell.outputs = [nbformat.v4.new_output("display_data", data={SUMMARY_MIME: summary, "text/plain": name})]
    nb.cells = [nbformat.v4.new_markdown_cell(f"# run {name}"), cell]
    path = root / "sandbox" / "2026-01-02" / f"deploy-030405Z-{name}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(path))
    return path


def _seal(root: Path, *names: str) -> list[Path]:
    paths = [_record(root, name) for name in names]
    for path in paths:
        seal_record(path, root, html=False)
    return paths


def _lines(root: Path) -> list[dict]:
    return [json.loads(line) for line in (root / "ledger.jsonl").read_text().splitlines()]


def _write(root: Path, lines: list[dict]) -> None:
    (root / "ledger.jsonl").write_text("".join(json.dumps(line, sort_keys=True) + "\n" for line in lines))


def _rechain(lines: list[dict], mac: "callable | None" = None) -> list[dict]:
    """What someone who can write the ledger does after editing it: every hash recomputed, in order
    (and, if they hold the key, every MAC too)."""
    prev = "0" * 64
    for seq, line in enumerate(lines, 1):
        line.update(seq=seq, prev=prev)
        line.pop("hash", None)
        if mac is not None:
            line["mac"] = mac({k: v for k, v in line.items() if k not in ("hash", "mac")})
        body = json.dumps(line, sort_keys=True, separators=(",", ":")).encode()
        line["hash"] = prev = hashlib.sha256(body).hexdigest()
    return lines


def _kinds(problems: list) -> list[str]:
    return sorted(p.kind for p in problems)


# -- (a) a keyed chain -----------------------------------------------------------------------------------

def test_a_chain_rewritten_with_recomputed_hashes_is_named(tmp_path: Path) -> None:
    root = tmp_path / "records"
    paths = _seal(root, "run0", "run1", "run2")
    # drop the middle record and its line, and re-chain what is left: a consistent-looking ledger
    lines = _lines(root)
    paths[1].unlink()
    _write(root, _rechain([lines[0], lines[2]]))
    problems = Ledger(root).verify()
    assert problems, "a rewritten chain went unnoticed"
    assert "forged" in _kinds(problems)
    assert any(paths[2].name in p.message and "MAC does not match" in p.message for p in problems)


def test_the_key_is_not_kept_beside_the_ledger(tmp_path: Path) -> None:
    root = tmp_path / "records"
    _seal(root, "run0")
    key = tmp_path / "operator-home" / "ledger.key"
    assert key.is_file() and stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = key.read_text().strip()
    assert not any(secret in p.read_text(errors="replace") for p in root.rglob("*") if p.is_file())
    [line] = _lines(root)
    assert line["mac"].startswith("hmac-sha256:") and line["key_id"].startswith("file:") and line["writer"] == "host-a"


# -- (b) anchors off the machine ---------------------------------------------------------------------------

def _anchored(tmp_path: Path, root: Path) -> str:
    from runbooks_lib.records.trust import ArchiveAnchor, use_anchors

    url = f"file://{tmp_path / 'anchors'}"
    use_anchors([ArchiveAnchor(url)])
    _seal(root, "run0", "run1", "run2")
    return url


def test_dropping_the_newest_records_is_named_against_the_anchor(tmp_path: Path) -> None:
    root = tmp_path / "records"
    _anchored(tmp_path, root)
    lines = _lines(root)
    _write(root, lines[:-1])  # the newest line goes, and its record with it: the chain is intact
    Path(root / lines[-1]["record"]).unlink()
    problems = Ledger(root).verify()
    assert [p.kind for p in problems] == ["dropped"], problems
    assert "ends at line 2" in problems[0].message and "saw 3" in problems[0].message


def test_a_chain_rewritten_with_the_key_is_named_against_the_anchor(tmp_path: Path) -> None:
    from runbooks_lib.records.trust import FileKey

    root = tmp_path / "records"
    _anchored(tmp_path, root)
    key = FileKey()  # an insider on this machine can read the key file: only the anchor catches this
    lines = _lines(root)
    forged = tmp_path / "forged.ipynb"
    forged.write_text(Path(root / lines[1]["record"]).read_text().replace("run1", "runX"))
    Path(root / lines[1]["record"]).write_bytes(forged.read_bytes())
    lines[1]["sha256"] = hashlib.sha256(forged.read_bytes()).hexdigest()
    _write(root, _rechain(lines, mac=lambda body: key.mac(json.dumps(body, sort_keys=True, separators=(",", ":")).encode())))
    assert Ledger(root).verify(anchors=[]) == []  # without an anchor, the rewrite is perfect
    [problem] = Ledger(root).verify()  # against the anchor written with each seal
    assert problem.kind == "rewritten" and "line 3 of the chain of host-a" in problem.message


# -- (c) several machines, one archive -----------------------------------------------------------------------

def test_two_machines_publish_to_one_archive_without_overwriting_each_other(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from runbooks_lib.records.archive import publish, pull
    from runbooks_lib.records.ledger import check_root

    archive = "memory://team-ledgers"
    for writer in ("host-a", "host-b"):
        monkeypatch.setenv("RUNBOOKS_WRITER_ID", writer)
        root = tmp_path / writer
        paths = _seal(root, f"{writer}-run0", f"{writer}-run1")
        publish(root, archive, paths)
    mirror = tmp_path / "mirror"
    pull(archive, mirror)
    for writer in ("host-a", "host-b"):  # each chain whole, under its writer's name
        published = (mirror / "ledgers" / f"{writer}.jsonl").read_text()
        assert published == (tmp_path / writer / "ledger.jsonl").read_text()
    report = check_root(mirror, anchors=[])
    assert report.problems == [], report.problems
    # a pulled archive still shows a dropped line of one writer, against that writer's head
    ledger = mirror / "ledgers" / "host-b.jsonl"
    ledger.write_text("".join(line + "\n" for line in ledger.read_text().splitlines()[:-1]))
    problems = check_root(mirror, anchors=[]).problems
    assert _kinds(problems) == ["dropped", "inserted"]  # the line against host-b's head; its record unaccounted for
    assert "the chain of host-b ends at line 1" in next(p.message for p in problems if p.kind == "dropped")


# -- (d) a half-written last line -------------------------------------------------------------------------------

def test_a_half_written_last_line_is_reported_set_aside_and_the_chain_goes_on(tmp_path: Path) -> None:
    root = tmp_path / "records"
    _seal(root, "run0", "run1")
    good = _lines(root)
    with open(root / "ledger.jsonl", "a") as f:
        f.write('{"html": null, "prev": "' + good[-1]["hash"][:20])  # the crash came mid-write
    assert [p.kind for p in Ledger(root).verify()] == ["torn"]
    assert "verified up to line 2" in Ledger(root).verify()[0].message

    seal_record(_record(root, "run2"), root, html=False)  # the next seal is not refused ...
    lines = _lines(root)
    assert [l["seq"] for l in lines] == [1, 2, 3] and lines[2]["prev"] == good[-1]["hash"]  # ... and continues
    assert lines[2]["repaired"]["torn_line"] == 3
    report = Ledger(root).check()
    assert report.problems == [] and [n.kind for n in report.notices] == ["repaired"]
    [aside] = (root / ".quarantine").iterdir()
    assert any('"prev": "' in p.read_text() for p in aside.iterdir())
    assert all(stat.S_IMODE(p.stat().st_mode) == 0o600 for p in aside.iterdir())


def test_records_verify_reports_a_torn_line_and_a_dropped_record(tmp_path: Path) -> None:
    root = tmp_path / "records"
    url = _anchored(tmp_path, root)
    lines = _lines(root)
    _write(root, lines[:-1])
    Path(root / lines[-1]["record"]).unlink()
    with open(root / "ledger.jsonl", "a") as f:
        f.write('{"seq": 3, "rec')
    env = dict(os.environ, RUNBOOKS_HOME=str(tmp_path), RUNBOOKS_RECORDS_URL=str(root))
    result = subprocess.run([sys.executable, "-m", "runbooks_lib.cli", "records", "verify", "--anchor", url],
                            capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 1
    assert "half-written" in result.stdout and "newest records were dropped" in result.stdout, result.stdout


# -- with Vault: transit for the MACs, KV for the head ----------------------------------------------------------

@pytest.fixture
def openbao(tmp_path: Path) -> Iterator[object]:
    servers = pytest.importorskip("runbooks_sandbox.servers.openbao")
    try:
        server = servers.OpenBaoServer(tmp_path / "bao").start()
    except Exception as e:  # noqa: BLE001 - no bao binary on this machine
        pytest.skip(f"no OpenBao dev server: {e}")
    try:
        yield server
    finally:
        server.stop()


def test_with_vault_the_macs_are_vaults_and_the_head_is_anchored_in_kv(tmp_path: Path, openbao: object) -> None:
    from runbooks_lib.config.profiles import VaultSettings, VaultAuth
    from runbooks_lib.platform.vault import TransitLedgerKey, Vault, VaultHeadAnchor
    from runbooks_lib.records.trust import use_anchors, use_ledger_key

    client = openbao.client()
    if "transit/" not in client.sys.list_mounted_secrets_engines()["data"]:
        client.sys.enable_secrets_engine(backend_type="transit", path="transit")
    client.secrets.transit.create_key(name="veza-ledger")
    vault = Vault(VaultSettings(address=openbao.address, auth=VaultAuth(token=openbao.root_token), path="secret/veza/x"))
    use_ledger_key(TransitLedgerKey(vault, "transit/veza-ledger"))
    anchor = VaultHeadAnchor(vault, "secret/veza/sandbox/ledger-head")
    use_anchors([anchor])
    root = tmp_path / "records"
    paths = _seal(root, "run0", "run1")
    lines = _lines(root)
    assert all(l["mac"].startswith("vault:v1:") and l["key_id"] == "vault-transit:transit/veza-ledger" for l in lines)
    assert anchor.read("host-a").hash == lines[-1]["hash"]
    # The head is kept in Vault for its integrity, not its secrecy: never masked (a masked hash was
    # printed as ******** by `records verify`, and a record quoting it would be refused).
    from runbooks_lib.records.redaction import redact

    assert redact(f"head {lines[-1]['hash']}") == f"head {lines[-1]['hash']}"
    assert Ledger(root).verify() == []
    lines[0]["sealed_at"] = "2020-01-01T00:00:00.000Z"  # rewritten, hashes recomputed, no key
    _write(root, _rechain(lines))
    assert "forged" in _kinds(Ledger(root).verify())
    _write(root, _lines(root)[:1])
    paths[1].unlink()
    assert "dropped" in _kinds(Ledger(root).verify())
