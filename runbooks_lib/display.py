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

__all__ = ["progress_bar", "Said", "Titled", "titled", "Tables", "Parts", "MarkdownText", "show", "RowsTable"]


def progress_bar(iterable: Iterable[Any] | None = None, **options: Any) -> Any:
    """``tqdm(iterable, **options)`` on the current stdout (looked up now: the kernel replaces it)."""
    from tqdm import tqdm

    options.setdefault("file", sys.stdout)
    return tqdm(iterable, **options)


class Said(str):
    """Text a step says: shown as text, not as a quoted string, when it is a cell's last value (a
    record reads "rolled back to revision 4", not 'rolled back to revision 4')."""

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(str(self))


class Titled:
    """A DataFrame and its title; renders as a captioned table in JupyterLab and in the HTML export.

    The one way a runbook titles a table: the library builds it, the notebook shows it. Reads like
    the DataFrame it holds (``table.loc[...]``, ``table["column"]``, ``len(table)``)."""

    def __init__(self, title: str, frame: "pd.DataFrame") -> None:
        self.title = title
        self.frame = frame

    def __getattr__(self, name: str) -> Any:
        if name in ("title", "frame") or name.startswith("__"):
            raise AttributeError(name)
        return getattr(self.frame, name)

    def __getitem__(self, key: Any) -> Any:
        return self.frame[key]

    def __len__(self) -> int:
        return len(self.frame)

    def _repr_html_(self) -> str:
        return f"<h4>{html.escape(self.title)}</h4>\n{self.frame.to_html()}"

    def __repr__(self) -> str:
        return f"{self.title}\n{self.frame.to_string()}"


def titled(title: str, frame: "pd.DataFrame") -> Titled:
    return Titled(title, frame)


class Tables(dict):  # type: ignore[type-arg]
    """Several titled tables a step returns, by name; shown one under the other, each with its title."""

    def __init__(self, tables: Mapping[str, "pd.DataFrame | Titled"], titles: Mapping[str, str] | None = None) -> None:
        titles = titles or {}
        super().__init__({name: table if isinstance(table, Titled) else Titled(titles.get(name, name), table)
                          for name, table in tables.items()})

    def _repr_html_(self) -> str:
        return "\n".join(table._repr_html_() for table in self.values())

    def __repr__(self) -> str:
        return "\n\n".join(repr(table) for table in self.values())


class Parts:
    """What one step shows, in order: text (a finding, a verdict), titled tables, a log. One value
    for the cell to show, so the notebook holds calls, not the assembly of its output."""

    def __init__(self, *parts: Any) -> None:
        self.parts = [part for part in parts if part is not None]

    def _repr_html_(self) -> str:
        html_parts = []
        for part in self.parts:
            if hasattr(part, "_repr_html_"):
                html_parts.append(part._repr_html_())
            else:
                html_parts.append(f"<pre>{html.escape(str(part))}</pre>")
        return "\n".join(html_parts)

    def __repr__(self) -> str:
        return "\n\n".join(str(part) if isinstance(part, str) else repr(part) for part in self.parts)


class MarkdownText(str):
    """Markdown a step wrote (a post-mortem draft), shown rendered."""

    def _repr_markdown_(self) -> str:
        return str(self)


def show(item: Any) -> None:
    """Display ``item`` (a table, tables, a figure) in the notebook, or print it outside a kernel:
    for what a library step shows before it returns (a decision drawn before it is taken)."""
    ipython = sys.modules.get("IPython")
    shell: Any = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        from IPython.display import display

        display(item)
    elif isinstance(item, str):
        print(item)
    elif not hasattr(item, "savefig"):  # a figure outside a kernel has nowhere to go
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
