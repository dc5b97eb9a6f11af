"""Progress bars in a record: the final state of each bar, as ordinary output.

A tqdm bar redraws itself with a carriage return, each redraw a separate stream message
on stderr; the kernel keeps every one, so a record held pages of pink "stderr" lines (a
terminal would have drawn one line). ``settle_progress`` does what the terminal does: it
joins consecutive stream outputs of one name, keeps what is left of each line after its
last carriage return (and backspace), and moves lines that were redrawn — progress, not
errors — from stderr to stdout, so neither JupyterLab nor the HTML export shows them on the
red background of an error stream. Other stderr text stays stderr, in its place.
"""
from __future__ import annotations

import re
from typing import Any

__all__ = ["settle_progress", "settle_text"]

_BACKSPACE = re.compile(r"[^\n]\x08")


def _settle_line(line: str) -> tuple[str, bool]:
    """A line as a terminal leaves it, and whether it was redrawn (a progress bar)."""
    if "\r" not in line:
        return line, False
    shown = [segment for segment in line.split("\r") if segment]
    return (shown[-1] if shown else ""), True


def settle_text(text: str) -> list[tuple[str, bool]]:
    """Lines of stream text as a terminal shows them at the end, each with its "redrawn" flag.
    Every line but the last ends with a newline; the last may be partial."""
    while _BACKSPACE.search(text):
        text = _BACKSPACE.sub("", text)
    pieces = text.split("\n")
    lines = [_settle_line(piece) for piece in pieces]
    settled = [(line + "\n", redrawn) for line, redrawn in lines[:-1]]
    if lines[-1][0]:
        settled.append(lines[-1])
    return settled


def _merged(outputs: list[Any]) -> list[Any]:
    """Consecutive stream outputs of the same name joined into one."""
    merged: list[Any] = []
    for output in outputs:
        previous = merged[-1] if merged else None
        if (output.get("output_type") == "stream" and previous is not None
                and previous.get("output_type") == "stream" and previous.get("name") == output.get("name")):
            previous["text"] = previous["text"] + output["text"]
        else:
            merged.append(output)
    return merged


def _split_progress(output: Any, new_output: Any) -> tuple[list[Any], bool]:
    """One stream output settled; its redrawn lines (progress) become stdout. Also says whether
    it ended in a bar still open (its closing newline comes later, in another output)."""
    groups: list[tuple[str, str]] = []
    open_bar = False
    for line, redrawn in settle_text(output["text"]):
        if redrawn and not line.endswith("\n"):
            line, open_bar = line + "\n", True  # a bar is a line of its own
        name = "stdout" if redrawn else output["name"]
        if groups and groups[-1][0] == name:
            groups[-1] = (name, groups[-1][1] + line)
        else:
            groups.append((name, line))
    return [new_output("stream", name=name, text=text) for name, text in groups if text], open_bar


def _settled(outputs: list[Any], new_output: Any) -> list[Any]:
    settled: list[Any] = []
    open_bars: set[str] = set()  # streams whose last bar we closed: their next "\n" is the bar's
    for output in _merged(outputs):
        if output.get("output_type") != "stream":
            settled.append(output)
            continue
        name = output.get("name")
        if name in open_bars and output["text"].startswith("\n"):
            output["text"] = output["text"][1:]
        open_bars.discard(name)
        if "\r" in output["text"] or "\x08" in output["text"]:
            pieces, open_bar = _split_progress(output, new_output)
            settled += pieces
            if open_bar:
                open_bars.add(name)
        elif output["text"]:
            settled.append(output)
    return _merged(settled)


def settle_progress(nb: Any) -> int:
    """Settle every progress bar in an nbformat notebook, in place. Returns the number of
    stream outputs removed (the redraws that are gone)."""
    from nbformat.v4 import new_output

    removed = 0
    for cell in nb.cells:
        outputs = cell.get("outputs")
        if not outputs:
            continue
        settled = _settled(list(outputs), new_output)
        removed += len(outputs) - len(settled)
        cell["outputs"] = settled
    return removed
