"""An interactive run (a kernel JupyterLab started) leaves a sealed record in the ledger, as a
headless one does: the cells run, their outputs as the notebook showed them (redacted).

No browser: jupyter_client drives a real IPython kernel with JPY_SESSION_NAME set, as Jupyter
Server sets it for the kernels of its notebooks. No cluster either (``check_cluster=False``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterator

import nbformat
import pytest

from runbooks_lib.records.ledger import Ledger
from runbooks_lib.records.summary import read_summary

from .live_kernel import live_kernel

PROFILE = {
    "name": "lab",
    "cluster": {"namespace": "veza-lab", "identity": {"expected": "uid-of-nothing"}},
    "vault": {"address": "http://127.0.0.1:9", "path": "secret/veza/lab"},
    "prometheus": {"url": "http://127.0.0.1:9"},
}
SECRET = "s3cr3t-Value-0f-the-lab-9137"


@pytest.fixture(scope="module")
def lab_kernel(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, Path]]:
    home = tmp_path_factory.mktemp("lab-home")
    # JPY_SESSION_NAME: as Jupyter Server sets it for the kernel of a notebook.
    with live_kernel(home, PROFILE, RUNBOOK_OPERATOR="alice",
                     JPY_SESSION_NAME=str(home / "notebooks" / "look_around.ipynb")) as started:
        yield started


def run_cell(kc: Any, code: str) -> dict[str, Any]:
    """Execute one cell as JupyterLab does; its reply and what it printed."""
    reply = kc.execute_interactive(code, timeout=60, stop_on_error=False, output_hook=lambda msg: None)
    return reply["content"]


def records_of(records: Path) -> list[Path]:
    return sorted(p for p in records.rglob("*.ipynb") if "journal" not in p.parts)


def test_an_interactive_run_is_sealed_with_its_cells_and_outputs(lab_kernel: tuple[Any, Path]) -> None:
    kc, records = lab_kernel
    assert run_cell(kc, 'env = "lab"')["status"] == "ok"  # the parameters cell, before start()
    assert run_cell(kc, "import runbooks_lib\nctx = runbooks_lib.start('look_around', env, check_cluster=False)")[
        "status"] == "ok"
    run_cell(kc, "from runbooks_lib.records.redaction import register_secret\n"
                 f"register_secret([{SECRET!r}])\n"
                 "with ctx.step('Look'):\n"
                 f"    print('looked at 3 pods; the password is {SECRET}')")
    run_cell(kc, "import pandas as pd\npd.DataFrame({'pod': ['a', 'b'], 'ready': [True, True]})")
    assert run_cell(kc, "summary = ctx.finish()")["status"] == "ok"

    [record] = records_of(records)
    assert record.parent.parent.name == "lab" and record.name.startswith("look_around-")
    summary = read_summary(record)
    assert summary is not None and summary["outcome"] == "succeeded" and summary["operator"] == "alice"
    assert summary["record"] == record.relative_to(records).as_posix()
    nb = nbformat.read(str(record), as_version=4)
    sources = [c.source for c in nb.cells]
    assert sources[0] == 'env = "lab"' and any("ctx.step('Look')" in s for s in sources)
    text = record.read_text()
    assert "looked at 3 pods" in text and "✓ Look: succeeded" in text
    assert "<table" in text  # the DataFrame, as the notebook showed it
    assert SECRET not in text and "the password is ********" in text
    html = record.with_suffix(".html")
    assert html.is_file() and SECRET not in html.read_text()
    assert Ledger(records).verify() == []
    assert Ledger(records).entry_for(record) is not None


def test_a_failing_cell_seals_the_interactive_record_naming_the_step(lab_kernel: tuple[Any, Path]) -> None:
    kc, records = lab_kernel
    before = set(records_of(records))
    run_cell(kc, "ctx = runbooks_lib.start('look_around', env, check_cluster=False)")
    reply = run_cell(kc, "with ctx.step('Break'):\n    raise RuntimeError('the disk is full')")
    assert reply["status"] == "error"
    [record] = set(records_of(records)) - before
    summary = read_summary(record)
    assert summary is not None and summary["outcome"] == "failed" and summary["failed_step"] == "Break"
    assert "the disk is full" in record.read_text()
    assert Ledger(records).verify() == []
