"""What a person sees of a run: progress bars for every wait, and tables with a title.

The progress bar every wait shows is a text tqdm bar written to stdout. Text bars, not widgets:
they stay readable in the record and its HTML, where a widget would be an empty box without the
live kernel. On stdout, not tqdm's default stderr: JupyterLab shows a cell's stderr on a red
background (a bar is not an error), while it redraws a carriage-returned stdout line in place as a
terminal does, and ``runbook run`` echoes stdout raw, so the terminal keeps one live line per bar.
The record keeps each bar's final state (records.progress).

Tables with a title, for the record: a person reads the title first, in HTML and in plain text.
"""
from __future__ import annotations

import html
import sys
from typing import TYPE_CHECKING, Any, Iterable, Mapping

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["progress_bar", "Titled", "titled", "show_tables", "RowsTable"]


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> Any:
    """``tqdm(iterable, **options)`` on the current stdout (looked up now: the kernel replaces it)."""
    from tqdm import tqdm

    options.setdefault("file", sys.stdout)
    return tqdm(iterable, **options)


class Titled:
    """A DataFrame and its title; renders as a captioned table in JupyterLab and in the HTML export."""

    def __init__(self, title: str, frame: "pd.DataFrame") -> None:
        self.title = title
        self.frame = frame

    def _repr_html_(self) -> str:
        return f"<h4>{html.escape(self.title)}</h4>\n{self.frame.to_html()}"

    def __repr__(self) -> str:
        return f"{self.title}\n{self.frame.to_string()}"


def titled(title: str, frame: "pd.DataFrame") -> Titled:
    return Titled(title, frame)


def show_tables(tables: Mapping[str, "pd.DataFrame"], titles: Mapping[str, str] | None = None) -> None:
    """Display each table under its title (in a kernel), or print it (elsewhere)."""
    import sys

    titles = titles or {}
    ipython = sys.modules.get("IPython")
    shell: Any = ipython.get_ipython() if ipython is not None else None
    for name, frame in tables.items():
        item = Titled(titles.get(name, name), frame)
        if shell is not None:
            from IPython.display import display

            display(item)
        else:
            print(repr(item))


class RowsTable:
    """A small titled table from plain rows, without pandas: for steps that run before the change,
    where importing pandas (seconds) would delay the recovery (the rollback's history)."""

    def __init__(self, title: str, rows: list[dict[str, Any]], index: str | None = None) -> None:
        self.title = title
        self.rows = rows
        self.columns = list(rows[0]) if rows else []
        self.index = index

    def _repr_html_(self) -> str:
        head = "".join(f"<th>{html.escape(str(c))}</th>" for c in self.columns)
        body = "".join("<tr>" + "".join(f"<td>{html.escape('' if r.get(c) is None else str(r.get(c)))}</td>"
                                        for c in self.columns) + "</tr>" for r in self.rows)
        return (f"<h4>{html.escape(self.title)}</h4>\n<table class=\"dataframe\"><thead><tr>{head}</tr></thead>"
                f"<tbody>{body}</tbody></table>")

    def __repr__(self) -> str:
        cells = [[str(c) for c in self.columns]] + [["" if r.get(c) is None else str(r.get(c)) for c in self.columns]
                                                     for r in self.rows]
        widths = [max(len(row[i]) for row in cells) for i in range(len(self.columns))]
        lines = ["  ".join(v.ljust(w) for v, w in zip(row, widths)).rstrip() for row in cells]
        return "\n".join([self.title, *lines]) if self.rows else f"{self.title}\n(none)"
