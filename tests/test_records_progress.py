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
