"""The progress bar every wait shows: a text tqdm bar written to stdout.

Text bars, not widgets: they stay readable in the record and its HTML, where a widget would be
an empty box without the live kernel. On stdout, not tqdm's default stderr: JupyterLab shows a
cell's stderr on a red background (a bar is not an error), while it redraws a carriage-returned
stdout line in place as a terminal does, and ``runbook run`` echoes stdout raw, so the terminal
keeps one live line per bar. The record keeps each bar's final state (records.progress).
"""
from __future__ import annotations

import sys
from typing import Any, Iterable

__all__ = ["progress_bar"]


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> Any:
    """``tqdm(iterable, **options)`` on the current stdout (looked up now: the kernel replaces it)."""
    from tqdm import tqdm

    options.setdefault("file", sys.stdout)
    return tqdm(iterable, **options)
