"""Progress bars in records: each bar's final state, as stdout, other stderr kept in place."""
from __future__ import annotations

from nbformat.v4 import new_code_cell, new_notebook, new_output

from runbooks_lib.records.progress import settle_progress, settle_text


def _cell(*outputs):
    nb = new_notebook(cells=[new_code_cell("wait()")])
    nb.cells[0].outputs = list(outputs)
    return nb


def test_a_bar_redrawn_over_many_messages_keeps_only_its_final_state_on_stdout() -> None:
    redraws = [new_output("stream", name="stderr", text=f"\rserving v1.5.0: {p:3d}%|{'#' * (p // 10):10}| {p // 5}/20")
               for p in range(0, 101, 5)]
    nb = _cell(new_output("stream", name="stdout", text="▶ Roll back\n"), *redraws,
               new_output("stream", name="stdout", text="rolled back\n"),
               new_output("stream", name="stderr", text="\nWARNING: slow pod\n"),
               new_output("display_data", data={"text/plain": "a table"}),
               new_output("stream", name="stdout", text="✓ Roll back\n"))
    assert settle_progress(nb) == len(redraws) + 1
    shown = [(o.output_type, o.get("name"), o.get("text")) for o in nb.cells[0].outputs]
    assert shown == [
        ("stream", "stdout", "▶ Roll back\nserving v1.5.0: 100%|##########| 20/20\nrolled back\n"),
        ("stream", "stderr", "WARNING: slow pod\n"),  # a real warning stays stderr, in its place
        ("display_data", None, None),
        ("stream", "stdout", "✓ Roll back\n"),
    ]


def test_text_settles_as_a_terminal_shows_it() -> None:
    assert settle_text("a\rb\rc\n") == [("c\n", True)]
    assert settle_text("plain\nline") == [("plain\n", False), ("line", False)]
    assert settle_text("abc\x08\x08d\n") == [("ad\n", False)]
    assert settle_text("\r 50%|#\r") == [(" 50%|#", True)]


def test_outputs_without_redraws_are_left_as_they_are() -> None:
    outputs = [new_output("stream", name="stdout", text="one\n"), new_output("stream", name="stderr", text="two\n")]
    nb = _cell(*outputs)
    assert settle_progress(nb) == 0
    assert [o.text for o in nb.cells[0].outputs] == ["one\n", "two\n"]


def test_runbook_records_seal_settles_the_bars_of_a_notebook_run_by_hand(tmp_path, monkeypatch) -> None:
    # A notebook run cell by cell in JupyterLab, then sealed with `runbook records seal`: the
    # sealed record (and its hash in the ledger) holds each bar's final state, as a `runbook run` record does.
    import nbformat

    from runbooks_lib.records.ledger import Ledger
    from runbooks_lib.records.seal import seal_record

    monkeypatch.setenv("RUNBOOKS_FINGERPRINTS", str(tmp_path / "fp"))
    redraws = [new_output("stream", name="stderr", text=f"\rrollout: {n}/3 replicas") for n in range(4)]
    path = tmp_path / "records" / "by-hand.ipynb"
    path.parent.mkdir()
    nbformat.write(_cell(*redraws, new_output("stream", name="stderr", text="\n"),
                         new_output("stream", name="stdout", text="done\n")), str(path))
    result = seal_record(path, tmp_path / "records", html=False)
    outputs = nbformat.read(str(result.record), as_version=4).cells[0].outputs
    assert [(o.name, o.text) for o in outputs] == [("stdout", "rollout: 3/3 replicas\ndone\n")]
    assert Ledger(tmp_path / "records").entry_for(result.record)["sha256"] == Ledger(tmp_path / "records").sha256(result.record)


def test_every_wait_draws_its_bar_on_stdout(capsys) -> None:
    # stderr would be a red box in JupyterLab, live; stdout is redrawn in place
    from runbooks_lib.display import progress_bar

    for _ in progress_bar(range(3), desc="waiting", mininterval=0):
        pass
    captured = capsys.readouterr()
    assert "waiting: 100%" in captured.out and captured.err == ""
